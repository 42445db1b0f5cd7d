"""The quorum simulation: voters, their loop passes on the kernel's event heap, the faults,
and the checks (see the package docstring)."""

from __future__ import annotations

import collections
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pysyncobj.node import Node

from kraft.quorum.raft import REGULAR, RaftNode
from tests.kraft.quorum_sim.config import (
    AFTER_TICK,
    BEFORE_SYNC,
    BEFORE_TICK,
    CRASH_POINTS,
    MAX_ENTRY_BYTES,
    SECRET,
    TCP,
    InvariantViolation,
    SimConfig,
    SimReport,
)
from tests.kraft.quorum_sim.network import SimNetwork, SimTransport
from tests.kraft.quorum_sim.world import (
    ForgetfulJournal,
    SimJournal,
    close_pipe_notifier,
    simulated_world,
)
from tests.sim.kernel import US_PER_S, Clock, Kernel, Timer, seconds, stream

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
    restart: Timer | None = None  # the restart after a crash, if one is planned
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
        self.kernel = Kernel(Clock(origin_s=1000.0))
        self.clock = self.kernel.clock
        self.ids = list(range(1, config.voters + 1))
        self.voter_addresses = {i: ("sim", i) for i in self.ids}
        self.faults = stream(seed, "faults")
        self.elections = stream(seed, "elections")
        self.network = SimNetwork(
            self.kernel, seed, self.ids, config.network, config.timeouts.fetch
        )
        self.voters = {i: Voter(i, os.path.join(directory, f"node-{i}")) for i in self.ids}
        self.report = SimReport(seed, config)
        # The checker's memory.
        self.leaders: dict[int, int] = {}  # term -> the node that led it
        self.committed: dict[int, tuple[int, bytes | None]] = {}  # index -> (term, payload)
        self.events: collections.deque[str] = collections.deque(maxlen=40)
        self._digest = hashlib.sha256()
        self._next_payload = 0
        self._next_append = 0
        self._fault: Timer | None = None
        self._heal: Timer | None = None
        self._appends_on = True
        self.trigger_source: int | None = None  # who sent what `crash_on_receipt` waited for
        self.kernel.after_s(config.step_seconds, "step", self._step)

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
        return self.clock.elapsed_s

    @property
    def step(self) -> int:
        """Events run so far (steps of the voters' loops, messages, faults, restarts)."""
        return self.kernel.step

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
        if voter.restart is not None:
            voter.restart.cancel()
            voter.restart = None
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
        self.network.links.partition(*groups)
        self.report.partitions += 1
        self.log("partition " + " | ".join(str(sorted(g)) for g in groups))

    def isolate(self, node_id: int) -> None:
        self.partition({node_id}, set(self.ids) - {node_id})

    def block(self, src: int, dst: int) -> None:
        self.network.links.block([(src, dst)])
        self.report.partitions += 1
        self.log(f"block {src} -> {dst}")

    def heal(self) -> None:
        links = self.network.links
        cut = links.faulty()["cut"]
        if cut:
            links.unblock(cut)
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

    def run_for(self, duration: float) -> None:
        self.kernel.run_until(self.kernel.now + seconds(duration))

    def run_until(self, predicate: Callable[[], bool], within: float, what: str) -> float:
        """Run until `predicate()` holds (asked after every event); returns the simulated
        seconds it took."""
        started = self.kernel.now
        if not predicate() and not self.kernel.run_until(started + seconds(within), predicate):
            raise self.fail(f"liveness: {what} not reached within {within:.0f} s")
        return (self.kernel.now - started) / US_PER_S

    def _step(self) -> None:
        """One step of the voters' loops: the links' connections follow the faults, then one
        loop pass per live voter, in a seeded order."""
        self.kernel.after_s(self.config.step_seconds, "step", self._step)
        now = self.kernel.now
        self.network.update_links()
        order = self.live()
        self.faults.shuffle(order)
        append_due = self._appends_on and now >= self._next_append
        if append_due:
            self._next_append = now + seconds(self.faults.uniform(*self.config.append_every))
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
            current.transport.receive(message.src, message.payload, self.clock.seconds())
            self._check_leader(node_id)
            trigger = voter.crash_on_payload
            if trigger is not None and trigger[0] in message.payload:
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

    def _start_faults(self) -> None:
        self._fault = self.kernel.after(0, "fault", self._inject_fault)

    def _stop_faults(self) -> None:
        for timer in (self._fault, self._heal):
            if timer is not None:
                timer.cancel()
        self._fault = self._heal = None

    def _heal_later(self) -> None:
        if self._heal is not None:
            self._heal.cancel()
        delay = self.faults.uniform(*self.config.partition_for)
        self._heal = self.kernel.after_s(delay, "heal", self.heal)

    def _inject_fault(self) -> None:
        rng = self.faults
        self._fault = self.kernel.after_s(
            rng.uniform(*self.config.fault_every), "fault", self._inject_fault
        )
        action = rng.choice(("crash", "crash", "crash", "partition", "isolate", "block", "heal"))
        if action == "crash":
            live = self.live()
            if not live:
                return
            node_id = rng.choice(live)
            point = rng.choice(CRASH_POINTS)
            power_loss = rng.random() < self.config.power_loss
            self.request_crash(node_id, point, power_loss)  # carried out in its next pass
            down = rng.uniform(*self.config.down_for)
            voter = self.voters[node_id]
            if voter.restart is not None:
                voter.restart.cancel()
            voter.restart = self.kernel.after_s(
                down, f"restart {node_id}", lambda: self._restart(node_id)
            )
            self.log(f"node {node_id} will crash ({point}), back in {down:.1f} s")
        elif action == "heal":
            self.heal()
            if self._heal is not None:
                self._heal.cancel()
                self._heal = None
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
            self._heal_later()

    def _restart(self, node_id: int) -> None:
        voter = self.voters[node_id]
        voter.restart = None
        if voter.current is None:
            self.start(node_id)

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
        self._stop_faults()
        self._appends_on = False
        self.heal()
        self.network.profile = replace(TCP, delay=self.config.network.delay)
        for voter in self.voters.values():
            voter.crash_request = voter.crash_on_payload = None
            if voter.current is None:
                self.start(voter.node_id)
        healed_at = self.kernel.now
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
        self.report.recovered_after = (self.kernel.now - healed_at) / US_PER_S
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
                self._start_faults()
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
        links = self.network.links
        report.sent = links.sent
        report.delivered = self.network.handled
        report.lost = links.lost + self.network.dropped
        report.duplicated = links.duplicated
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


def run_simulation(seed: int, config: SimConfig, directory: str) -> SimReport:
    return Simulation(seed, config, directory).run()
