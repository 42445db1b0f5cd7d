"""A seeded, in-process simulation of the Raft metadata quorum (the harness; tests in
test_quorum_sim.py).

It drives the real `RaftNode` — pysyncobj's Raft core with our `DurableJournal` writing real
files in a temporary directory — and replaces only what lies outside it:

- the transport: `SimTransport` implements pysyncobj's `Transport` interface (injected through
  `RaftNode(transport_factory=...)`) and hands every message, encoded with
  `kraft.quorum.codec` (so nodes never share an object), to a `SimNetwork`. Like the
  authenticated transport, it runs the journal barrier (`sync`) before any message other than
  append_entries leaves, and a peer counts as connected while the sender's simulated
  connection to it is up;
- time and chance: `simulated_world` points pysyncobj's `monotonicTime` and every
  `time.monotonic` of pysyncobj and kraft.quorum at a `SimClock`, pysyncobj's election
  timeouts at a seeded `random.Random`, and makes fsync a no-op — durability is modelled here
  instead: `SimJournal` remembers what ``raft.log`` held at its last `sync()`, and a crash
  with power loss rolls the file back to that, plus a random (possibly torn) part of what
  was appended since. A crash without power loss (kill -9) keeps everything written. A
  crash drops the `RaftNode` without destroying it (its descriptors are closed) and the
  restart builds a new one on the same directory.

The network (`NetworkProfile`):

- ``tcp`` models what the authenticated transport can do: per connection, delivery in order
  without loss or duplicates after a seeded delay; a partition holds messages back (TCP
  retransmits) until the sender's connection breaks ``fetch`` seconds later, which loses
  what was still in flight; what a crashing voter had sent is still delivered, and its peers
  notice the closed connection at once; a reachable peer is redialled within ~0.1-0.2 s;
- ``chaos`` adds what TCP never does — independent delays (reordering, also across
  connections), random loss, duplicates and occasional very late messages — which Raft
  itself must tolerate.

A run: start all voters, warm up, then for `fault_seconds` inject seeded faults (crash a
voter, with or without power loss, at a random point of its loop pass: before the tick,
after it, or after handling messages but before the journal sync; partition the voters in
two; isolate one; block one direction of a link; heal) while every active leader appends
unique payloads (stale leaders too, as a deposed controller would); then heal everything,
restart every voter and require liveness. Half the crashes lose power. Each
simulated step of `step_seconds` mirrors one pass of `Quorum._run` per live voter, in a
seeded order: its appends + `replicate()`, `doTick(0)`, the messages due for it (the tick's
poll), `journal.sync()`.

Checked after every step (and every message):

- election safety: at most one node is ever leader (`_isLeader()`) in a term;
- state-machine safety: one global map index -> (term, payload) of every entry any node
  counted committed (its commit index passed it) or applied (`on_apply`); a node that
  commits or applies something else at an index fails the run. So does an incarnation that
  applies indexes out of order or with a gap;
- after healing, within `recovery_seconds`: an active leader exists and a new append commits
  and is applied on every voter, and every voter then has applied every entry of the map.

Replay: a failure raises `InvariantViolation` whose message starts with the seed, the step
and the simulated time, then lists the last events; `run_simulation(seed, config, dir)` with
the same config replays the run exactly (the network draws from one seeded generator per
link, so even pysyncobj's hash-ordered sets do not change the outcome).
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from kraft.quorum import codec
from kraft.quorum.journal import LOG_FILE, DurableJournal
from kraft.quorum.raft import REGULAR, RaftNode, RaftTimeouts
from kraft.quorum.transport import ALLOWED_MESSAGES

SECRET = b"simulated"
MAX_ENTRY_BYTES = 1 << 16
# Crash points within a voter's loop pass.
BEFORE_TICK, AFTER_TICK, BEFORE_SYNC = "before tick", "after tick", "after messages, before sync"
CRASH_POINTS = (BEFORE_TICK, AFTER_TICK, BEFORE_SYNC)


class InvariantViolation(AssertionError):
    """A safety or liveness check failed; the message says how to replay the run."""


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    fifo: bool  # per-connection order, loss only when a connection breaks (TCP)
    delay: tuple[float, float] = (0.0005, 0.01)  # one-way, seconds
    drop: float = 0.0  # per message, beyond connection breaks
    duplicate: float = 0.0
    late: float = 0.0  # probability of an extra delay in `late_delay`
    late_delay: tuple[float, float] = (0.1, 1.5)


TCP = NetworkProfile("tcp", fifo=True)
CHAOS = NetworkProfile(
    "chaos", fifo=False, delay=(0.0005, 0.05), drop=0.05, duplicate=0.03, late=0.02
)
PROFILES = {p.name: p for p in (TCP, CHAOS)}


@dataclass(frozen=True)
class SimConfig:
    voters: int = 3
    network: NetworkProfile = TCP
    warmup_seconds: float = 2.0
    fault_seconds: float = 120.0
    recovery_seconds: float = 20.0
    step_seconds: float = 0.02
    append_every: tuple[float, float] = (0.05, 0.5)
    fault_every: tuple[float, float] = (0.3, 3.0)
    down_for: tuple[float, float] = (0.3, 6.0)  # a crashed voter restarts after this
    partition_for: tuple[float, float] = (0.5, 8.0)
    power_loss: float = 0.5  # share of crashes that also lose unsynced writes
    timeouts: RaftTimeouts = RaftTimeouts(election=1.0, fetch=2.0)
    # Deliberately broken variants, to show that the checks can fail:
    #   "skip_barrier": acknowledgements and votes leave before the journal is synced;
    #   "forget_vote": a restarted voter has forgotten whom it voted for in its term.
    broken: str | None = None

    def describe(self) -> str:
        text = f"{self.voters} voters, {self.network.name} network"
        return text + (f", broken: {self.broken}" if self.broken else "")


@dataclass
class SimReport:
    seed: int
    config: SimConfig
    steps: int = 0
    simulated_seconds: float = 0.0
    wall_seconds: float = 0.0
    terms_with_leader: int = 0
    max_term: int = 0
    appended: int = 0
    committed_payloads: int = 0
    crashes: int = 0
    power_losses: int = 0
    partitions: int = 0
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    recovered_after: float = 0.0  # simulated seconds from healing to the final commit
    digest: str = ""

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.simulated_seconds:.0f} s simulated in {self.steps} steps "
            f"({self.wall_seconds:.2f} s), {self.terms_with_leader} terms with a leader, "
            f"{self.committed_payloads}/{self.appended} payloads committed, {self.crashes} "
            f"crashes ({self.power_losses} power losses), {self.partitions} partitions, "
            f"{self.delivered}/{self.sent} messages delivered ({self.lost} lost, "
            f"{self.duplicated} duplicated), recovered {self.recovered_after:.2f} s after healing"
        )


# -- time, chance and fsync -----------------------------------------------------------------------


class SimClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now


class _SimTime:
    """Stands in for the `time` module: `monotonic()` is simulated, the rest is real."""

    def __init__(self, clock: SimClock) -> None:
        self.monotonic = clock.monotonic

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _no_sync(fd: int) -> None:
    pass


@contextmanager
def simulated_world(clock: SimClock, rng: random.Random) -> Iterator[None]:
    """While inside: pysyncobj and kraft.quorum read `clock`, pysyncobj draws its election
    timeouts from `rng`, and fsync does nothing (`SimJournal` decides what a crash keeps).
    Everything is restored on exit."""
    saved: list[tuple[object, str, object]] = []

    def patch(target: object, name: str, value: object) -> None:
        saved.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    sim_time = _SimTime(clock)
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("pysyncobj", "kraft.quorum")):
            continue
        if getattr(module, "time", None) is time:
            patch(module, "time", sim_time)
        if getattr(module, "monotonic", None) is time.monotonic:
            patch(module, "monotonic", clock.monotonic)
        if hasattr(module, "monotonicTime"):
            patch(module, "monotonicTime", clock.monotonic)
    patch(_syncobj, "random", rng)
    patch(os, "fsync", _no_sync)
    patch(os, "fdatasync", _no_sync)
    try:
        yield
    finally:
        for target, name, value in reversed(saved):
            setattr(target, name, value)


# -- the journal: what survives a crash -----------------------------------------------------------


class SimJournal(DurableJournal):
    """A `DurableJournal` that remembers what ``raft.log`` held at its last sync, i.e. what a
    power loss leaves of it. (The state file is always durable: it is replaced atomically.)"""

    def __init__(self, directory: str, tag: str = "") -> None:
        super().__init__(directory, tag)
        self._log_file = os.path.join(directory, LOG_FILE)
        self._capture()  # what loading left is on disk (a torn tail is cut and synced)

    def _capture(self) -> None:
        with open(self._log_file, "rb") as f:
            self.durable = f.read()
            self.durable_inode = os.fstat(f.fileno()).st_ino

    def sync(self) -> None:
        if self.dirty:
            super().sync()
            self._capture()

    def crash(self, power_loss: bool, rng: random.Random) -> int:
        """kill -9 (and, with `power_loss`, the machine): close the file without syncing;
        with power loss, roll ``raft.log`` back to its last synced content plus a random
        prefix of whatever was appended since. Returns the bytes lost."""
        os.close(self._fd)
        if not power_loss:
            return 0
        with open(self._log_file, "rb") as f:
            current = f.read()
            inode = os.fstat(f.fileno()).st_ino
        if inode != self.durable_inode:
            return 0  # replaced atomically (compaction) since: that rename is durable
        kept = self.durable
        if current.startswith(kept):
            kept = current[: len(kept) + rng.randint(0, len(current) - len(kept))]
        with open(self._log_file, "wb") as f:
            f.write(kept)
        return len(current) - len(kept) if len(current) > len(kept) else 0


class ForgetfulJournal(SimJournal):
    """Broken on purpose: after a restart, the voter does not know whom it voted for."""

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return None


# -- the network ----------------------------------------------------------------------------------


class SimTransport(Transport):  # pysyncobj is untyped (Any)
    """pysyncobj's `Transport` over a `SimNetwork` (one per incarnation of a voter)."""

    def __init__(
        self,
        syncobj: Any,
        self_node: Node,
        other_nodes: Any,
        *,
        network: SimNetwork,
        barrier: Callable[[], None],
    ) -> None:
        super().__init__(syncobj, self_node, other_nodes)
        self.node_id = int(self_node.id)
        self._network = network
        self._barrier = barrier
        self._peers = {int(node.id): node for node in other_nodes}
        self._connected: set[int] = set()
        self._heard: dict[int, float] = {}
        self.alive = True
        network.attach(self)

    # pysyncobj's side

    def send(self, node: Node, message: Any) -> bool:
        peer = int(node.id)
        if not self.alive or peer not in self._connected:
            return False
        kind = message.get("type")
        if kind not in ALLOWED_MESSAGES:
            raise InvariantViolation(f"node {self.node_id} sent a {kind!r} message")
        if kind != "append_entries":
            self._barrier()
        self._network.send(self.node_id, peer, codec.encode(message))
        return True

    def is_connected(self, peer: str) -> bool:
        return int(peer) in self._connected

    def last_heard(self, peer: str) -> float | None:
        return self._heard.get(int(peer))

    @property
    def listen_address(self) -> None:
        return None

    def destroy(self) -> None:
        self.crash()

    # the network's side

    def crash(self) -> None:
        self.alive = False
        self.setOnMessageReceivedCallback(None)
        self.setOnNodeConnectedCallback(None)
        self.setOnNodeDisconnectedCallback(None)

    def connected(self, peer: int) -> None:
        self._connected.add(peer)
        self._onNodeConnected(self._peers[peer])

    def disconnected(self, peer: int) -> None:
        self._connected.discard(peer)
        self._onNodeDisconnected(self._peers[peer])

    def receive(self, peer: int, data: bytes, now: float) -> None:
        self._heard[peer] = now
        self._onMessageReceived(self._peers[peer], codec.decode(data))


@dataclass
class _Message:
    due: float
    seq: int  # per link: the global send order depends on pysyncobj's hash-ordered sets
    src: int
    dst: int
    epoch: int
    data: bytes


@dataclass
class _Link:
    """The sender's connection to one peer, and the messages in flight on it."""

    rng: random.Random
    up: bool = False
    epoch: int = 0  # counts connections; a message belongs to the one it was sent on
    change_at: float | None = None  # when `up` flips, if the current conditions last
    last_due: float = 0.0
    sent: int = 0
    queue: list[_Message] = field(default_factory=list)


class SimNetwork:
    def __init__(
        self, seed: int, ids: list[int], profile: NetworkProfile, clock: SimClock, fetch: float
    ) -> None:
        self.profile = profile
        self.clock = clock
        self.fetch = fetch
        self.ids = ids
        self.transports: dict[int, SimTransport] = {}
        self.links = {
            (a, b): _Link(random.Random(f"{seed}/link/{a}->{b}"))
            for a in ids
            for b in ids
            if a != b
        }
        self.blocked: set[tuple[int, int]] = set()
        self.sent = self.delivered = self.lost = self.duplicated = 0

    def alive(self, node_id: int) -> bool:
        transport = self.transports.get(node_id)
        return transport is not None and transport.alive

    def attach(self, transport: SimTransport) -> None:
        self.transports[transport.node_id] = transport

    def detach(self, node_id: int) -> None:
        """The voter's process died: its connections are gone (what it had sent stays in
        flight), nothing more reaches it."""
        transport = self.transports.pop(node_id, None)
        if transport is not None:
            transport.crash()
        for (a, _), link in self.links.items():
            if a == node_id:
                link.up = False
                link.change_at = None

    def send(self, src: int, dst: int, data: bytes) -> None:
        link = self.links[(src, dst)]
        profile = self.profile
        rng = link.rng
        self.sent += 1
        if profile.drop and rng.random() < profile.drop:
            self.lost += 1
            return
        copies = 2 if profile.duplicate and rng.random() < profile.duplicate else 1
        self.duplicated += copies - 1
        now = self.clock.now
        for _ in range(copies):
            due = now + rng.uniform(*profile.delay)
            if profile.late and rng.random() < profile.late:
                due += rng.uniform(*profile.late_delay)
            if profile.fifo:
                due = link.last_due = max(due, link.last_due)
            link.sent += 1
            link.queue.append(_Message(due, link.sent, src, dst, link.epoch, data))

    def reachable(self, a: int, b: int) -> bool:
        return self.alive(b) and (a, b) not in self.blocked and (b, a) not in self.blocked

    def update_links(self) -> None:
        """Connect and disconnect as the authenticated transport would, given who is up and
        which links are blocked."""
        now = self.clock.now
        for (a, b), link in self.links.items():
            sender = self.transports.get(a)
            if sender is None or not sender.alive:
                continue
            reachable = self.reachable(a, b)
            if link.up == reachable:
                link.change_at = None
                continue
            if link.change_at is None:
                if link.up:  # a dead peer's socket closes at once; silence takes `fetch`
                    wait = 0.001 if not self.alive(b) else self.fetch + link.rng.uniform(0, 0.3)
                else:  # redial every 0.1 s, then the handshake
                    wait = link.rng.uniform(0.1, 0.2)
                link.change_at = now + wait
            if now < link.change_at:
                continue
            link.change_at = None
            if link.up:
                link.up = False
                if self.profile.fifo:  # the connection broke: what was in flight is lost
                    self.lost += len(link.queue)
                    link.queue.clear()
                sender.disconnected(b)
            else:
                link.up = True
                link.epoch += 1
                sender.connected(b)

    def take(self, dst: int) -> list[_Message]:
        """The messages due at `dst` now, in arrival order (removed from flight)."""
        now = self.clock.now
        due: list[_Message] = []
        for src in self.ids:
            if src == dst:
                continue
            link = self.links[(src, dst)]
            if not link.queue:
                continue
            blocked = (src, dst) in self.blocked
            if self.profile.fifo:
                taken = 0
                for message in link.queue:
                    if message.due > now or blocked:
                        break  # held back in order: TCP retransmits after the partition
                    taken += 1
                    if message.epoch == link.epoch or not link.up:
                        due.append(message)
                    else:
                        self.lost += 1  # sent on a connection that no longer exists
                del link.queue[:taken]
            else:
                keep = []
                for message in link.queue:
                    if message.due > now:
                        keep.append(message)
                    elif blocked:
                        self.lost += 1
                    else:
                        due.append(message)
                link.queue = keep
        due.sort(key=lambda m: (m.due, m.src, m.seq))
        if not self.alive(dst):
            self.lost += len(due)
            return []
        self.delivered += len(due)
        return due


# -- voters ---------------------------------------------------------------------------------------


def _payload(command: bytes) -> bytes | None:
    return command[1:] if command[:1] == bytes((REGULAR,)) else None


@dataclass
class Incarnation:
    """One run of a voter's process, from start to crash."""

    number: int
    raft: RaftNode
    journal: SimJournal
    transport: SimTransport
    last_applied: int
    checked_commit: int
    applied: dict[int, tuple[int, bytes | None]] = field(default_factory=dict)


@dataclass
class Voter:
    node_id: int
    directory: str
    current: Incarnation | None = None
    incarnations: int = 0
    restart_at: float | None = None
    crash_request: tuple[str, bool] | None = None  # (crash point, power loss)
    crash_on_payload: tuple[bytes, bool] | None = None  # crash once this arrives, before sync


# -- the simulation -------------------------------------------------------------------------------


class Simulation:
    """One seeded run. `run()` does the whole randomized schedule; the building blocks
    (`start`, `run_for`, `run_until`, `crash`, `isolate`, `append`, `recover`, ...) also let a
    test script a scenario step by step."""

    def __init__(self, seed: int, config: SimConfig, directory: str) -> None:
        self.seed = seed
        self.config = config
        self.clock = SimClock()
        self.ids = list(range(1, config.voters + 1))
        self.voter_addresses = {i: ("sim", i) for i in self.ids}
        self.faults = random.Random(f"{seed}/faults")
        self.elections = random.Random(f"{seed}/elections")
        self.network = SimNetwork(seed, self.ids, config.network, self.clock, config.timeouts.fetch)
        self.voters = {i: Voter(i, os.path.join(directory, f"node-{i}")) for i in self.ids}
        self.step = 0
        self.report = SimReport(seed, config)
        # The checker's memory.
        self.leaders: dict[int, int] = {}  # term -> the node that led it
        self.committed: dict[int, tuple[int, bytes | None]] = {}  # index -> (term, payload)
        self.events: collections.deque[str] = collections.deque(maxlen=40)
        self._digest = hashlib.sha256()
        self._next_payload = 0
        self._next_append = 0.0
        self._next_fault = 0.0
        self._heal_at: float | None = None
        self._faults_on = False
        self._appends_on = True
        self.trigger_source: int | None = None  # who sent what `crash_on_receipt` waited for

    # -- reporting ---------------------------------------------------------------------------

    def fail(self, what: str) -> InvariantViolation:
        return InvariantViolation(
            f"seed {self.seed} step {self.step} (t={self.elapsed:.2f} s, "
            f"{self.config.describe()}): {what}\n"
            f"replay: run_simulation({self.seed}, {self.config!r}, <dir>) "
            f"or KRAFT_SIM_SEED={self.seed} KRAFT_SIM_PROFILE={self.config.network.name} "
            f"KRAFT_SIM_VOTERS={self.config.voters} pytest tests/kraft/test_quorum_sim.py "
            "-k replay\n"
            "last events:\n  " + "\n  ".join(self.events)
        )

    def log(self, event: str) -> None:
        line = f"t={self.elapsed:7.2f} step {self.step}: {event}"
        self.events.append(line)
        self._digest.update(line.encode())

    @property
    def elapsed(self) -> float:
        return self.clock.now - 1000.0

    # -- voters ------------------------------------------------------------------------------

    def start(self, node_id: int | None = None) -> None:
        """Start one voter (or all): open its journal and create its RaftNode."""
        if node_id is None:
            for i in self.ids:
                self.start(i)
            return
        voter = self.voters[node_id]
        if voter.current is not None:
            return
        journal_class = ForgetfulJournal if self.config.broken == "forget_vote" else SimJournal
        journal = journal_class(voter.directory, f"[sim {node_id}] ")
        barrier = (lambda: None) if self.config.broken == "skip_barrier" else journal.sync
        created: list[SimTransport] = []

        def transport_factory(syncobj: Any, node: Node, others: Any) -> SimTransport:
            transport = SimTransport(syncobj, node, others, network=self.network, barrier=barrier)
            created.append(transport)
            return transport

        voter.incarnations += 1
        number = voter.incarnations
        raft = RaftNode(
            node_id,
            self.voter_addresses,
            journal,
            secret=SECRET,
            listen=self.voter_addresses[node_id],
            timeouts=self.config.timeouts,
            on_apply=lambda index, term, payload: self._on_apply(node_id, index, term, payload),
            max_entry_bytes=MAX_ENTRY_BYTES,
            tag=f"[sim {node_id}] ",
            transport_factory=transport_factory,
        )
        voter.current = Incarnation(
            number, raft, journal, created[0], raft.raftLastApplied, raft.raftLastApplied
        )
        voter.restart_at = None
        self.log(
            f"node {node_id} starts (incarnation {number}): log {journal.first_index}.."
            f"{journal.last_index}, term {raft.raftCurrentTerm}, commit {raft.raftCommitIndex}"
        )

    def crash(self, node_id: int, power_loss: bool = False) -> None:
        """kill -9 now (between loop passes); with `power_loss`, unsynced writes go too."""
        voter = self.voters[node_id]
        current = voter.current
        if current is None:
            return
        voter.current = None
        voter.crash_request = voter.crash_on_payload = None
        self.network.detach(node_id)
        close_pipe_notifier(current.raft)
        lost = current.journal.crash(power_loss, self.faults)
        self.report.crashes += 1
        self.report.power_losses += power_loss
        self.log(
            f"node {node_id} crashes"
            + (f" with power loss ({lost} unsynced bytes of raft.log lost)" if power_loss else "")
        )

    def request_crash(self, node_id: int, point: str, power_loss: bool) -> None:
        """Crash the voter at `point` of its next loop pass."""
        self.voters[node_id].crash_request = (point, power_loss)

    def crash_on_receipt(self, node_id: int, marker: bytes, power_loss: bool) -> None:
        """Crash the voter right after it handles a message whose encoding contains `marker`
        (a payload, a message type), before the journal sync that ends its loop pass."""
        self.voters[node_id].crash_on_payload = (marker, power_loss)

    def live(self) -> list[int]:
        return [i for i in self.ids if self.voters[i].current is not None]

    def raft(self, node_id: int) -> RaftNode:
        current = self.voters[node_id].current
        assert current is not None, f"node {node_id} is down"
        return current.raft

    def active_leader(self) -> int | None:
        """The active leader of the highest term, if any live voter is one."""
        best: tuple[int, int] | None = None
        for i in self.live():
            raft = self.raft(i)
            if raft.is_active_leader and (best is None or raft.raftCurrentTerm > best[0]):
                best = (raft.raftCurrentTerm, i)
        return None if best is None else best[1]

    # -- network faults ----------------------------------------------------------------------

    def partition(self, *groups: set[int]) -> None:
        """Cut every link between different groups (both directions)."""
        for g1 in groups:
            for g2 in groups:
                if g1 is not g2:
                    self.network.blocked.update((a, b) for a in g1 for b in g2)
        self.report.partitions += 1
        self.log("partition " + " | ".join(str(sorted(g)) for g in groups))

    def isolate(self, node_id: int) -> None:
        self.partition({node_id}, set(self.ids) - {node_id})

    def block(self, src: int, dst: int) -> None:
        self.network.blocked.add((src, dst))
        self.report.partitions += 1
        self.log(f"block {src} -> {dst}")

    def heal(self) -> None:
        if self.network.blocked:
            self.network.blocked.clear()
            self.log("heal all links")

    # -- the workload ------------------------------------------------------------------------

    def append(self, node_id: int, payload: bytes | None = None) -> int | None:
        """Append (and replicate) a payload on the voter if it is the active leader."""
        raft = self.raft(node_id)
        if payload is None:
            self._next_payload += 1
            payload = b"s%d-p%d" % (self.seed, self._next_payload)
        index = raft.append(payload, raft.raftCurrentTerm)
        if index is None:
            return None
        self.report.appended += 1
        raft.replicate()
        return index

    # -- stepping ----------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.tick()

    def run_until(self, predicate: Callable[[], bool], within: float, what: str) -> float:
        """Step until `predicate()`; returns the simulated seconds it took."""
        started = self.clock.now
        while not predicate():
            if self.clock.now - started > within:
                raise self.fail(f"liveness: {what} not reached within {within:.0f} s")
            self.tick()
        return self.clock.now - started

    def tick(self) -> None:
        """One simulated step: faults and restarts due, then one loop pass per live voter."""
        self.step += 1
        self.clock.now += self.config.step_seconds
        now = self.clock.now
        if self._faults_on:
            self._inject_faults(now)
        for voter in self.voters.values():
            if voter.current is None and voter.restart_at is not None and now >= voter.restart_at:
                self.start(voter.node_id)
        self.network.update_links()
        order = self.live()
        self.faults.shuffle(order)
        append_due = self._appends_on and now >= self._next_append
        if append_due:
            self._next_append = now + self.faults.uniform(*self.config.append_every)
        for node_id in order:
            self._pass(node_id, append_due)

    def _pass(self, node_id: int, append_due: bool) -> None:
        """One pass of `Quorum._run` for the voter, with its crash point if one is due."""
        voter = self.voters[node_id]
        current = voter.current
        if current is None:
            return
        point, power_loss = voter.crash_request or (None, False)
        if point == BEFORE_TICK:
            self.crash(node_id, power_loss)
            return
        raft = current.raft
        if append_due and raft.is_active_leader:
            for _ in range(self.faults.choice((1, 1, 1, 2, 5))):
                self.append(node_id)
        raft.doTick(0)
        self._check_leader(node_id)
        if point == AFTER_TICK:
            self.crash(node_id, power_loss)
            return
        for message in self.network.take(node_id):
            self._digest.update(b"%d>%d:%d;" % (message.src, message.dst, message.seq))
            current.transport.receive(message.src, message.data, self.clock.now)
            self._check_leader(node_id)
            trigger = voter.crash_on_payload
            if trigger is not None and trigger[0] in message.data:
                self.log(f"node {node_id} handled {trigger[0]!r} from node {message.src}")
                self.trigger_source = message.src
                self.crash(node_id, trigger[1])
                return
        if point == BEFORE_SYNC:
            self.crash(node_id, power_loss)
            return
        current.journal.sync()
        self._check_commit(node_id, current)

    # -- faults ------------------------------------------------------------------------------

    def _inject_faults(self, now: float) -> None:
        if self._heal_at is not None and now >= self._heal_at:
            self._heal_at = None
            self.heal()
        if now < self._next_fault:
            return
        rng = self.faults
        self._next_fault = now + rng.uniform(*self.config.fault_every)
        action = rng.choice(("crash", "crash", "crash", "partition", "isolate", "block", "heal"))
        if action == "crash":
            live = self.live()
            if not live:
                return
            node_id = rng.choice(live)
            point = rng.choice(CRASH_POINTS)
            power_loss = rng.random() < self.config.power_loss
            self.request_crash(node_id, point, power_loss)  # carried out in this step
            down = rng.uniform(*self.config.down_for)
            self.voters[node_id].restart_at = now + down
            self.log(f"node {node_id} will crash ({point}), back in {down:.1f} s")
        elif action == "heal":
            self.heal()
            self._heal_at = None
        else:
            if action == "partition" and len(self.ids) > 2:
                ids = list(self.ids)
                rng.shuffle(ids)
                cut = rng.randint(1, len(ids) - 1)
                self.partition(set(ids[:cut]), set(ids[cut:]))
            elif action == "isolate":
                self.isolate(rng.choice(self.ids))
            else:
                a, b = rng.sample(self.ids, 2)
                self.block(a, b)
            self._heal_at = now + rng.uniform(*self.config.partition_for)

    # -- checks ------------------------------------------------------------------------------

    def _check_leader(self, node_id: int) -> None:
        current = self.voters[node_id].current
        if current is None or not current.raft._isLeader():
            return
        term = current.raft.raftCurrentTerm
        leader = self.leaders.get(term)
        if leader is None:
            self.leaders[term] = node_id
            self.report.max_term = max(self.report.max_term, term)
            self.log(f"node {node_id} leads term {term}")
        elif leader != node_id:
            raise self.fail(f"election safety: nodes {leader} and {node_id} both lead term {term}")

    def _record(self, node_id: int, index: int, value: tuple[int, bytes | None], how: str) -> None:
        known = self.committed.get(index)
        if known is None:
            self.committed[index] = value
            self._digest.update(b"c%d;" % index)
            self.report.committed_payloads += value[1] is not None
        elif known != value:
            raise self.fail(
                f"state-machine safety: node {node_id} {how} (term {value[0]}, {value[1]!r}) "
                f"at index {index}, but (term {known[0]}, {known[1]!r}) was committed there"
            )

    def _on_apply(self, node_id: int, index: int, term: int, payload: bytes | None) -> None:
        current = self.voters[node_id].current
        if current is None:  # applied while the RaftNode is being constructed
            raise self.fail(f"node {node_id} applied index {index} before its first tick")
        if index != current.last_applied + 1:
            raise self.fail(
                f"node {node_id} applied index {index} after {current.last_applied} "
                "(out of order or a gap)"
            )
        current.last_applied = index
        current.applied[index] = (term, payload)
        self._record(node_id, index, (term, payload), "applied")

    def _check_commit(self, node_id: int, current: Incarnation) -> None:
        commit = current.raft.raftCommitIndex
        journal = current.journal
        start = max(min(current.checked_commit, commit), journal.first_index)
        for index in range(start + 1, commit + 1):
            entry = journal.entry(index)
            if entry is None:
                raise self.fail(f"node {node_id}: commit index {commit} beyond its log")
            self._record(node_id, index, (entry[2], _payload(entry[0])), "committed")
        current.checked_commit = commit

    # -- runs --------------------------------------------------------------------------------

    def recover(self) -> None:
        """Heal everything, restart everyone, and require liveness: an active leader, and a
        new append committed and applied everywhere; then every voter must have applied
        every committed entry."""
        self._faults_on = False
        self._appends_on = False
        self.heal()
        self.network.profile = replace(TCP, delay=self.config.network.delay)
        for voter in self.voters.values():
            voter.crash_request = voter.crash_on_payload = None
            if voter.current is None:
                self.start(voter.node_id)
        healed_at = self.clock.now
        markers: dict[bytes, int] = {}

        def final_entry_everywhere() -> bool:
            leader = self.active_leader()
            if leader is not None:
                term = self.raft(leader).raftCurrentTerm
                marker = b"s%d-final-t%d" % (self.seed, term)
                if marker not in markers:
                    index = self.append(leader, marker)
                    if index is not None:
                        markers[marker] = index
                        self.log(f"node {leader} appends the final entry at {index}")
            top = max(self.committed)
            return all(self._current(i).last_applied >= top for i in self.ids) and any(
                all(self._current(i).applied.get(index, (0, None))[1] == marker for i in self.ids)
                for marker, index in markers.items()
            )

        self.run_until(
            final_entry_everywhere,
            self.config.recovery_seconds,
            "after healing, an active leader whose new entry (and every committed one) is "
            "applied on every voter",
        )
        self.report.recovered_after = self.clock.now - healed_at
        top = max(self.committed)
        for i in self.ids:
            current = self._current(i)
            if current.last_applied < top:
                raise self.fail(f"node {i} applied up to {current.last_applied}, not {top}")
            for index, value in self.committed.items():
                if index > current.journal.first_index and current.applied.get(index) != value:
                    raise self.fail(
                        f"node {i} applied {current.applied.get(index)!r} at {index}, "
                        f"committed: {value!r}"
                    )

    def _current(self, node_id: int) -> Incarnation:
        current = self.voters[node_id].current
        assert current is not None
        return current

    def run(self) -> SimReport:
        """The randomized schedule: warm-up, faults, healing and recovery."""
        started = time.perf_counter()
        with simulated_world(self.clock, self.elections):
            try:
                self.start()
                self.run_for(self.config.warmup_seconds)
                self._faults_on = True
                self._next_fault = self.clock.now
                self.run_for(self.config.fault_seconds)
                self.recover()
            finally:
                self.close()
        return self.finish(time.perf_counter() - started)

    def finish(self, wall: float) -> SimReport:
        report = self.report
        report.steps = self.step
        report.simulated_seconds = self.elapsed
        report.wall_seconds = wall
        report.terms_with_leader = len(self.leaders)
        report.sent = self.network.sent
        report.delivered = self.network.delivered
        report.lost = self.network.lost
        report.duplicated = self.network.duplicated
        report.digest = self._digest.hexdigest()[:16]
        return report

    def close(self) -> None:
        """Stop every voter (as a crash without power loss: nothing is left open)."""
        for i in self.ids:
            voter = self.voters[i]
            current = voter.current
            if current is not None:
                voter.current = None
                self.network.detach(i)
                close_pipe_notifier(current.raft)
                current.journal.crash(False, self.faults)


def close_pipe_notifier(raft: RaftNode) -> None:
    # pysyncobj opens a pipe per SyncObj (appendEntriesUseBatch=False) and never closes it.
    notifier = getattr(raft, "_SyncObj__pipeNotifier", None)
    for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
        fd = getattr(notifier, name, None)
        if fd is not None:
            os.close(fd)


def run_simulation(seed: int, config: SimConfig, directory: str) -> SimReport:
    return Simulation(seed, config, directory).run()
