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
  through our codec instead of pysyncobj's pickled full dump, and the pickled chunked
  transfer of oversized entries is gone. It uses `__conf`, `__otherNodes`,
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
import time
import zlib
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
from kraft.quorum.snapshots import SnapshotId, SnapshotStore, install
from kraft.quorum.transport import AuthenticatedTransport, ProtocolError, TransportSettings

logger = logging.getLogger(__name__)

REGULAR = _syncobj._COMMAND_TYPE.REGULAR
NO_OP = _syncobj._COMMAND_TYPE.NO_OP
_REGULAR_PREFIX = bytes((REGULAR,))
# pysyncobj's own log compaction off: it snapshots the SyncObj's own attributes (the state
# machine here is the caller's, outside pysyncobj) and, without a dump file, drops the log
# prefix while keeping the snapshot only in memory — after a whole-cluster restart nothing is
# left to replay. The quorum compacts with snapshots of its own (snapshots.py).
_NEVER = 2**62

# Snapshot transfer, on top of Raft's own messages (codec-encoded like everything else):
#   append_entries + SNAPSHOT_CHUNK: (index, term, size, crc32 of the data, offset, bytes)
#   next_node_idx  + SNAPSHOT_ACK:   (index, term, bytes received, in order)
# The leader keeps up to _WINDOW chunks unacknowledged; "in order" False asks it to resend
# from "bytes received" (a gap: the follower restarted, or the data failed its CRC). Chunks
# the follower already holds are skipped, and its acknowledgement moves the leader past them.
SNAPSHOT_CHUNK = "snapshot_chunk"
SNAPSHOT_ACK = "snapshot_ack"
SNAPSHOT_CHUNK_BYTES = 1 << 20
MAX_SNAPSHOT_BYTES = 1 << 32
_WINDOW = 4


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


@dataclass
class _Outgoing:
    """A snapshot on its way to one follower (leader side)."""

    snapshot: SnapshotId
    data: bytes
    crc: int
    started: float
    acked: int = 0  # the follower holds data[:acked]
    sent: int = 0  # data[:sent] has been sent
    last_sent: float = 0.0
    last_progress: float = 0.0


@dataclass
class _Incoming:
    """A snapshot being received from the leader (follower side)."""

    snapshot: SnapshotId
    size: int
    crc: int
    data: bytearray


def _parse_chunk(value: Any) -> tuple[SnapshotId, int, int, int, bytes]:
    """(snapshot, size, crc, offset, data) of a SNAPSHOT_CHUNK value, or ProtocolError."""
    if not isinstance(value, tuple) or len(value) != 6:
        raise ProtocolError("malformed snapshot chunk")
    index, term, size, crc, offset, data = value
    if not (
        all(type(v) is int for v in (index, term, size, crc, offset))
        and isinstance(data, bytes)
        and index >= 1
        and term >= 0
        and 0 <= crc < 2**32
        and 0 <= offset <= offset + len(data) <= size <= MAX_SNAPSHOT_BYTES
    ):
        raise ProtocolError("invalid snapshot chunk")
    return SnapshotId(index, term), size, crc, offset, data


def _parse_ack(value: Any) -> tuple[SnapshotId, int, bool]:
    if not isinstance(value, tuple) or len(value) != 4:
        raise ProtocolError("malformed snapshot acknowledgement")
    index, term, received, in_order = value
    if not (
        all(type(v) is int for v in (index, term, received))
        and isinstance(in_order, bool)
        and index >= 1
        and term >= 0
        and 0 <= received <= MAX_SNAPSHOT_BYTES
    ):
        raise ProtocolError("invalid snapshot acknowledgement")
    return SnapshotId(index, term), received, in_order


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

    `transport_factory` is for the seeded simulation (tests/kraft/quorum_sim.py) only: a
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
    ) -> None:
        self._journal = journal
        self._on_apply = on_apply
        self._active_term = -1
        self._votes_granted: tuple[int, set[str]] = (-1, set())  # (term, voters), candidate side
        self._tag = tag
        # Snapshots: off until `attach_snapshots`.
        self._snapshots: SnapshotStore | None = None
        self._on_snapshot: Callable[[SnapshotId, bytes], None] | None = None
        self._outgoing: dict[Node, _Outgoing] = {}
        self._incoming: _Incoming | None = None
        self._sendable: tuple[SnapshotId, bytes, int] | None = None
        self._unservable_logged = 0.0
        self._heartbeat = timeouts.heartbeat
        self._stall_timeout = timeouts.fetch
        self.snapshot_chunk_bytes = min(SNAPSHOT_CHUNK_BYTES, 2 * max_entry_bytes)
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
        self._snapshots = store
        self._on_snapshot = on_snapshot

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
                self._outgoing.pop(node, None)
                continue
            if next_index[node] <= self._journal.first_index:
                self._send_snapshot(node)
                continue
            self._outgoing.pop(node, None)
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
            chunk = _parse_chunk(message[SNAPSHOT_CHUNK])
            term = message.get("term")
            if type(term) is not int or "prevLogIdx" in message or "entries" in message:
                raise ProtocolError("invalid snapshot message")
            current = term >= self.raftCurrentTerm
            super()._SyncObj__onMessageReceived(
                node, {"type": "append_entries", "term": term, "commit_index": 0}
            )
            if current and self._getLeader() == node:
                self._receive_snapshot_chunk(node, *chunk)
            return
        if kind == "next_node_idx" and SNAPSHOT_ACK in message:
            ack = _parse_ack(message.pop(SNAPSHOT_ACK))
            super()._SyncObj__onMessageReceived(node, message)
            if self._isLeader():
                self._on_snapshot_ack(node, *ack)
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

    # Leader side.

    def _snapshot_to_send(self) -> tuple[SnapshotId, bytes, int] | None:
        """The newest valid snapshot the log continues from (cached while it is)."""
        if self._snapshots is None:
            return None
        for snapshot in reversed(self._snapshots.list()):
            if snapshot.index < self._journal.first_index:
                break
            if self._sendable is not None and self._sendable[0] == snapshot:
                return self._sendable
            data = self._snapshots.read(snapshot)
            if data is not None:
                self._sendable = (snapshot, data, zlib.crc32(data))
                return self._sendable
        return None

    def _send_snapshot(self, node: Node) -> None:
        now = time.monotonic()
        outgoing = self._outgoing.get(node)
        if outgoing is None or outgoing.snapshot.index < self._journal.first_index:
            source = self._snapshot_to_send()
            if source is None:
                self._outgoing.pop(node, None)
                if now - self._unservable_logged > 10:
                    self._unservable_logged = now
                    logger.error(
                        "%svoter %s is behind the log start %d, and no snapshot is readable",
                        self._tag,
                        node.id,
                        self._journal.first_index,
                    )
                return
            snapshot, data, crc = source
            outgoing = _Outgoing(snapshot, data, crc, started=now, last_progress=now)
            self._outgoing[node] = outgoing
            logger.info(
                "%svoter %s is behind the log start %d: sending snapshot %d (term %d, %d bytes)",
                self._tag,
                node.id,
                self._journal.first_index,
                snapshot.index,
                snapshot.term,
                len(data),
            )
        if outgoing.sent > outgoing.acked and now - outgoing.last_progress > self._stall_timeout:
            outgoing.sent = outgoing.acked  # unacknowledged for too long: send it again
            outgoing.last_progress = now
        size = len(outgoing.data)
        step = self.snapshot_chunk_bytes
        sent_any = False
        while outgoing.sent < size and outgoing.sent - outgoing.acked < _WINDOW * step:
            piece = outgoing.data[outgoing.sent : outgoing.sent + step]
            if not self._send_chunk(node, outgoing, piece):
                return
            outgoing.sent += len(piece)
            sent_any = True
        if not sent_any and now - outgoing.last_sent >= self._heartbeat:
            # Nothing due: an empty chunk keeps the follower's election timer reset and asks
            # it where it stands.
            self._send_chunk(node, outgoing, b"")

    def _send_chunk(self, node: Node, outgoing: _Outgoing, piece: bytes) -> bool:
        snapshot = outgoing.snapshot
        chunk = (snapshot.index, snapshot.term, len(outgoing.data), outgoing.crc, outgoing.sent)
        self._SyncObj__transport.send(
            node,
            {
                "type": "append_entries",
                "term": self.raftCurrentTerm,
                "commit_index": self.raftCommitIndex,
                SNAPSHOT_CHUNK: (*chunk, piece),
            },
        )
        outgoing.last_sent = time.monotonic()
        return node in self._SyncObj__connectedNodes

    def _on_snapshot_ack(
        self, node: Node, snapshot: SnapshotId, received: int, in_order: bool
    ) -> None:
        outgoing = self._outgoing.get(node)
        if outgoing is None or outgoing.snapshot != snapshot:
            return
        size = len(outgoing.data)
        outgoing.last_progress = time.monotonic()
        if in_order and received >= size:
            del self._outgoing[node]
            logger.info(
                "%svoter %s installed snapshot %d in %.0f ms",
                self._tag,
                node.id,
                snapshot.index,
                (outgoing.last_progress - outgoing.started) * 1000,
            )
            return
        if not in_order or received > outgoing.sent:
            outgoing.sent = outgoing.acked = min(received, size)
        elif received > outgoing.acked:
            outgoing.acked = received
        if (
            node in self._SyncObj__connectedNodes
            and self._SyncObj__raftNextIndex.get(node, 0) <= self._journal.first_index
        ):
            self._send_snapshot(node)

    # Follower side.

    def _receive_snapshot_chunk(
        self, node: Node, snapshot: SnapshotId, size: int, crc: int, offset: int, data: bytes
    ) -> None:
        if snapshot.index <= self.raftLastApplied:
            # Already past it (a late chunk of a finished transfer): say where the log is.
            self._incoming = None
            self._send_next_index(node, self._journal.last_index + 1, reset=True)
            return
        if self._snapshots is None or self._on_snapshot is None:
            raise RaftInvariantError(f"voter {node.id} sent a snapshot; snapshots are off here")
        incoming = self._incoming
        if incoming is None or (incoming.snapshot, incoming.size, incoming.crc) != (
            snapshot,
            size,
            crc,
        ):
            if offset != 0:
                self._ack(node, snapshot, 0, in_order=False)
                return
            incoming = self._incoming = _Incoming(snapshot, size, crc, bytearray())
        received = len(incoming.data)
        if offset > received:
            self._ack(node, snapshot, received, in_order=False)  # a gap: resend from here
            return
        # A chunk (or the part of it) this node already holds is a resend: skipped.
        incoming.data += data[received - offset :]
        if len(incoming.data) < size:
            self._ack(node, snapshot, len(incoming.data), in_order=True)
            return
        self._incoming = None
        payload = bytes(incoming.data)
        if zlib.crc32(payload) != crc:
            logger.warning(
                "%ssnapshot %d from voter %s failed its checksum: asking again",
                self._tag,
                snapshot.index,
                node.id,
            )
            self._ack(node, snapshot, 0, in_order=False)
            return
        self._install_snapshot(node, snapshot, payload)

    def _install_snapshot(self, node: Node, snapshot: SnapshotId, data: bytes) -> None:
        assert self._snapshots is not None and self._on_snapshot is not None
        started = time.monotonic()
        kept_suffix = install(self._snapshots, self._journal, snapshot, data)
        # The log now starts at the snapshot. Commit index back to it too: entries kept after
        # it are committed once the leader says so (after it has matched them).
        self._SyncObj__raftLastApplied = snapshot.index
        self._SyncObj__raftCommitIndex = snapshot.index
        self._journal.setRaftCommitIndex(snapshot.index)
        logger.info(
            "%sinstalled snapshot %d (term %d, %d bytes) from voter %s in %.0f ms; log %d..%d%s",
            self._tag,
            snapshot.index,
            snapshot.term,
            len(data),
            node.id,
            (time.monotonic() - started) * 1000,
            self._journal.first_index,
            self._journal.last_index,
            " (kept the entries after it)" if kept_suffix else "",
        )
        self._on_snapshot(snapshot, data)
        self._send_next_index(
            node,
            snapshot.index + 1,
            success=True,
            ack=(snapshot.index, snapshot.term, len(data), True),
        )

    def _ack(self, node: Node, snapshot: SnapshotId, received: int, in_order: bool) -> None:
        self._send_next_index(
            node,
            snapshot.index + 1,
            ack=(snapshot.index, snapshot.term, received, in_order),
        )

    def _send_next_index(
        self,
        node: Node,
        next_index: int,
        *,
        reset: bool = False,
        success: bool = False,
        ack: tuple[int, int, int, bool] | None = None,
    ) -> None:
        message: dict[str, Any] = {
            "type": "next_node_idx",
            "next_node_idx": next_index,
            "reset": reset,
            "success": success,
        }
        if ack is not None:
            message[SNAPSHOT_ACK] = ack
        self._SyncObj__transport.send(node, message)
