"""Snapshot transfer between Raft voters: the leader sends its snapshot in chunks to a follower
whose next index is at or before the log start; the follower reassembles, checks and installs
it (Kafka's FetchSnapshot, carried on Raft's own messages).

Wire format, on top of pysyncobj's messages (codec-encoded like everything else)::

    append_entries + SNAPSHOT_CHUNK: (index, term, size, crc32 of the data, offset, bytes)
    next_node_idx  + SNAPSHOT_ACK:   (index, term, bytes received, in order)

The leader keeps up to `_WINDOW` chunks unacknowledged; "in order" False asks it to resend
from "bytes received" (a gap: the follower restarted, or the data failed its CRC). Chunks the
follower already holds are skipped, and its acknowledgement moves the leader past them. A
transfer unacknowledged for the fetch timeout is sent again from the last acknowledged byte;
with nothing due, an empty chunk every heartbeat keeps the follower's election timer reset.

`SnapshotTransfer` holds both sides' state and decisions; it touches pysyncobj only through
the functions `RaftNode` (raft.py, the one place that knows pysyncobj's internals) gives it.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.node import Node

from kraft.quorum.journal import DurableJournal
from kraft.quorum.snapshots import SnapshotId, SnapshotStore, install
from kraft.quorum.transport import ProtocolError

logger = logging.getLogger(__name__)

SNAPSHOT_CHUNK = "snapshot_chunk"
SNAPSHOT_ACK = "snapshot_ack"
SNAPSHOT_CHUNK_BYTES = 1 << 20
MAX_SNAPSHOT_BYTES = 1 << 32
_WINDOW = 4

Send = Callable[[Node, dict[str, Any]], None]


class SnapshotsOff(RuntimeError):
    """A voter sent a snapshot to a node whose snapshots are off (a broken invariant)."""


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


def parse_chunk(value: Any) -> tuple[SnapshotId, int, int, int, bytes]:
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


def parse_ack(value: Any) -> tuple[SnapshotId, int, bool]:
    """(snapshot, bytes received, in order) of a SNAPSHOT_ACK value, or ProtocolError."""
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


class SnapshotTransfer:
    """Both sides of snapshot transfer for one voter.

    Given by `RaftNode`: `send(node, message)` (its transport), `is_connected(node)`,
    `position()` (current term and commit index, stamped on every chunk) and
    `installed(snapshot)` (move pysyncobj's applied and commit indexes to an installed
    snapshot)."""

    def __init__(
        self,
        journal: DurableJournal,
        *,
        send: Send,
        is_connected: Callable[[Node], bool],
        position: Callable[[], tuple[int, int]],
        installed: Callable[[SnapshotId], None],
        heartbeat: float,
        stall_timeout: float,
        chunk_bytes: int,
        tag: str = "",
    ) -> None:
        self._journal = journal
        self._send = send
        self._is_connected = is_connected
        self._position = position
        self._installed = installed
        self._heartbeat = heartbeat
        self._stall_timeout = stall_timeout
        self.chunk_bytes = chunk_bytes
        self._tag = tag
        # Off until `attach`.
        self._store: SnapshotStore | None = None
        self._on_snapshot: Callable[[SnapshotId, bytes], None] | None = None
        self._outgoing: dict[Node, _Outgoing] = {}
        self._incoming: _Incoming | None = None
        self._sendable: tuple[SnapshotId, bytes, int] | None = None
        self._unservable_logged = 0.0

    def attach(
        self, store: SnapshotStore, on_snapshot: Callable[[SnapshotId, bytes], None]
    ) -> None:
        self._store = store
        self._on_snapshot = on_snapshot

    # ------------------------------------------------------------------ leader side

    def forget(self, node: Node) -> None:
        """`node` is disconnected or caught up past the log start: no transfer to it."""
        self._outgoing.pop(node, None)

    def _snapshot_to_send(self) -> tuple[SnapshotId, bytes, int] | None:
        """The newest valid snapshot the log continues from (cached while it is)."""
        if self._store is None:
            return None
        for snapshot in reversed(self._store.list()):
            if snapshot.index < self._journal.first_index:
                break
            if self._sendable is not None and self._sendable[0] == snapshot:
                return self._sendable
            data = self._store.read(snapshot)
            if data is not None:
                self._sendable = (snapshot, data, zlib.crc32(data))
                return self._sendable
        return None

    def send_snapshot(self, node: Node) -> None:
        """Send `node` (behind the log start) what is due of the snapshot."""
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
        step = self.chunk_bytes
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
        term, commit_index = self._position()
        self._send(
            node,
            {
                "type": "append_entries",
                "term": term,
                "commit_index": commit_index,
                SNAPSHOT_CHUNK: (*chunk, piece),
            },
        )
        outgoing.last_sent = time.monotonic()
        return self._is_connected(node)

    def on_ack(
        self, node: Node, snapshot: SnapshotId, received: int, in_order: bool, behind: bool
    ) -> None:
        """The follower's acknowledgement; `behind`: it is still at or before the log start
        (so the transfer goes on at once)."""
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
        if self._is_connected(node) and behind:
            self.send_snapshot(node)

    # ---------------------------------------------------------------- follower side

    def receive_chunk(
        self,
        node: Node,
        last_applied: int,
        snapshot: SnapshotId,
        size: int,
        crc: int,
        offset: int,
        data: bytes,
    ) -> None:
        if snapshot.index <= last_applied:
            # Already past it (a late chunk of a finished transfer): say where the log is.
            self._incoming = None
            self._send_next_index(node, self._journal.last_index + 1, reset=True)
            return
        if self._store is None or self._on_snapshot is None:
            raise SnapshotsOff(f"voter {node.id} sent a snapshot; snapshots are off here")
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
        self._install(node, snapshot, payload)

    def _install(self, node: Node, snapshot: SnapshotId, data: bytes) -> None:
        assert self._store is not None and self._on_snapshot is not None
        started = time.monotonic()
        kept_suffix = install(self._store, self._journal, snapshot, data)
        # The log now starts at the snapshot. Commit index back to it too: entries kept after
        # it are committed once the leader says so (after it has matched them).
        self._installed(snapshot)
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
        self._send(node, message)
