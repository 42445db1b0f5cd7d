"""The one place that touches pysyncobj's Raft core: a `SyncObj` subclass and its config.

What it relies on inside pysyncobj 0.3.17 — each pinned by `tests/kraft/test_quorum_pins.py`,
so an upgrade that moves any of it fails loudly:

- `SyncObj.__init__` gets its journal from the module-level `createJournal(conf.journalFile)`
  and restores term, vote and commit index from it. `install_journal_hook` wraps that function
  so that a `DurableJournal` passed as `journalFile` is used as is.
- `SyncObj.__applyLogEntries` calls `self.__doApplyCommand(command)` once per committed entry,
  in index order, before incrementing `raftLastApplied`: `_SyncObj__doApplyCommand` below
  replaces it and hands the raw bytes to the quorum (no pickled method calls in the log).
- `self.__sendAppendEntries()` replicates at once; the leader calls it right after appending.
- `self.__setCurrentTerm` writes term and vote to the journal (`setCurrentTerm`) before any
  vote request or grant is sent, and every acknowledgement (`next_node_idx`) goes through the
  transport, where the journal is synced first.
- The leader counts itself toward the commit index at the start of `_onTick`; the quorum
  syncs the journal before every tick, so the leader only counts entries that are durable.
- `_COMMAND_TYPE`: a command's first byte is its type (0 regular, 1 no-op).

Snapshots (see snapshots.py) rely on these, also pinned:

- pysyncobj reads the log only through `self.__raftLog[0][1]` (the first index, in
  `__getEntries`, `__sendAppendEntries`, `__deleteEntriesFrom/To`) and `[-1]` (the last
  entry), so a journal whose first record is a placeholder at a snapshot's index works as
  is: the placeholder serves as the previous entry of the next one and is never applied.
- It applies from `self.__raftLastApplied + 1` up to `self.__raftCommitIndex`
  (`__applyLogEntries`): after loading or installing a snapshot, `restore_snapshot` and the
  install set both to the snapshot's index.
- `_SyncObj__sendAppendEntries` is replaced whole (below): the same replication of entries,
  but a follower whose next index is at or before the log start gets the snapshot in chunks
  through our codec (snapshot_transfer.py) instead of pysyncobj's pickled full dump, and
  the pickled chunked transfer of oversized entries is gone. It uses `__conf`, `__otherNodes`,
  `__readonlyNodes`, `__connectedNodes`, `__raftNextIndex`, `__transport`,
  `__newAppendEntriesTime` (a time of pysyncobj's clock, `monotonicTime`:
  CLOCK_MONOTONIC_RAW, which is not `time.monotonic`), `__getPrevLogIndexTerm` and
  `__getEntries`.
- `_SyncObj__onMessageReceived` is wrapped: a snapshot chunk is first handed to pysyncobj as
  an append_entries without `prevLogIdx` and with commit index 0, which does exactly the
  bookkeeping of any leader message (term, leader, follower state, election timer) and
  touches neither the log nor the commit index; the chunk itself is handled here.
  Acknowledgements are `next_node_idx` messages (neither `reset` nor `success` until the
  install, then `success` at the snapshot's index + 1), which pysyncobj's leader counts as
  a response (`__lastResponseTime`).
- `self.__serializer` (pysyncobj's pickled dumps) is replaced by `_NoSerializer`, which
  `__tryLogCompaction` asks every tick whether a dump is in progress and which refuses
  everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import Node
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.syncobj import SyncObjException

from kraft.quorum.journal import DurableJournal
from kraft.quorum.snapshot_transfer import (
    SNAPSHOT_ACK,
    SNAPSHOT_CHUNK,
    SNAPSHOT_CHUNK_BYTES,
    SnapshotsOff,
    SnapshotTransfer,
    parse_ack,
    parse_chunk,
)
from kraft.quorum.snapshots import SnapshotId, SnapshotStore
from kraft.quorum.transport import (
    AuthenticatedTransport,
    LinkTls,
    ProtocolError,
    TransportSettings,
)

logger = logging.getLogger(__name__)

REGULAR = _syncobj._COMMAND_TYPE.REGULAR
NO_OP = _syncobj._COMMAND_TYPE.NO_OP
_REGULAR_PREFIX = bytes((REGULAR,))
# pysyncobj's own log compaction off: it snapshots the SyncObj's own attributes (the state
# machine here is the caller's, outside pysyncobj) and, without a dump file, drops the log
# prefix while keeping the snapshot only in memory — after a whole-cluster restart nothing is
# left to replay. The quorum compacts with snapshots of its own (snapshots.py).
_NEVER = 2**62


def install_journal_hook() -> None:
    """Make pysyncobj use a `DurableJournal` passed as `SyncObjConf.journalFile`."""
    original = _syncobj.createJournal
    if getattr(original, "kraft_hook", False):
        return

    def create_journal(journal_file: Any = None) -> Any:
        if isinstance(journal_file, DurableJournal):
            return journal_file
        return original(journal_file)

    create_journal.kraft_hook = True  # type: ignore[attr-defined]
    _syncobj.createJournal = create_journal


install_journal_hook()


class RaftInvariantError(RuntimeError):
    """pysyncobj did something this wrapper relies on it not doing (e.g. after an upgrade)."""


class _NoSerializer:
    """Stands in for pysyncobj's `Serializer` (pickled full dumps): never serializing, and
    refusing everything else, so pysyncobj's own snapshot machinery can never run."""

    def checkSerializing(self) -> tuple[int, None]:  # noqa: N802
        return SERIALIZER_STATE.NOT_SERIALIZING, None

    def cancelTransmisstion(self, transmission_id: Any) -> None:  # noqa: N802  (sic)
        pass

    def _refuse(self, *args: Any) -> None:
        raise RaftInvariantError("pysyncobj tried to use its pickled snapshot machinery")

    serialize = deserialize = getTransmissionData = setTransmissionData = _refuse


@dataclass(frozen=True)
class RaftTimeouts:
    """Raft timing, in seconds (Kafka's names in brackets).

    election: a follower that has heard nothing from a leader for a random time between
        election/2 and election starts an election [controller.quorum.election.timeout.ms];
    fetch: a leader that has heard from no majority for this long steps down
        [controller.quorum.fetch.timeout.ms];
    heartbeat: how often the leader sends append entries when idle.
    """

    election: float = 1.0
    fetch: float = 2.0

    @property
    def heartbeat(self) -> float:
        # pysyncobj requires raftMinTimeout > 3 * appendEntriesPeriod.
        return min(0.1, self.election / 8)


def make_conf(journal: DurableJournal, timeouts: RaftTimeouts, max_entry_bytes: int) -> SyncObjConf:
    return SyncObjConf(
        autoTick=False,  # the quorum's own thread ticks, so it can act between ticks
        journalFile=journal,
        fullDumpFile=None,
        logCompactionMinEntries=_NEVER,
        logCompactionMinTime=_NEVER,
        # Also makes the leader send append entries right after applying (followers learn
        # the new commit index at once, not on the next heartbeat).
        appendEntriesUseBatch=False,
        appendEntriesPeriod=timeouts.heartbeat,
        raftMinTimeout=timeouts.election / 2,
        raftMaxTimeout=timeouts.election,
        leaderFallbackTimeout=timeouts.fetch,
        connectionTimeout=max(timeouts.election, timeouts.fetch),  # unused by our transport
        # Above any single entry, so pysyncobj never uses its pickled chunked transfer.
        appendEntriesBatchSizeBytes=2 * max_entry_bytes + 1024,
        commandsWaitLeader=False,
        dynamicMembershipChange=False,
        useFork=False,
        tcp_keepalive=None,
    )


@dataclass(frozen=True)
class PeerState:
    node_id: int
    connected: bool
    match_index: int | None  # known on the leader only
    last_heard: float | None  # monotonic


@dataclass(frozen=True)
class RaftState:
    leader_id: int | None
    term: int
    active: bool  # leader that has applied its own first entry of this term
    commit_index: int
    applied_index: int
    last_index: int
    peers: tuple[PeerState, ...]
    first_index: int = 0  # the log start: 1, or the index of the snapshot the log follows


class RaftNode(SyncObj):  # pysyncobj is untyped (Any)
    """A pysyncobj Raft member whose log holds opaque byte entries.

    Lives on one thread (the quorum's); `on_apply(index, term, payload)` is called there for
    every committed entry in order, `payload` being None for pysyncobj's own no-op entries.

    `transport_factory` is for the seeded simulation (tests/kraft/quorum_sim/) only: a
    pysyncobj `transportClass` (called with the SyncObj, its own `Node` and the other nodes)
    used instead of the authenticated transport; it must also answer `is_connected(peer)` and
    `last_heard(peer)` like `AuthenticatedTransport`. Left None, `secret` and `listen` apply.
    """

    def __init__(
        self,
        node_id: int,
        voters: Mapping[int, tuple[str, int]],
        journal: DurableJournal,
        *,
        secret: bytes,
        listen: tuple[str, int],
        timeouts: RaftTimeouts,
        on_apply: Callable[[int, int, bytes | None], None],
        max_entry_bytes: int,
        tag: str = "",
        transport_factory: Callable[[Any, Node, Any], Any] | None = None,
        tls: LinkTls | None = None,
    ) -> None:
        self._journal = journal
        self._on_apply = on_apply
        self._active_term = -1
        self._votes_granted: tuple[int, set[str]] = (-1, set())  # (term, voters), candidate side
        self._tag = tag
        # Snapshots: off until `attach_snapshots`.
        self._transfer = SnapshotTransfer(
            journal,
            # pysyncobj creates the transport in its constructor (below).
            send=lambda node, message: self._SyncObj__transport.send(node, message),
            is_connected=lambda node: node in self._SyncObj__connectedNodes,
            position=lambda: (self.raftCurrentTerm, self.raftCommitIndex),
            installed=self._snapshot_installed,
            heartbeat=timeouts.heartbeat,
            stall_timeout=timeouts.fetch,
            chunk_bytes=min(SNAPSHOT_CHUNK_BYTES, 2 * max_entry_bytes),
            tag=tag,
        )
        self_node = Node(str(node_id), host=listen[0], port=listen[1])
        others = [
            Node(str(peer), host=host, port=port)
            for peer, (host, port) in voters.items()
            if peer != node_id
        ]
        settings = TransportSettings(
            ping_interval=timeouts.heartbeat * 2,
            link_timeout=timeouts.fetch,
            max_frame_bytes=4 * max_entry_bytes + (64 << 10),
        )
        created: list[AuthenticatedTransport] = []

        def transport_class(syncobj: Any, node: Node, other_nodes: Any) -> AuthenticatedTransport:
            transport = AuthenticatedTransport(
                syncobj,
                node,
                other_nodes,
                secret=secret,
                barrier=journal.sync,
                settings=settings,
                tag=tag,
                tls=tls,
            )
            created.append(transport)
            return transport

        try:
            super().__init__(
                self_node,
                others,
                make_conf(journal, timeouts, max_entry_bytes),
                transportClass=transport_factory or transport_class,
            )
        except SyncObjException as e:
            # With autoTick off, pysyncobj binds in its constructor and reports only this.
            cause = created[0].bind_error if created else None
            raise OSError(f"cannot bind the raft transport to {listen}: {cause}") from e
        transport = self._SyncObj__transport
        if transport_factory is None and not isinstance(transport, AuthenticatedTransport):
            raise RaftInvariantError("pysyncobj did not use the authenticated transport")
        if self._SyncObj__raftLog is not journal:
            raise RaftInvariantError("pysyncobj did not use the durable journal")
        self._SyncObj__serializer = _NoSerializer()
        self.transport: AuthenticatedTransport = transport

    @property
    def snapshot_chunk_bytes(self) -> int:
        return self._transfer.chunk_bytes

    @snapshot_chunk_bytes.setter
    def snapshot_chunk_bytes(self, value: int) -> None:
        self._transfer.chunk_bytes = value

    # -- pysyncobj override: committed entries go to the quorum, not to pickled methods -------

    def _SyncObj__doApplyCommand(self, command: bytes) -> None:  # noqa: N802
        index = self.raftLastApplied + 1
        entry = self._journal.entry(index)
        if entry is None or entry[0] != command:
            raise RaftInvariantError(f"applying entry {index}: not the journal's entry {index}")
        term = entry[2]
        if term == self.raftCurrentTerm and self._isLeader():
            self._active_term = term
        self._on_apply(index, term, command[1:] if command[:1] == _REGULAR_PREFIX else None)

    # -- leader appends ---------------------------------------------------------------------

    @property
    def is_active_leader(self) -> bool:
        return bool(self._isLeader()) and self._active_term == self.raftCurrentTerm

    def append(self, payload: bytes, expected_term: int) -> int | None:
        """Append `payload` at the end of the log if this node is the active leader of
        `expected_term`; returns its index, or None when it is not."""
        if not self.is_active_leader or self.raftCurrentTerm != expected_term:
            return None
        index = self._journal.last_index + 1
        self._journal.add(_REGULAR_PREFIX + payload, index, expected_term)
        return index

    def replicate(self) -> None:
        """Send append entries to the followers now, then make the leader's own log durable
        (in parallel with the followers' writes, and before the next tick counts it)."""
        self._SyncObj__sendAppendEntries()
        self._journal.sync()

    def add_reader(self, fd: int, callback: Callable[[int, int], None]) -> None:
        """Have the tick's poll() wake up and call `callback(fd, event)` when fd is readable."""
        self._poller.subscribe(fd, callback, POLL_EVENT_TYPE.READ)

    # -- state ------------------------------------------------------------------------------

    def leadership(self) -> tuple[int | None, int, bool]:
        """(leader id or None, current term, whether this node is the active leader)."""
        leader = self._getLeader()
        return (
            (None if leader is None else int(leader.id)),
            self.raftCurrentTerm,
            self.is_active_leader,
        )

    def state(self) -> RaftState:
        leader = self._getLeader()
        leader_id = None if leader is None else int(leader.id)
        is_leader = bool(self._isLeader())
        match_index: dict[Node, int] = self._SyncObj__raftMatchIndex if is_leader else {}
        peers = []
        for node in self.otherNodes:
            match = match_index.get(node)
            peers.append(
                PeerState(
                    node_id=int(node.id),
                    connected=self.transport.is_connected(node.id),
                    match_index=match if is_leader else None,
                    last_heard=self.transport.last_heard(node.id),
                )
            )
        peers.sort(key=lambda p: p.node_id)
        return RaftState(
            leader_id=leader_id,
            term=self.raftCurrentTerm,
            active=self.is_active_leader,
            commit_index=self.raftCommitIndex,
            applied_index=self.raftLastApplied,
            last_index=self._journal.last_index,
            peers=tuple(peers),
            first_index=self._journal.first_index,
        )

    # -- snapshots --------------------------------------------------------------------------

    def attach_snapshots(
        self, store: SnapshotStore, on_snapshot: Callable[[SnapshotId, bytes], None]
    ) -> None:
        """Serve snapshots from `store` to followers behind the log start, and install the
        leader's; `on_snapshot(snapshot, data)` is called (on this thread) after an install,
        before any later entry is applied."""
        self._transfer.attach(store, on_snapshot)

    def restore_snapshot(self, snapshot: SnapshotId) -> None:
        """At start, before the first tick: the state machine holds `snapshot`, so apply
        from the entry after it."""
        if self._journal.entry(snapshot.index) is None:
            raise RaftInvariantError(f"the journal does not hold snapshot {snapshot}")
        self._SyncObj__raftLastApplied = snapshot.index
        if self.raftCommitIndex < snapshot.index:
            self._SyncObj__raftCommitIndex = snapshot.index

    def _SyncObj__sendAppendEntries(self) -> None:  # noqa: N802
        # pysyncobj's leader replication, minus its pickled transfers (see the docstring).
        conf = self._SyncObj__conf
        # pysyncobj's clock (CLOCK_MONOTONIC_RAW), not time.monotonic: _onTick compares this
        # deadline with it.
        clock = _syncobj.monotonicTime
        started = clock()
        self._SyncObj__newAppendEntriesTime = started + conf.appendEntriesPeriod
        transport = self._SyncObj__transport
        connected = self._SyncObj__connectedNodes
        next_index = self._SyncObj__raftNextIndex
        for node in self._SyncObj__otherNodes | self._SyncObj__readonlyNodes:
            if node not in connected:
                self._transfer.forget(node)
                continue
            if next_index[node] <= self._journal.first_index:
                self._transfer.send_snapshot(node)
                continue
            self._transfer.forget(node)
            send_single = True
            while next_index[node] <= self._journal.last_index or send_single:
                send_single = False
                prev_index, prev_term = self._SyncObj__getPrevLogIndexTerm(next_index[node])
                entries: list[Any] = []
                if next_index[node] <= self._journal.last_index:
                    entries = self._SyncObj__getEntries(
                        next_index[node], None, conf.appendEntriesBatchSizeBytes
                    )
                    next_index[node] = entries[-1][1] + 1
                transport.send(
                    node,
                    {
                        "type": "append_entries",
                        "term": self.raftCurrentTerm,
                        "commit_index": self.raftCommitIndex,
                        "entries": entries,
                        "prevLogIdx": prev_index,
                        "prevLogTerm": prev_term,
                    },
                )
                if node not in connected or clock() - started > conf.appendEntriesPeriod:
                    break

    def _SyncObj__onMessageReceived(self, node: Node, message: dict[str, Any]) -> None:  # noqa: N802
        kind = message.get("type")
        if kind == "append_entries" and SNAPSHOT_CHUNK in message:
            chunk = parse_chunk(message[SNAPSHOT_CHUNK])
            term = message.get("term")
            if type(term) is not int or "prevLogIdx" in message or "entries" in message:
                raise ProtocolError("invalid snapshot message")
            current = term >= self.raftCurrentTerm
            super()._SyncObj__onMessageReceived(
                node, {"type": "append_entries", "term": term, "commit_index": 0}
            )
            if current and self._getLeader() == node:
                try:
                    self._transfer.receive_chunk(node, self.raftLastApplied, *chunk)
                except SnapshotsOff as e:
                    raise RaftInvariantError(str(e)) from e
            return
        if kind == "next_node_idx" and SNAPSHOT_ACK in message:
            ack = parse_ack(message.pop(SNAPSHOT_ACK))
            super()._SyncObj__onMessageReceived(node, message)
            if self._isLeader():
                behind = self._SyncObj__raftNextIndex.get(node, 0) <= self._journal.first_index
                self._transfer.on_ack(node, *ack, behind=behind)
            return
        if kind == "append_entries":
            message = self._skip_conflicting_term(self._without_stale_truncation(message))
        elif kind == "response_vote" and not self._first_grant(node, message):
            return
        super()._SyncObj__onMessageReceived(node, message)

    def _first_grant(self, node: Node, message: dict[str, Any]) -> bool:
        """pysyncobj counts vote grants, not voters: a grant delivered twice would count twice
        and could make a leader without a majority (found by tests/kraft/test_quorum_sim.py
        with 5 voters on a network that duplicates; the transport itself never does). A voter
        grants at most one vote per term, so a second grant from it for the term is a copy."""
        term: int = message["term"]
        granted_term, voters = self._votes_granted
        if granted_term != term:
            voters = set()
            self._votes_granted = (term, voters)
        if node.id in voters:
            return False
        voters.add(node.id)
        return True

    def _without_stale_truncation(self, message: dict[str, Any]) -> dict[str, Any]:
        """pysyncobj cuts the log after an append_entries' last entry whenever the log goes
        on past it, conflict or not (Raft cuts only from a conflicting entry). A late
        append_entries, overtaken by a newer one from the same leader, would so drop entries
        this node has acknowledged, which may count toward a commit: a committed entry lost
        (found by tests/kraft/test_quorum_sim.py; the transport keeps each link in order, but
        a message can still arrive on an old link after newer ones on a new link).

        When the log already holds the message's previous entry and all its entries, with more
        after them, the message says nothing new about the log: pysyncobj gets it without its
        log part (the term, leader and election-timer bookkeeping of any leader message, as for
        a snapshot chunk) and with a commit index no further than the message's last entry —
        as far as the log is known to match the leader's."""
        prev = message.get("prevLogIdx")
        entries = message.get("entries") or []
        if type(prev) is not int or "transmission" in message:
            return message
        last = entries[-1][1] if entries else prev
        held = self._journal.entry(prev)
        if self._journal.last_index <= last or held is None or held[2] != message["prevLogTerm"]:
            return message
        for _, index, term in entries:
            held = self._journal.entry(index)
            if held is None or held[2] != term:
                return message  # a conflict: pysyncobj's cut is Raft's
        return {
            "type": "append_entries",
            "term": message["term"],
            "commit_index": min(message["commit_index"], last),
        }

    def _skip_conflicting_term(self, message: dict[str, Any]) -> dict[str, Any]:
        """On a term mismatch at prevLogIdx pysyncobj answers "try prevLogIdx", so the leader
        walks a divergent suffix back one entry per round trip, and a heartbeat sent meanwhile
        (from the leader's optimistic next index) answers "my log ends here", which restarts
        the walk: with a round trip near the heartbeat interval, a follower with a long
        divergent suffix takes tens of seconds to catch up (found by
        tests/kraft/test_quorum_sim.py).

        As most Raft implementations do, answer with the first index of the conflicting term
        instead: pysyncobj gets the message with prevLogIdx moved there and a prevLogTerm no
        entry has, so it answers just that, after the usual bookkeeping, touching no entry."""
        prev = message.get("prevLogIdx")
        if type(prev) is not int or "transmission" in message:
            return message
        held = self._journal.entry(prev)
        if held is None or held[2] == message["prevLogTerm"]:
            return message
        first = prev
        while first - 1 > self._journal.first_index:
            before = self._journal.entry(first - 1)
            if before is None or before[2] != held[2]:
                break
            first -= 1
        if first == prev:
            return message
        return {**message, "prevLogIdx": first, "prevLogTerm": -1}

    def _snapshot_installed(self, snapshot: SnapshotId) -> None:
        # The log now starts at the snapshot. Commit index back to it too: entries kept after
        # it are committed once the leader says so (after it has matched them).
        self._SyncObj__raftLastApplied = snapshot.index
        self._SyncObj__raftCommitIndex = snapshot.index
