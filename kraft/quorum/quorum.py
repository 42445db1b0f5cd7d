"""`Quorum`: the asyncio face of the Raft metadata quorum.

pysyncobj runs on a thread of its own (one per quorum), which owns the `RaftNode`, its journal
and its sockets. The event loop talks to it through a queue plus a wake-up pipe registered in
pysyncobj's poller; everything it reports back (committed entries, leader changes, append
results) is marshalled onto the loop with `call_soon_threadsafe`, in the order it happened, so
callbacks run on the loop and never concurrently with the caller's code.

One pass of the thread's loop::

    take queued appends -> (leader) write them to the journal, send append entries, fsync
    pysyncobj tick       -> commit index (counting only durable entries), apply, elections,
                            heartbeats, then wait in poll() for sockets or the wake-up pipe
    fsync                -> whatever the tick appended (follower appends were synced already,
                            before their acknowledgement left)
    publish              -> leader/term changes and the status snapshot

Snapshots (format and crash rules in snapshots.py). Every `max_entries_between_snapshots`
applied entries or `max_bytes_between_snapshots` applied bytes (Kafka's
metadata.log.max.record.bytes.between.snapshots, scaled down), the thread asks the loop for a
snapshot; the loop takes it from the state machine (`snapshot_provider`, at the last entry it
delivered), a worker thread writes it durably, and the thread then drops the journal prefix
(`retain`). At start the newest usable snapshot is handed to `on_snapshot` before anything is
replayed; a follower behind the leader's log start receives the leader's snapshot (raft.py),
installs it and hands it over the same way, before any later entry.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kraft.quorum.journal import DurableJournal, JournalError
from kraft.quorum.raft import RaftInvariantError, RaftNode, RaftState, RaftTimeouts
from kraft.quorum.snapshots import SnapshotId, SnapshotStore, recover, retain
from kraft.quorum.transport import LinkTls

logger = logging.getLogger(__name__)

_TICK_SECONDS = 0.05
_STATUS_INTERVAL = 0.1


class QuorumError(Exception):
    """Base class of the quorum's errors."""


class NotLeader(QuorumError):
    """This node is not the active leader (of the expected term): nothing was appended.

    `leader_id` is the leader this node knows of, or None during an election.
    """

    def __init__(self, leader_id: int | None, term: int) -> None:
        super().__init__(f"not the leader (leader: {leader_id}, term {term})")
        self.leader_id = leader_id
        self.term = term


class EntryDiscarded(QuorumError):
    """The entry was appended, then replaced by a later leader's entry: it is not committed."""


class CommitTimeout(QuorumError):
    """The entry was appended but not known to be committed in time. Its fate is unknown: if a
    later leader commits it, it still arrives through `on_commit` like any entry."""


class QuorumStopped(QuorumError):
    """The quorum is stopped (or failed): see the log for why."""


@dataclass(frozen=True)
class VoterStatus:
    """One voter, as seen from this node (Kafka's DescribeQuorum ReplicaState)."""

    node_id: int
    match_index: int | None  # the leader's knowledge of the voter's log end; None elsewhere
    lag: int | None  # leader's last index - match_index
    connected: bool  # outbound link up (always True for this node itself)
    last_heard_ms: int | None  # ms since anything was read from it; 0 for this node


@dataclass(frozen=True)
class QuorumStatus:
    node_id: int
    leader_id: int | None
    term: int
    is_leader: bool
    commit_index: int
    applied_index: int
    last_index: int
    voters: tuple[VoterStatus, ...] = field(default=())
    first_index: int = 0  # the log start: 1, or the index of the snapshot it follows
    snapshot_index: int = 0  # of the newest snapshot written or installed here (0: none)


@dataclass
class _Append:
    payload: bytes
    term: int
    future: asyncio.Future[int]
    index: int | None = None


class Quorum:
    """A voter of the Raft metadata quorum (a KRaft controller's replicated log).

    `voters` maps every voter's node id to the (host, port) its Raft transport listens on (the
    address the others dial); this node binds its own entry, or `listen` when given (e.g.
    when the others reach it through a proxy). `secret` is the cluster secret every voter must
    hold. `data_dir` holds the journal (`raft.log`, `raft.state`).

    `on_commit(index, entry)` is called on the loop exactly once per committed entry, in log
    order. Indexes are Raft log indexes: increasing, not contiguous (pysyncobj's own no-op
    entries — the first entry of each leader's term — take indexes too and are not reported).
    On every start the log is replayed from the newest snapshot (or from the beginning),
    except the entries at or below `applied_index`, for a caller that has persisted its state
    up to there; a replayed entry is reported as soon as it is known committed, the rest once
    a leader confirms them.

    Snapshots: `snapshot_provider()` returns (the index of the last entry delivered to
    `on_commit` or `on_snapshot`, the state machine's state as bytes); `on_snapshot(index,
    data)` must replace the state machine's state by one such snapshot — at start (unless
    `index <= applied_index`) and when the leader sends one because this member is behind its
    log start — before any later `on_commit`. Both are called on the loop; the bytes are opaque
    here. Without a provider this member never compacts its log; without `on_snapshot` it
    cannot load one (a snapshot found at start or sent by a leader stops it).

    `on_leader_change(leader_id, term)` is called on the loop whenever the known leader or the
    term changes; `leader_id` is None while no leader is known. This node reports itself as the
    leader only once it has applied every entry of previous terms (through `on_commit`), so
    its state machine is current when it starts to act, as in Kafka's RaftClient.
    """

    def __init__(
        self,
        node_id: int,
        voters: Mapping[int, tuple[str, int]],
        data_dir: str,
        secret: bytes | str,
        *,
        on_commit: Callable[[int, bytes], None],
        on_leader_change: Callable[[int | None, int], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        fetch_timeout_ms: int = 2000,
        election_timeout_ms: int = 1000,
        listen: tuple[str, int] | None = None,
        applied_index: int = 0,
        max_entry_bytes: int = 1 << 20,
        snapshot_provider: Callable[[], tuple[int, bytes]] | None = None,
        on_snapshot: Callable[[int, bytes], None] | None = None,
        max_entries_between_snapshots: int = 20_000,
        max_bytes_between_snapshots: int = 20 << 20,
        snapshots_kept: int = 2,
        tls: LinkTls | None = None,
    ) -> None:
        if node_id not in voters:
            raise ValueError(f"node {node_id} is not among the voters {sorted(voters)}")
        if any(not 0 <= v < 2**31 for v in voters):
            raise ValueError("voter ids must be in [0, 2**31)")
        secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not secret_bytes:
            raise ValueError("the cluster secret must not be empty")
        self.node_id = node_id
        self.voters = dict(voters)
        self.data_dir = data_dir
        self._secret = secret_bytes
        self._on_commit = on_commit
        self._on_leader_change = on_leader_change
        self._loop = loop
        self._timeouts = RaftTimeouts(election_timeout_ms / 1000, fetch_timeout_ms / 1000)
        self._listen = listen or self.voters[node_id]
        self._tls = tls
        self._replay_floor = applied_index
        self.max_entry_bytes = max_entry_bytes
        self._tag = f"[node {node_id}] "
        if min(max_entries_between_snapshots, max_bytes_between_snapshots, snapshots_kept) < 1:
            raise ValueError("snapshot thresholds and snapshots_kept must be positive")
        self._snapshot_provider = snapshot_provider
        self._on_snapshot = on_snapshot
        self._snapshot_every_entries = max_entries_between_snapshots
        self._snapshot_every_bytes = max_bytes_between_snapshots
        self._snapshots_kept = snapshots_kept
        self._store: SnapshotStore | None = None

        # Loop side.
        self._leader_id: int | None = None
        self._term = 0
        self._applied_index = 0
        self._appends: dict[int, _Append] = {}  # by token, until the thread assigns an index
        self._by_index: dict[int, _Append] = {}
        self._next_token = 0
        self._started = False
        self._closed = False
        self._failure: BaseException | None = None
        self._stopped: asyncio.Future[None] | None = None
        # (index, term) of the last entry or snapshot handed to the state machine.
        self._delivered = (0, 0)
        self._snapshot_tasks: set[asyncio.Task[None]] = set()

        # Thread side: what was applied since the last snapshot, and whether one is on its way.
        self._since_entries = 0
        self._since_bytes = 0
        self._snapshot_pending = False
        self._snapshot_index = 0

        # Shared with the thread (each handed over whole; the GIL makes that atomic).
        self._queue: collections.deque[tuple[int, bytes, int]] = collections.deque()
        # Snapshots the loop had written (None: none this time), with size and write time.
        self._written: collections.deque[tuple[SnapshotId | None, int, float]] = collections.deque()
        self._stopping = False
        self._status = QuorumStatus(node_id, None, 0, False, 0, 0, 0)
        # The thread's view after its last pass: (leader, term, monotonic time by which a
        # majority of voters, this one included, had last been heard from — None unless this
        # node leads).
        self._thread_view: tuple[int | None, int, float | None] = (None, 0, None)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._node: RaftNode | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal, bind the Raft port and join the quorum. Raises if either fails."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        loop = self._loop = self._loop or asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"kraft-quorum-{self.node_id}", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            await self._stopped
            self._close_pipe()
            raise

    async def stop(self) -> None:
        """Leave the quorum: close the sockets and the journal. Pending appends fail."""
        if not self._started or self._stopped is None:
            return
        if self._snapshot_tasks:  # a snapshot being written: let it finish (it is atomic)
            await asyncio.gather(*self._snapshot_tasks, return_exceptions=True)
        self._stopping = True
        self._wake()
        await asyncio.shield(self._stopped)
        self._fail_pending(QuorumStopped("the quorum is stopped"))
        self._close_pipe()

    # -- appending ----------------------------------------------------------------------------

    async def append(
        self, entry: bytes, timeout_ms: int = 5000, *, expected_term: int | None = None
    ) -> int:
        """Append `entry` to the log as the leader; returns its index once it is committed and
        `on_commit` has been called for it here.

        Raises `NotLeader` (nothing appended) unless this node is the active leader — of
        `expected_term`, when given, so that a controller only commits the decisions it took
        in its own term. Raises `CommitTimeout` after `timeout_ms` and `EntryDiscarded`
        when a new leader overwrote the entry.
        """
        if self._failure is not None or self._closed or not self._started:
            raise QuorumStopped("the quorum is not running")
        if len(entry) > self.max_entry_bytes:
            raise ValueError(f"entry of {len(entry)} bytes is over {self.max_entry_bytes}")
        if not self.is_leader or (expected_term is not None and expected_term != self._term):
            raise NotLeader(self._leader_id, self._term)
        assert self._loop is not None
        token = self._next_token
        self._next_token += 1
        pending = _Append(bytes(entry), self._term, self._loop.create_future())
        self._appends[token] = pending
        self._queue.append((token, pending.payload, pending.term))
        self._wake()
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_ms / 1000)
        except TimeoutError:
            raise CommitTimeout(
                f"entry {pending.index} not committed within {timeout_ms} ms"
            ) from None
        finally:
            self._appends.pop(token, None)
            if pending.index is not None and self._by_index.get(pending.index) is pending:
                del self._by_index[pending.index]

    # -- state --------------------------------------------------------------------------------

    @property
    def leader_id(self) -> int | None:
        return self._leader_id

    @property
    def term(self) -> int:
        return self._term

    @property
    def is_leader(self) -> bool:
        return self._leader_id == self.node_id

    def leadership_confirmed(self, within_s: float) -> bool:
        """Whether this node leads, in the term the loop knows, with a majority of the voters
        heard from within `within_s` — as seen by the Raft thread, not only as last posted
        to the loop. A leader that was frozen (SIGSTOP, a stall) wakes believing it leads,
        and the loop may run before the thread has heard of the new term: its contact with
        the majority is then as old as the freeze, so it decides nothing until it hears
        again from a majority, or learns that it was deposed."""
        leader_id, term, contact = self._thread_view
        return (
            self.is_leader
            and leader_id == self.node_id
            and term == self._term
            and contact is not None
            and time.monotonic() - contact <= within_s
        )

    @property
    def applied_index(self) -> int:
        """Index of the last entry applied here (delivered or not, no-ops included)."""
        return self._applied_index

    def status(self) -> QuorumStatus:
        """A recent snapshot (at most ~0.1 s old) for DescribeQuorum and the admin API."""
        return self._status

    @property
    def listen_address(self) -> tuple[str, int] | None:
        node = self._node
        address = None if node is None else node.transport.listen_address
        return None if address is None else (address[0], address[1])

    # -- the Raft thread ----------------------------------------------------------------------

    def _run(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None and self._stopped is not None
        try:
            journal = DurableJournal(self.data_dir, self._tag)
            try:
                store = SnapshotStore(self.data_dir, self._tag)
                loaded = recover(store, journal, self._tag)
                if loaded is not None and self._on_snapshot is None:
                    raise QuorumError(
                        f"{self.data_dir} holds snapshot {loaded[0].index}, but nothing loads it"
                    )
                node = RaftNode(
                    self.node_id,
                    self.voters,
                    journal,
                    secret=self._secret,
                    listen=self._listen,
                    timeouts=self._timeouts,
                    on_apply=self._post_applied,
                    max_entry_bytes=self.max_entry_bytes,
                    tag=self._tag,
                    tls=self._tls,
                )
                if loaded is not None:
                    node.restore_snapshot(loaded[0])
            except BaseException:
                journal._destroy()
                raise
        except BaseException as e:  # noqa: BLE001  (handed to start())
            loop.call_soon_threadsafe(_set_exception, ready, e)
            loop.call_soon_threadsafe(_set_result, self._stopped)
            return
        self._node = node
        self._store = store
        if self._on_snapshot is not None:
            node.attach_snapshots(store, self._installed)
        node.add_reader(self._wake_r, self._drain_wake)
        logger.info(
            "%sraft quorum member started: voters %s, log %d..%d, snapshot %s, commit %d, term %d",
            self._tag,
            sorted(self.voters),
            journal.first_index,
            journal.last_index,
            "none" if loaded is None else loaded[0].index,
            node.raftCommitIndex,
            node.raftCurrentTerm,
        )
        if loaded is not None:
            self._snapshot_index = loaded[0].index
            self._post(self._snapshot_loaded, loaded[0].index, loaded[0].term, loaded[1])
        loop.call_soon_threadsafe(_set_result, ready)
        published: tuple[int | None, int] | None = None
        last_status = 0.0
        try:
            while not self._stopping:
                while self._written:
                    self._compact(node, journal, *self._written.popleft())
                replicate = self._take_appends(node)
                if replicate:
                    node.replicate()
                try:
                    node.doTick(0.0 if self._queue else _TICK_SECONDS)
                except (JournalError, RaftInvariantError):
                    raise
                except Exception:
                    # pysyncobj's own autoTick thread does the same: log, breathe, go on.
                    logger.exception("%sraft tick failed", self._tag)
                    time.sleep(_TICK_SECONDS)
                journal.sync()
                leader_id, term, active = node.leadership()
                if leader_id == self.node_id and not active:
                    leader_id = None  # leader, but still applying previous terms' entries
                contact = self._majority_contact(node) if leader_id == self.node_id else None
                self._thread_view = (leader_id, term, contact)
                changed = (leader_id, term) != published
                if changed:
                    published = (leader_id, term)
                    self._log_leader(leader_id, term)
                    self._post(self._leader_changed, leader_id, term)
                now = time.monotonic()
                if changed or now - last_status >= _STATUS_INTERVAL:
                    last_status = now
                    self._status = self._make_status(node.state(), leader_id, now)
        except BaseException as e:  # noqa: BLE001  (fail-stop, reported on the loop)
            logger.critical("%sraft quorum member failed: %s", self._tag, e, exc_info=True)
            self._post(self._failed, e)
        finally:
            try:
                node.destroy()
            except Exception:
                logger.exception("%sclosing the raft node failed", self._tag)
            self._node = None
            logger.info("%sraft quorum member stopped", self._tag)
            self._post(_set_result, self._stopped)

    def _majority_contact(self, node: RaftNode) -> float | None:
        """Monotonic time by which this node had heard from enough peers to make, with
        itself, a majority of the voters (None: it never had)."""
        needed = len(self.voters) // 2  # peers, besides this node
        if needed == 0:
            return time.monotonic()
        heard = sorted(
            (
                t
                for peer in node.otherNodes
                if (t := node.transport.last_heard(peer.id)) is not None
            ),
            reverse=True,
        )
        return heard[needed - 1] if len(heard) >= needed else None

    def _take_appends(self, node: RaftNode) -> bool:
        appended = False
        while self._queue:
            token, payload, term = self._queue.popleft()
            index = node.append(payload, term)
            if index is None:
                leader_id, current_term, _ = node.leadership()
                self._post(self._append_refused, token, leader_id, current_term)
            else:
                appended = True
                self._post(self._append_placed, token, index)
        return appended

    def _drain_wake(self, fd: int, event: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass

    def _post_applied(self, index: int, term: int, payload: bytes | None) -> None:
        self._post(self._applied, index, term, payload)
        self._since_entries += 1
        self._since_bytes += 0 if payload is None else len(payload)
        if (
            self._snapshot_provider is not None
            and not self._snapshot_pending
            and (
                self._since_entries >= self._snapshot_every_entries
                or self._since_bytes >= self._snapshot_every_bytes
            )
        ):
            self._snapshot_pending = True
            self._post(self._snapshot_due)

    def _installed(self, snapshot: SnapshotId, data: bytes) -> None:
        """A leader's snapshot was installed (raft.py): the state machine must load it."""
        self._since_entries = self._since_bytes = 0
        self._snapshot_index = snapshot.index
        self._post(self._snapshot_loaded, snapshot.index, snapshot.term, data)

    def _compact(
        self,
        node: RaftNode,
        journal: DurableJournal,
        snapshot: SnapshotId | None,
        size: int,
        took: float,
    ) -> None:
        """A snapshot the loop had written is durable: drop what it makes redundant."""
        self._snapshot_pending = False
        if snapshot is None:
            # Not taken, or not written: try again after as many entries, not at the next.
            self._since_entries = self._since_bytes = 0
            return
        assert self._store is not None
        started = time.perf_counter()
        retain(self._store, journal, self._snapshots_kept, self._tag)
        if snapshot.index > self._snapshot_index:
            self._snapshot_index = snapshot.index
            self._since_entries = max(0, node.raftLastApplied - snapshot.index)
            self._since_bytes = 0
        logger.info(
            "%ssnapshot %d: %d bytes written in %.0f ms; log now %d..%d (compacted in %.0f ms)",
            self._tag,
            snapshot.index,
            size,
            took * 1000,
            journal.first_index,
            journal.last_index,
            (time.perf_counter() - started) * 1000,
        )

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed: nobody is left to tell; stop.
            self._stopping = True

    def _log_leader(self, leader: int | None, term: int) -> None:
        if leader == self.node_id:
            logger.info("%sbecame the active leader of term %d", self._tag, term)
        elif leader is None:
            logger.info("%sno leader known in term %d", self._tag, term)
        else:
            logger.info("%svoter %d is the leader of term %d", self._tag, leader, term)

    def _make_status(self, state: RaftState, leader: int | None, now: float) -> QuorumStatus:
        voters = [VoterStatus(self.node_id, state.last_index, 0, True, 0)]
        for peer in state.peers:
            match = peer.match_index if leader == self.node_id else None
            voters.append(
                VoterStatus(
                    node_id=peer.node_id,
                    match_index=match,
                    lag=None if match is None else max(0, state.last_index - match),
                    connected=peer.connected,
                    last_heard_ms=None
                    if peer.last_heard is None
                    else int((now - peer.last_heard) * 1000),
                )
            )
        voters.sort(key=lambda v: v.node_id)
        return QuorumStatus(
            node_id=self.node_id,
            leader_id=leader,
            term=state.term,
            is_leader=leader == self.node_id,
            commit_index=state.commit_index,
            applied_index=state.applied_index,
            last_index=state.last_index,
            voters=tuple(voters),
            first_index=state.first_index,
            snapshot_index=self._snapshot_index,
        )

    def _wake(self) -> None:
        if self._closed:
            return  # the pipe's descriptors may belong to something else by now
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # full: the thread is awake anyway; closed: it is gone

    def _close_pipe(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- loop side of the thread's reports ------------------------------------------------------

    def _applied(self, index: int, term: int, payload: bytes | None) -> None:
        self._applied_index = index
        if payload is not None and index > self._replay_floor and self._failure is None:
            # Below the floor the caller's state is already past the entry: not delivered.
            self._delivered = (index, term)
            try:
                self._on_commit(index, payload)
            except Exception as e:
                # The caller's state machine missed an entry: carrying on would diverge.
                logger.critical(
                    "%son_commit failed for entry %d; stopping the quorum member",
                    self._tag,
                    index,
                    exc_info=True,
                )
                self._failed(e)
                return
        pending = self._by_index.pop(index, None)
        if pending is not None and not pending.future.done():
            if term == pending.term:
                pending.future.set_result(index)
            else:
                pending.future.set_exception(
                    EntryDiscarded(f"entry {index} of term {pending.term} replaced (term {term})")
                )

    def _snapshot_loaded(self, index: int, term: int, data: bytes) -> None:
        self._applied_index = index
        for covered in sorted(i for i in self._by_index if i <= index):
            pending = self._by_index.pop(covered)
            if not pending.future.done():
                pending.future.set_exception(
                    CommitTimeout(f"entry {covered} is inside snapshot {index}: outcome unknown")
                )
        if self._failure is not None or index <= self._replay_floor:
            return
        if self._on_snapshot is None:
            self._failed(QuorumError(f"snapshot {index} arrived, but nothing loads it"))
            return
        self._delivered = (index, term)
        try:
            self._on_snapshot(index, data)
        except Exception as e:
            logger.critical(
                "%son_snapshot failed for snapshot %d; stopping the quorum member",
                self._tag,
                index,
                exc_info=True,
            )
            self._failed(e)

    def _snapshot_due(self) -> None:
        """The thread asks for a snapshot: take it now, write it on a worker thread."""
        provider = self._snapshot_provider
        if (
            provider is None
            or self._failure is not None
            or self._stopping
            or self._delivered[0] <= self._snapshot_index  # nothing new since the last one
        ):
            self._snapshot_written(None, 0, 0.0)
            return
        try:
            index, data = provider()
        except Exception:
            logger.exception("%staking a snapshot failed", self._tag)
            self._snapshot_written(None, 0, 0.0)
            return
        if index != self._delivered[0] or index < 1:
            logger.error(
                "%sthe state machine's snapshot is at index %d, not at the last entry "
                "delivered (%d): not written",
                self._tag,
                index,
                self._delivered[0],
            )
            self._snapshot_written(None, 0, 0.0)
            return
        assert self._loop is not None
        task = self._loop.create_task(self._write_snapshot(index, self._delivered[1], bytes(data)))
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)

    async def _write_snapshot(self, index: int, term: int, data: bytes) -> None:
        assert self._store is not None
        started = time.perf_counter()
        try:
            snapshot = await asyncio.to_thread(self._store.write, index, term, data)
        except JournalError as e:
            logger.error("%s%s", self._tag, e)
            self._snapshot_written(None, 0, 0.0)
            return
        self._snapshot_written(snapshot, len(data), time.perf_counter() - started)

    def _snapshot_written(self, snapshot: SnapshotId | None, size: int, took: float) -> None:
        self._written.append((snapshot, size, took))
        self._wake()

    def _append_placed(self, token: int, index: int) -> None:
        pending = self._appends.get(token)
        if pending is not None:
            pending.index = index
            self._by_index[index] = pending

    def _append_refused(self, token: int, leader_id: int | None, term: int) -> None:
        pending = self._appends.get(token)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(NotLeader(leader_id, term))

    def _leader_changed(self, leader_id: int | None, term: int) -> None:
        self._leader_id = leader_id
        self._term = term
        if self._on_leader_change is not None and self._failure is None:
            self._on_leader_change(leader_id, term)

    def _failed(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._stopping = True
        self._wake()
        self._leader_id = None
        self._fail_pending(QuorumStopped(f"the quorum member failed: {error}"))

    def _fail_pending(self, error: QuorumError) -> None:
        for pending in list(self._appends.values()):
            if not pending.future.done():
                pending.future.set_exception(error)
        self._by_index.clear()


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _set_exception(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
