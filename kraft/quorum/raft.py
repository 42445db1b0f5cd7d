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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.node import Node
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.syncobj import SyncObjException

from kraft.quorum.journal import DurableJournal
from kraft.quorum.transport import AuthenticatedTransport, TransportSettings

logger = logging.getLogger(__name__)

REGULAR = _syncobj._COMMAND_TYPE.REGULAR
NO_OP = _syncobj._COMMAND_TYPE.NO_OP
_REGULAR_PREFIX = bytes((REGULAR,))
# Log compaction off: pysyncobj's compaction snapshots the SyncObj's own attributes (the state
# machine here is the caller's, outside pysyncobj) and, without a dump file, drops the log
# prefix while keeping the snapshot only in memory — after a whole-cluster restart nothing is
# left to replay. See the package docstring.
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


class RaftNode(SyncObj):  # pysyncobj is untyped (Any)
    """A pysyncobj Raft member whose log holds opaque byte entries.

    Lives on one thread (the quorum's); `on_apply(index, term, payload)` is called there for
    every committed entry in order, `payload` being None for pysyncobj's own no-op entries.
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
    ) -> None:
        self._journal = journal
        self._on_apply = on_apply
        self._active_term = -1
        self._tag = tag
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
                transportClass=transport_class,
            )
        except SyncObjException as e:
            # With autoTick off, pysyncobj binds in its constructor and reports only this.
            cause = created[0].bind_error if created else None
            raise OSError(f"cannot bind the raft transport to {listen}: {cause}") from e
        transport = self._SyncObj__transport
        if not isinstance(transport, AuthenticatedTransport):
            raise RaftInvariantError("pysyncobj did not use the authenticated transport")
        if self._SyncObj__raftLog is not journal:
            raise RaftInvariantError("pysyncobj did not use the durable journal")
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
        )
