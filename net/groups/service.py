"""The group coordinator on a broker: the pure `GroupCoordinator` wired to the event loop,
to the partitions of `__consumer_offsets` this broker leads, and to the controller.

- Leadership: after every metadata change the broker calls `on_metadata_change`; a newly led
  offsets partition is loaded (read from its log start to its end, in chunks that yield to the
  loop), a partition no longer led is unloaded.
- Writes: the coordinator's records are appended through the replica manager, in one batch
  per write, and reported once the high watermark passes them (acks=all, a delayed produce
  bounded by `offsets.commit.timeout.ms`), in append order.
- The topic: created on first FindCoordinator through the controller like Kafka's automatic
  creation of internal topics (`offsets.topic.num.partitions`, replication factor
  min(`offsets.topic.replication.factor`, live brokers), compacted).

Its seams are narrow, and declared here (the broker implements them; nothing here imports
broker code): `CoordinatorPartitions` — the offsets partitions this broker leads and an append
to one (Kafka's CoordinatorPartitionWriter over the replica manager); the metadata image; the
node's config; and `CreateTopics`, the way to the active controller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol

from kraft.config import NodeConfig
from kraft.controller.controller import TopicSpec
from kraft.log.batch import parse_header
from kraft.log.errors import LogError
from kraft.log.partition_log import PartitionLog, wall_clock_ms
from kraft.log.records import Record, build_batch, decode_records
from kraft.metadata.image import MetadataImage
from kraft.net.groups.common import ConsumerGroupConfig
from kraft.net.groups.consumer_coordinator import ConsumerGroupCoordinator
from kraft.net.groups.consumer_records import TopicMetadata
from kraft.net.groups.coordinator import (
    OFFSETS_TOPIC,
    GroupConfig,
    GroupCoordinator,
    PartitionStatus,
    Records,
    partition_for,
)
from kraft.net.groups.records import RecordFormatError
from kraft.net.groups.timer import LoopTimer
from kraft.net.protocol import ErrorCode

logger = logging.getLogger(__name__)

LOAD_CHUNK_BYTES = 1 << 20
DoneFn = Callable[[int], None]
# Topics to create through the active controller: (name, error code) per topic.
CreateTopics = Callable[[list[TopicSpec]], Awaitable[list[tuple[str, int]]]]


class OffsetsPartition(Protocol):
    """A partition of `__consumer_offsets` hosted here, as the coordinator reads it."""

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader_epoch(self) -> int: ...

    @property
    def log(self) -> PartitionLog: ...


class CoordinatorPartitions(Protocol):
    """The replica manager as the group coordinator sees it."""

    def led_partitions(self, topic: str) -> Mapping[int, OffsetsPartition]:
        """The partitions of `topic` this broker leads, by index."""
        ...

    def append(
        self, topic_partition: tuple[str, int], batch: bytes, timeout_ms: int, done: DoneFn
    ) -> None:
        """Append one batch as the leader with acks=all: `done(error code)` once the high
        watermark passed it, leadership was lost, or `timeout_ms` passed."""
        ...


class GroupCoordinatorService:
    def __init__(
        self,
        config: NodeConfig,
        image: Callable[[], MetadataImage],
        partitions: CoordinatorPartitions,
        create_topics: CreateTopics,
        *,
        tag: str = "",
    ) -> None:
        cfg = config
        self.config = config
        self.image = image
        self.replicas = partitions
        self.create_topics = create_topics
        self.tag = tag
        self.timer = LoopTimer(self.tag)
        self.commit_timeout_ms = cfg.offsets_commit_timeout_ms
        self.coordinator = GroupCoordinator(
            GroupConfig(
                initial_rebalance_delay_ms=cfg.group_initial_rebalance_delay_ms,
                min_session_timeout_ms=cfg.group_min_session_timeout_ms,
                max_session_timeout_ms=cfg.group_max_session_timeout_ms,
                max_size=cfg.group_max_size,
                offset_metadata_max_bytes=cfg.offset_metadata_max_bytes,
                offsets_retention_ms=cfg.offsets_retention_minutes * 60_000,
                offsets_retention_check_interval_ms=cfg.offsets_retention_check_interval_ms,
            ),
            wall_clock_ms,
            self.timer,
            self._write,
            self.num_partitions,
            tag=self.tag,
        )
        # KIP-848 groups beside the classic ones; loading and unloading go through it.
        self.consumer = ConsumerGroupCoordinator(
            self.coordinator,
            ConsumerGroupConfig(
                session_timeout_ms=cfg.group_consumer_session_timeout_ms,
                heartbeat_interval_ms=cfg.group_consumer_heartbeat_interval_ms,
                max_size=cfg.group_consumer_max_size,
                assignors=cfg.group_consumer_assignors,
                offset_metadata_max_bytes=cfg.offset_metadata_max_bytes,
            ),
            self._topics,
            tag=self.tag,
        )
        self._loads: dict[int, asyncio.Task[None]] = {}
        # The leader epoch each loaded partition was loaded under.
        self._loaded_epochs: dict[int, int] = {}
        self._create_lock: asyncio.Lock | None = None

    def num_partitions(self) -> int:
        topic = self.image().topics.get(OFFSETS_TOPIC)
        if topic is not None and topic.partitions:
            return len(topic.partitions)
        return self.config.offsets_topic_num_partitions

    # ----------------------------------------------------------- leadership

    def on_metadata_change(self) -> None:
        """Load the offsets partitions this broker now leads; unload those it lost.

        A partition led under a newer leader epoch than it was loaded under is reloaded even
        though no loss of leadership was seen in between (Kafka's rule): leadership went
        elsewhere and came back, another coordinator may have written to the log meanwhile,
        and the groups in memory would be stale."""
        led = self.replicas.led_partitions(OFFSETS_TOPIC)
        for index in list(self.coordinator.partitions):
            p = led.get(index)
            if p is not None and p.leader_epoch == self._loaded_epochs.get(index):
                continue
            task = self._loads.pop(index, None)
            if task is not None:
                task.cancel()
            dropped = self.consumer.unload(index)
            if p is None:
                self._loaded_epochs.pop(index, None)
                logger.info(
                    "%sno longer coordinator for %s-%d: %d groups unloaded",
                    self.tag,
                    OFFSETS_TOPIC,
                    index,
                    dropped,
                )
            else:
                logger.info(
                    "%s%s-%d: led again at leader epoch %d (loaded at %d): reloading %d groups",
                    self.tag,
                    OFFSETS_TOPIC,
                    index,
                    p.leader_epoch,
                    self._loaded_epochs[index],
                    dropped,
                )
        for index, p in sorted(led.items()):
            if index not in self.coordinator.partitions:
                self._start_load(index, p)
        # Consumer groups rebalance when topics they subscribe to change.
        self.consumer.on_metadata_change()

    def _topics(self) -> dict[str, TopicMetadata]:
        return {
            name: TopicMetadata(t.topic_id, name, len(t.partitions))
            for name, t in self.image().topics.items()
        }

    def _start_load(self, index: int, partition: OffsetsPartition) -> None:
        self._loaded_epochs[index] = partition.leader_epoch
        self.consumer.begin_load(index)
        log = partition.log
        if log.log_end_offset <= log.log_start_offset:
            self.consumer.complete_load(index)  # nothing to read: serve at once
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            for _ in self._load_steps(index, partition):
                pass
            return
        self._loads[index] = loop.create_task(self._load(index, partition))

    async def _load(self, index: int, partition: OffsetsPartition) -> None:
        try:
            for _ in self._load_steps(index, partition):
                await asyncio.sleep(0)  # let requests be served between chunks
        finally:
            if self._loads.get(index) is asyncio.current_task():
                del self._loads[index]

    def _load_steps(self, index: int, partition: OffsetsPartition) -> Iterator[None]:
        """Replay the partition from its log start to the log end seen now, one chunk per
        step; then serve its groups. Records that do not parse are logged and skipped."""
        start = time.monotonic()
        log = partition.log
        end = log.log_end_offset
        offset = log.log_start_offset
        records = skipped = 0
        while offset < end:
            if self.coordinator.partitions.get(index) is not PartitionStatus.LOADING:
                return  # unloaded meanwhile
            try:
                result = log.read(offset, LOAD_CHUNK_BYTES)
            except LogError as e:
                logger.error(
                    "%scannot read %s-%d at %d while loading groups: %s",
                    self.tag,
                    OFFSETS_TOPIC,
                    index,
                    offset,
                    e,
                )
                break
            view = result.records
            if not len(view):
                break
            pos = 0
            while pos < len(view):
                header = parse_header(view, pos)
                batch = view[pos : pos + header.size]
                pos += header.size
                if header.is_control or header.is_transactional:
                    continue  # no transactional offset commits without transactions
                try:
                    decoded = decode_records(batch)
                except LogError as e:
                    logger.error(
                        "%sskipping a corrupt batch of %s-%d: %s", self.tag, OFFSETS_TOPIC, index, e
                    )
                    continue
                for record in decoded:
                    if record.key is None:
                        continue
                    try:
                        self.consumer.replay(
                            index,
                            bytes(record.key),
                            None if record.value is None else bytes(record.value),
                        )
                        records += 1
                    except RecordFormatError as e:
                        skipped += 1
                        logger.warning(
                            "%sskipping a record of %s-%d: %s", self.tag, OFFSETS_TOPIC, index, e
                        )
            offset = result.next_offset
            yield
        if self.coordinator.partitions.get(index) is not PartitionStatus.LOADING:
            return
        groups = self.consumer.complete_load(index)
        logger.info(
            "%scoordinator for %s-%d: loaded %d groups from %d records (%d skipped) in %.1f ms",
            self.tag,
            OFFSETS_TOPIC,
            index,
            len(groups),
            records,
            skipped,
            (time.monotonic() - start) * 1000,
        )

    # --------------------------------------------------------------- writes

    def _write(self, index: int, records: Records, done: DoneFn) -> None:
        """Append the coordinator's records to its partition through the replica manager
        (acks=all, bounded by `offsets.commit.timeout.ms`); `done(error)` once replicated,
        always later, from the loop, never from inside this call, and in append order."""
        loop = asyncio.get_running_loop()
        key = (OFFSETS_TOPIC, index)
        batch = build_batch(
            [Record(i, 0, k, v) for i, (k, v) in enumerate(records)],
            base_timestamp=wall_clock_ms(),
        )

        def answered(code: int) -> None:
            loop.call_soon(self._report, done, code)

        self.replicas.append(key, batch, self.commit_timeout_ms, answered)

    def _report(self, done: DoneFn, code: int) -> None:
        try:
            done(code)
        except Exception:
            logger.exception("%sgroup coordinator write callback failed", self.tag)

    # ------------------------------------------------------------ the topic

    async def ensure_offsets_topic(self) -> int:
        """Create `__consumer_offsets` if it does not exist yet; NONE once it does."""
        image = self.image()
        if OFFSETS_TOPIC in image.topics:
            return ErrorCode.NONE
        if self._create_lock is None:
            self._create_lock = asyncio.Lock()
        async with self._create_lock:
            if OFFSETS_TOPIC in image.topics:
                return ErrorCode.NONE
            cfg = self.config
            alive = len(image.unfenced_brokers())
            if alive == 0:
                return ErrorCode.COORDINATOR_NOT_AVAILABLE
            spec = TopicSpec(
                OFFSETS_TOPIC,
                cfg.offsets_topic_num_partitions,
                min(cfg.offsets_topic_replication_factor, alive),
                configs={
                    "cleanup.policy": "compact",
                    "compression.type": "producer",
                    "segment.bytes": str(cfg.offsets_topic_segment_bytes),
                },
            )
            try:
                results = await self.create_topics([spec])
            except Exception:
                logger.exception("%scannot create %s", self.tag, OFFSETS_TOPIC)
                return ErrorCode.COORDINATOR_NOT_AVAILABLE
            for name, code in results:
                if code == ErrorCode.NONE:
                    logger.info(
                        "%screated %s (%d partitions, replication factor %d)",
                        self.tag,
                        name,
                        spec.num_partitions,
                        spec.replication_factor,
                    )
                elif code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    logger.warning("%screating %s failed: error %d", self.tag, name, code)
            # In a cluster the topic reaches this broker's image a little after the commit.
            if OFFSETS_TOPIC not in self.image().topics:
                return ErrorCode.COORDINATOR_NOT_AVAILABLE
            return ErrorCode.NONE

    async def find_coordinator(self, key: str, listener: str) -> tuple[int, int, str, int]:
        """(error, node id, host, port) of the broker coordinating group `key`: the leader of
        its offsets partition, as reachable on the listener the client used."""
        none = (-1, "", -1)
        error = await self.ensure_offsets_topic()
        if error:
            return (error, *none)
        image = self.image()
        topic = image.topics.get(OFFSETS_TOPIC)
        if topic is None or not topic.partitions:
            return (ErrorCode.COORDINATOR_NOT_AVAILABLE, *none)
        state = topic.partitions.get(partition_for(key, len(topic.partitions)))
        reg = image.brokers.get(state.leader) if state is not None else None
        endpoint = reg.endpoints.get(listener) if reg is not None and not reg.fenced else None
        if state is None or endpoint is None:
            return (ErrorCode.COORDINATOR_NOT_AVAILABLE, *none)
        return ErrorCode.NONE, state.leader, endpoint[0], endpoint[1]
