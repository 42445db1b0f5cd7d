"""Metadata fetch on the CONTROLLER listener: how brokers follow the metadata log.

As in KRaft, a broker sends Fetch for `__cluster_metadata` partition 0 (topic id
`METADATA_TOPIC_ID` from v13) to the active controller with the next metadata offset it
needs; the controller answers with the committed entries from there, as record batches, or
parks the request until a commit arrives or `max_wait_ms` passes (long poll). Offsets are
metadata offsets: records counted from 0 over the whole log, what brokers report in
heartbeats. Every batch is one committed entry (one atomic batch of records), its base offset
rewritten to the offset of its first record, so a broker applies whole batches only.

Every controller keeps the last committed entries in a bounded window (`CommittedEntries`),
so a newly active controller can serve at once. A fetch offset the window cannot serve
(older than the window, inside an entry, past the end: any of them means the broker must
start over) is answered with a snapshot id instead of records: the snapshot is the current
image as records (`image_to_records`) at its offset, kept while brokers may still download it
with FetchSnapshot (api key 59) in chunks; its end offset is the offset after its last
record, where the broker then resumes fetching.

A controller that is not active answers NOT_CONTROLLER at the top level (the broker's
ControllerClient looks for the active controller) and, per partition, Kafka's Raft answer
NOT_LEADER_OR_FOLLOWER with the leader it knows of.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from kraft.metadata.image import MetadataImage
from kraft.metadata.record_log import METADATA_TOPIC, METADATA_TOPIC_ID
from kraft.metadata.snapshot import encode_snapshot, image_to_records
from kraft.net.protocol import (
    ErrorCode,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    Message,
    RequestHeader,
)

logger = logging.getLogger(__name__)

# Fetch v13+ names topics by id.
FIRST_TOPIC_ID_VERSION = 13
MAX_ENTRIES = 20_000
MAX_WINDOW_BYTES = 64 << 20
MAX_WAIT_MS = 30_000
SNAPSHOT_CHUNK_BYTES = 1 << 20
# Snapshots kept for downloads in progress: the newest few.
KEPT_SNAPSHOTS = 2
_BASE_OFFSET = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class Entry:
    first_offset: int
    count: int
    batch: bytes  # one RecordBatch v2, base offset = first_offset

    @property
    def next_offset(self) -> int:
        return self.first_offset + self.count


class CommittedEntries:
    """The last committed metadata entries by offset, bounded in count and bytes (no I/O).

    Entries are contiguous: each starts where the previous one ended. An entry that does not
    (the image jumped, e.g. to a Raft snapshot) starts the window over."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_WINDOW_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: collections.deque[Entry] = collections.deque()
        self._by_offset: dict[int, Entry] = {}
        self._bytes = 0
        self.start_offset = 0  # the first offset served
        self.end_offset = 0  # the offset after the last entry

    def append(self, first_offset: int, entry: bytes | bytearray, count: int) -> None:
        if count <= 0:
            return
        if first_offset != self.end_offset:
            self.reset(first_offset)
        batch = bytearray(entry)
        # The CRC starts after the base offset: rewriting it keeps the batch valid.
        _BASE_OFFSET.pack_into(batch, 0, first_offset)
        item = Entry(first_offset, count, bytes(batch))
        self._entries.append(item)
        self._by_offset[first_offset] = item
        self._bytes += len(item.batch)
        self.end_offset = item.next_offset
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            old = self._entries.popleft()
            del self._by_offset[old.first_offset]
            self._bytes -= len(old.batch)
            self.start_offset = old.next_offset

    def reset(self, offset: int) -> None:
        """Empty, serving from `offset` on."""
        self._entries.clear()
        self._by_offset.clear()
        self._bytes = 0
        self.start_offset = self.end_offset = offset

    def serves(self, offset: int) -> bool:
        """Whether a fetch from `offset` can be answered from here (now or by waiting)."""
        return offset == self.end_offset or offset in self._by_offset

    def read(self, offset: int, max_bytes: int) -> list[bytes]:
        """Whole entries from `offset` (an entry boundary), at least one if there is one, then
        more while they fit in `max_bytes`."""
        out: list[bytes] = []
        size = 0
        entry = self._by_offset.get(offset)
        while entry is not None:
            if out and size + len(entry.batch) > max_bytes:
                break
            out.append(entry.batch)
            size += len(entry.batch)
            entry = self._by_offset.get(entry.next_offset)
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    end_offset: int  # the offset after its last record: where fetching resumes
    epoch: int
    data: bytes


class MetadataFetch:
    """The Fetch (1) and FetchSnapshot (59) handlers of a controller."""

    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        image: MetadataImage,
        is_active: Callable[[], bool],
        leader: Callable[[], tuple[int | None, int]],
        entries: CommittedEntries | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.image = image
        self.is_active = is_active
        self.leader = leader  # (leader id or None, term)
        self.entries = entries or CommittedEntries()
        self.clock = clock
        self.snapshots: collections.deque[Snapshot] = collections.deque(maxlen=KEPT_SNAPSHOTS)
        self._changed = asyncio.Event()
        self.tag = f"[controller {node_id}] "

    # ------------------------------------------------------------ feeding

    def on_commit(self, first_offset: int, entry: bytes, count: int) -> None:
        """A committed entry of `count` records, the first at `first_offset`, was applied."""
        self.entries.append(first_offset, entry, count)
        self._wake()

    def on_leader_change(self) -> None:
        """Parked fetches answer now: a controller that lost leadership sends them away."""
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _window(self) -> CommittedEntries:
        """The window, started over at the image if the image moved without it (a loaded
        snapshot): entries must end where the image stands."""
        end = self.image.last_offset + 1
        if self.entries.end_offset != end:
            self.entries.reset(end)
        return self.entries

    # -------------------------------------------------------------- Fetch

    async def fetch(self, header: RequestHeader, request: FetchRequest) -> Message:
        if request.cluster_id and request.cluster_id != self.cluster_id:
            return FetchResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        if len(request.topics) != 1 or len(request.topics[0].partitions) != 1:
            return FetchResponse(error_code=ErrorCode.INVALID_REQUEST)
        topic = request.topics[0]
        wanted = topic.partitions[0]
        by_id = header.api_version >= FIRST_TOPIC_ID_VERSION
        if wanted.partition != 0 or (
            topic.topic_id != METADATA_TOPIC_ID if by_id else topic.topic != METADATA_TOPIC
        ):
            return self._fetch_answer(
                topic,
                FetchResponse.PartitionData(
                    partition_index=wanted.partition,
                    error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                ),
            )
        offset = wanted.fetch_offset
        max_bytes = max(1, min(wanted.partition_max_bytes or request.max_bytes, request.max_bytes))
        deadline = self.clock() + min(max(request.max_wait_ms, 0), MAX_WAIT_MS) / 1000
        while True:
            changed = self._changed
            if not self.is_active():
                return self._not_leader(topic)
            window = self._window()
            data = self._partition(offset, max_bytes, window)
            remaining = deadline - self.clock()
            if data.records or data.snapshot_id.end_offset >= 0 or remaining <= 0:
                return self._fetch_answer(topic, data)
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass

    def _partition(
        self, offset: int, max_bytes: int, window: CommittedEntries
    ) -> FetchResponse.PartitionData:
        _, term = self.leader()
        data = FetchResponse.PartitionData(
            partition_index=0,
            high_watermark=window.end_offset,
            log_start_offset=window.start_offset,
            current_leader=FetchResponse.LeaderIdAndEpoch(
                leader_id=self.node_id, leader_epoch=term
            ),
        )
        if window.serves(offset):
            batches = window.read(offset, max_bytes)
            data.records = b"".join(batches) if batches else None
            return data
        snapshot = self._snapshot_for(window, term)
        data.snapshot_id = FetchResponse.SnapshotId(
            end_offset=snapshot.end_offset, epoch=snapshot.epoch
        )
        logger.info(
            "%sfetch from offset %d outside [%d, %d]: snapshot at %d",
            self.tag,
            offset,
            window.start_offset,
            window.end_offset,
            snapshot.end_offset,
        )
        return data

    def _snapshot_for(self, window: CommittedEntries, term: int) -> Snapshot:
        """A kept snapshot the window continues from, or a new one of the current image."""
        for snapshot in reversed(self.snapshots):
            if window.start_offset <= snapshot.end_offset <= window.end_offset:
                return snapshot
        snapshot = Snapshot(
            self.image.last_offset + 1, term, encode_snapshot(image_to_records(self.image))
        )
        self.snapshots.append(snapshot)
        return snapshot

    def _fetch_answer(
        self, topic: FetchRequest.FetchTopic, data: FetchResponse.PartitionData
    ) -> FetchResponse:
        return FetchResponse(
            responses=[
                FetchResponse.FetchableTopicResponse(
                    topic=topic.topic, topic_id=topic.topic_id, partitions=[data]
                )
            ]
        )

    def _not_leader(self, topic: FetchRequest.FetchTopic) -> FetchResponse:
        leader_id, term = self.leader()
        response = self._fetch_answer(
            topic,
            FetchResponse.PartitionData(
                partition_index=0,
                error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER,
                current_leader=FetchResponse.LeaderIdAndEpoch(
                    leader_id=-1 if leader_id is None else leader_id, leader_epoch=term
                ),
            ),
        )
        response.error_code = ErrorCode.NOT_CONTROLLER
        return response

    # ------------------------------------------------------- FetchSnapshot

    async def fetch_snapshot(self, header: RequestHeader, request: FetchSnapshotRequest) -> Message:
        if request.cluster_id and request.cluster_id != self.cluster_id:
            return FetchSnapshotResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        if len(request.topics) != 1 or len(request.topics[0].partitions) != 1:
            return FetchSnapshotResponse(error_code=ErrorCode.INVALID_REQUEST)
        topic = request.topics[0]
        wanted = topic.partitions[0]
        leader_id, term = self.leader()
        part = FetchSnapshotResponse.PartitionSnapshot(
            index=wanted.partition,
            snapshot_id=FetchSnapshotResponse.SnapshotId(
                end_offset=wanted.snapshot_id.end_offset, epoch=wanted.snapshot_id.epoch
            ),
            current_leader=FetchSnapshotResponse.LeaderIdAndEpoch(
                leader_id=-1 if leader_id is None else leader_id, leader_epoch=term
            ),
        )
        response = FetchSnapshotResponse(
            topics=[FetchSnapshotResponse.TopicSnapshot(name=topic.name, partitions=[part])]
        )
        if topic.name != METADATA_TOPIC or wanted.partition != 0:
            part.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            return response
        if not self.is_active():
            part.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
            response.error_code = ErrorCode.NOT_CONTROLLER
            return response
        snapshot = next(
            (
                s
                for s in self.snapshots
                if s.end_offset == wanted.snapshot_id.end_offset
                and s.epoch == wanted.snapshot_id.epoch
            ),
            None,
        )
        if snapshot is None:
            part.error_code = ErrorCode.SNAPSHOT_NOT_FOUND
            return response
        if not 0 <= wanted.position <= len(snapshot.data):
            part.error_code = ErrorCode.POSITION_OUT_OF_RANGE
            return response
        chunk = max(1, min(request.max_bytes, SNAPSHOT_CHUNK_BYTES))
        part.size = len(snapshot.data)
        part.position = wanted.position
        part.unaligned_records = snapshot.data[wanted.position : wanted.position + chunk]
        return response
