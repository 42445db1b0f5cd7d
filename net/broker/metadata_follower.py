"""A broker-only node following the metadata log from the active controller (Kafka's
KRaft broker: its RaftClient as an observer, feeding the MetadataLoader).

One task, one request at a time on a controller connection of its own (a parked long poll
must not hold up heartbeats): Fetch `__cluster_metadata`-0 from the next offset the image
needs, with the broker's id in ReplicaState and `max_wait_ms` for the long poll; apply the
batches through the node's MetadataPublisher, all of one response as one publication. The
controller is found like every controller request (ControllerClient: the one that answers
DescribeQuorum as the active controller), so after a failover fetching simply continues from the
same offset at the new active controller.

Offsets are the contract: each batch must start exactly at the next offset and hold as many
records as its header says. Anything else (a gap, a batch seen before, a corrupt batch) is
applied not at all, and the follower starts over from a snapshot: it fetches from offset -1,
which no controller serves, so the answer is a snapshot id. A snapshot (the controller's
image as records, downloaded with FetchSnapshot in chunks) replaces the image in place and
is published as one change; fetching resumes at its end offset. A fresh broker starts at
offset 0 and gets records or, if the controller no longer holds them, a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kraft.controller.client import ControllerClient
from kraft.log.batch import validate_batch
from kraft.log.errors import CorruptRecordError, InvalidRecordError, UnsupportedMagicError
from kraft.log.records import decode_records
from kraft.metadata.publisher import MetadataPublisher
from kraft.metadata.record_log import METADATA_TOPIC, METADATA_TOPIC_ID
from kraft.metadata.snapshot import decode_snapshot, image_from_records, replace_image
from kraft.net.protocol import (
    ErrorCode,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    Message,
    ProtocolError,
    decode_metadata_record,
)

logger = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 500
FETCH_MAX_BYTES = 8 << 20
SNAPSHOT_CHUNK_BYTES = 1 << 20
# A request may take its long poll plus this before the controller counts as hung.
REQUEST_TIMEOUT_S = 5.0
ERROR_BACKOFF_S = 0.1
# The fetch offset that asks for a snapshot: below every offset, served by no controller.
RESYNC_OFFSET = -1


class MetadataDiverged(Exception):
    """A fetched batch does not continue the image at its next offset."""


class MetadataFollower:
    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        client: ControllerClient,
        publisher: MetadataPublisher,
        broker_epoch: Callable[[], int] = lambda: -1,
        max_wait_ms: int = FETCH_MAX_WAIT_MS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.client = client
        self.publisher = publisher
        self.broker_epoch = broker_epoch
        self.max_wait_ms = max_wait_ms
        self.request_timeout_s = request_timeout_s
        self.resync = False  # the next fetch asks for a snapshot
        self.leader_id = -1
        self.leader_epoch = -1
        self.snapshots_loaded = 0
        self.divergences = 0
        self.tag = f"[broker {node_id}] "
        self._task: asyncio.Task[None] | None = None

    @property
    def applied_offset(self) -> int:
        """The offset of the last record applied (-1: none): what heartbeats report."""
        return self.publisher.image.last_offset

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.client.close()

    async def run(self) -> None:
        while True:
            try:
                await self.fetch_once()
            except TimeoutError:
                logger.warning(
                    "%smetadata fetch got no answer in %.1f s: trying another controller",
                    self.tag,
                    self.max_wait_ms / 1000 + self.request_timeout_s,
                )
                self.client.skip()
            except (OSError, ConnectionError, ProtocolError) as e:
                logger.warning("%smetadata fetch failed: %s", self.tag, e)
                await asyncio.sleep(ERROR_BACKOFF_S)
            except Exception:
                # A bug of ours: a broker that stopped following would serve stale metadata
                # forever, so log it and go on.
                logger.exception("%smetadata fetch failed", self.tag)
                await asyncio.sleep(ERROR_BACKOFF_S)

    # ------------------------------------------------------------------ fetch

    async def fetch_once(self) -> None:
        """One Fetch and what it brings: records applied, a snapshot loaded, or nothing new."""
        offset = RESYNC_OFFSET if self.resync else self.applied_offset + 1
        response = await self._send(self._fetch_request(offset), self.max_wait_ms / 1000)
        assert isinstance(response, FetchResponse)
        data = self._partition_of(response)
        if data is None:
            await asyncio.sleep(ERROR_BACKOFF_S)
            return
        self._note_leader(data.current_leader.leader_id, data.current_leader.leader_epoch)
        if data.snapshot_id.end_offset >= 0:
            if await self._load_snapshot(data.snapshot_id.end_offset, data.snapshot_id.epoch):
                self.resync = False
            return
        if data.error_code:
            logger.warning("%smetadata fetch: error %d", self.tag, data.error_code)
            await asyncio.sleep(ERROR_BACKOFF_S)
            return
        if self.resync or not data.records:
            return
        try:
            first, records = self._decode(bytes(data.records), offset)
        except MetadataDiverged as e:
            self.divergences += 1
            self.resync = True
            logger.error("%smetadata diverged: %s; starting over from a snapshot", self.tag, e)
            return
        if records:
            self.publisher.publish(first, records)

    def _fetch_request(self, offset: int) -> FetchRequest:
        # v15+ (the controllers' version): the broker's id and epoch travel in ReplicaState.
        return FetchRequest(
            cluster_id=self.cluster_id,
            replica_state=FetchRequest.ReplicaState(
                replica_id=self.node_id, replica_epoch=self.broker_epoch()
            ),
            max_wait_ms=self.max_wait_ms,
            min_bytes=1,
            max_bytes=FETCH_MAX_BYTES,
            topics=[
                FetchRequest.FetchTopic(
                    topic=METADATA_TOPIC,
                    topic_id=METADATA_TOPIC_ID,
                    partitions=[
                        FetchRequest.FetchPartition(
                            partition=0,
                            current_leader_epoch=self.leader_epoch,
                            fetch_offset=offset,
                            partition_max_bytes=FETCH_MAX_BYTES,
                        )
                    ],
                )
            ],
        )

    async def _send(self, request: Message, wait_s: float) -> Message:
        # A long poll may take its wait before the controller counts as hung.
        limit = wait_s + self.request_timeout_s
        return await self.client.send(request, timeout_s=limit, attempt_timeout_s=limit)

    def _partition_of(self, response: FetchResponse) -> FetchResponse.PartitionData | None:
        if response.error_code:
            logger.warning("%smetadata fetch refused: error %d", self.tag, response.error_code)
            return None
        for topic in response.responses:
            for data in topic.partitions:
                if data.partition_index == 0:
                    return data
        logger.warning("%smetadata fetch answer without partition 0", self.tag)
        return None

    def _note_leader(self, leader_id: int, epoch: int) -> None:
        if leader_id != self.leader_id or epoch != self.leader_epoch:
            logger.info(
                "%sfollowing the metadata from controller %d (epoch %d) at offset %d",
                self.tag,
                leader_id,
                epoch,
                self.applied_offset + 1,
            )
            self.leader_id, self.leader_epoch = leader_id, epoch

    def _decode(self, data: bytes, offset: int) -> tuple[int, list[Message]]:
        """The records of `data` (whole batches, the first at `offset`), checked to continue
        the log exactly; a partial batch at the end (cut by max_bytes) is left for later."""
        records: list[Message] = []
        expected = offset
        pos = 0
        while pos < len(data):
            try:
                header = validate_batch(data, pos, len(data))
            except CorruptRecordError:
                if records:
                    break  # a trailing partial batch: fetched again next time
                raise MetadataDiverged(f"no whole batch at offset {expected}") from None
            except (UnsupportedMagicError, InvalidRecordError) as e:
                raise MetadataDiverged(str(e)) from None
            if header.base_offset != expected:
                raise MetadataDiverged(
                    f"a batch at offset {header.base_offset} where {expected} was next"
                )
            batch = decode_records(data[pos : pos + header.size])
            if len(batch) != header.last_offset_delta + 1:
                raise MetadataDiverged(
                    f"batch at {expected} holds {len(batch)} records, its header says "
                    f"{header.last_offset_delta + 1}"
                )
            records += [decode_metadata_record(r.value) for r in batch if r.value is not None]
            expected = header.next_offset
            pos += header.size
        return offset, records

    # --------------------------------------------------------------- snapshot

    async def _load_snapshot(self, end_offset: int, epoch: int) -> bool:
        """Download snapshot (end_offset, epoch) and make it the image; False if it has gone
        (e.g. another controller is active now): the next fetch gets a new snapshot id."""
        data = bytearray()
        while True:
            request = FetchSnapshotRequest(
                cluster_id=self.cluster_id,
                replica_id=self.node_id,
                max_bytes=SNAPSHOT_CHUNK_BYTES,
                topics=[
                    FetchSnapshotRequest.TopicSnapshot(
                        name=METADATA_TOPIC,
                        partitions=[
                            FetchSnapshotRequest.PartitionSnapshot(
                                partition=0,
                                current_leader_epoch=max(self.leader_epoch, 0),
                                snapshot_id=FetchSnapshotRequest.SnapshotId(
                                    end_offset=end_offset, epoch=epoch
                                ),
                                position=len(data),
                            )
                        ],
                    )
                ],
            )
            response = await self._send(request, 0)
            assert isinstance(response, FetchSnapshotResponse)
            part = next((p for t in response.topics for p in t.partitions), None)
            code = response.error_code or (part.error_code if part else ErrorCode.INVALID_REQUEST)
            if code or part is None or part.position != len(data):
                logger.warning(
                    "%ssnapshot %d (epoch %d) not fetched: error %d",
                    self.tag,
                    end_offset,
                    epoch,
                    code,
                )
                await asyncio.sleep(ERROR_BACKOFF_S)
                return False
            data += part.unaligned_records
            if len(data) >= part.size:
                break
            if not part.unaligned_records:
                return False
        try:
            records = decode_snapshot(data)
        except (ValueError, ProtocolError, CorruptRecordError) as e:
            logger.error("%ssnapshot %d unreadable: %s", self.tag, end_offset, e)
            return False
        replace_image(self.publisher.image, image_from_records(records, end_offset - 1))
        self.snapshots_loaded += 1
        logger.info(
            "%sloaded the metadata snapshot at offset %d (%d records, %d bytes)",
            self.tag,
            end_offset,
            len(records),
            len(data),
        )
        # No records to apply: the publication tells the listeners the image changed.
        self.publisher.publish(end_offset, [])
        return True
