"""The group coordinator service on a broker: which `__consumer_offsets` partitions it loads,
when it reloads them, and what its writes report.

The service gets its narrow seams: a real replica manager with real `Partition`s over real
logs behind the broker's `CoordinatorPartitionWriter`, an image and a config; the service,
the pure coordinator and the record codec are the real ones.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from kraft.config import NodeConfig
from kraft.controller.controller import TopicSpec
from kraft.log.config import LogConfig
from kraft.log.manager import LogManager
from kraft.log.partition_log import wall_clock_ms
from kraft.log.records import Record, build_batch
from kraft.metadata.image import MetadataImage
from kraft.net.broker.coordinator_partitions import CoordinatorPartitionWriter
from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import ReplicaManager
from kraft.net.broker.replication import ReplicaFetcherManager
from kraft.net.groups.coordinator import OFFSETS_TOPIC, PartitionStatus, partition_for
from kraft.net.groups.records import OffsetValue, encode_offset_key, encode_offset_value
from kraft.net.groups.service import GroupCoordinatorService
from kraft.net.groups.state import CommittedOffset
from kraft.net.protocol import ErrorCode
from tests.wait import wait_until_async

GROUP = "g"
TP = ("t", 0)


class StubBroker:
    """A replica manager hosting one offsets partition, and what the service is built from."""

    def __init__(self, root: Path) -> None:
        self.node_id = 1
        self.tag = "[broker 1] "
        self.config = NodeConfig(
            node_id=1, process_roles=("broker",), listeners=(), advertised_listeners=(), log_dirs=()
        )
        self.image = MetadataImage()
        self.index = partition_for(GROUP, self.config.offsets_topic_num_partitions)
        self.replica_manager = ReplicaManager(
            1,
            LogManager([str(root)]),
            lambda: self.image,
            ReplicaFetcherManager(1, lambda _: None, self.tag),
            tag=self.tag,
        )
        self.partition = self.replica_manager.get_or_create_partition(
            OFFSETS_TOPIC, self.index, uuid.uuid4(), LogConfig()
        )
        self.partitions = self.replica_manager.partitions

    def service(self) -> GroupCoordinatorService:
        async def no_create_topics(specs: list[TopicSpec]) -> list[tuple[str, int]]:
            raise AssertionError("the offsets partition is hosted already")

        return GroupCoordinatorService(
            self.config,
            lambda: self.image,
            CoordinatorPartitionWriter(self.replica_manager),
            no_create_topics,
            tag=self.tag,
        )


async def loaded(service: GroupCoordinatorService, index: int) -> None:
    task = service._loads.get(index)
    if task is not None:
        await task
    assert service.coordinator.partitions.get(index) is PartitionStatus.ACTIVE


async def commit(service: GroupCoordinatorService, offset: int) -> int:
    """A commit of a consumer outside any group (generation -1); its error code."""
    answer: asyncio.Future[dict[tuple[str, int], int]] = asyncio.get_running_loop().create_future()
    service.coordinator.commit_offsets(
        GROUP, -1, "", None, {TP: CommittedOffset(offset)}, answer.set_result
    )
    return (await answer)[TP]


def committed(service: GroupCoordinatorService) -> int | None:
    error, found = service.coordinator.fetch_offsets(GROUP, [TP])
    assert error == ErrorCode.NONE
    ((_, offset),) = found
    return offset.offset if offset is not None else None


def written_by_another_leader(partition: Partition, epoch: int, offset: int) -> None:
    """What a leader of a later epoch wrote, as this broker's log now holds it."""
    key = encode_offset_key(GROUP, *TP)
    value = encode_offset_value(OffsetValue(offset, commit_timestamp=wall_clock_ms()))
    partition.log.append_as_leader(build_batch([Record(0, 0, key, value)]), epoch)


async def test_a_newer_leader_epoch_reloads_the_groups_though_no_loss_was_seen(
    tmp_path: Path,
) -> None:
    """Leadership went elsewhere and came back between two metadata changes this broker saw
    (epoch 1, then epoch 3: it never saw epoch 2). Meanwhile the other leader took commits,
    which are in the log now: the coordinator must serve the log, not its memory of epoch 1."""
    broker = StubBroker(tmp_path)
    p = broker.partition
    p.become_leader(leader_epoch=1, partition_epoch=1, replicas=[1], isr=[1])
    service = broker.service()
    service.on_metadata_change()
    await loaded(service, broker.index)
    assert await commit(service, 5) == ErrorCode.NONE
    assert committed(service) == 5

    written_by_another_leader(p, epoch=2, offset=9)
    p.become_leader(leader_epoch=3, partition_epoch=4, replicas=[1], isr=[1])
    service.on_metadata_change()
    await loaded(service, broker.index)
    assert committed(service) == 9


async def test_an_isr_change_keeps_the_loaded_groups(tmp_path: Path) -> None:
    """Only the leader epoch says leadership changed hands: a new partition epoch alone (an
    ISR change) is no reason to reload."""
    broker = StubBroker(tmp_path)
    p = broker.partition
    p.become_leader(leader_epoch=1, partition_epoch=1, replicas=[1], isr=[1])
    service = broker.service()
    service.on_metadata_change()
    await loaded(service, broker.index)
    assert await commit(service, 5) == ErrorCode.NONE
    group = service.coordinator.groups[GROUP]

    p.become_leader(leader_epoch=1, partition_epoch=2, replicas=[1], isr=[1])
    service.on_metadata_change()
    assert service.coordinator.partitions[broker.index] is PartitionStatus.ACTIVE
    assert service.coordinator.groups[GROUP] is group
    assert committed(service) == 5


async def test_a_write_pending_across_a_leader_epoch_change_fails(tmp_path: Path) -> None:
    """A commit appended under epoch 1 and not yet replicated when the epoch changes is not
    reported as stored: the reloaded coordinator answers for what the log holds."""
    broker = StubBroker(tmp_path)
    p = broker.partition
    p.min_insync_replicas = 1
    p.become_leader(leader_epoch=1, partition_epoch=1, replicas=[1, 2], isr=[1, 2])
    service = broker.service()
    service.on_metadata_change()
    await loaded(service, broker.index)
    end = p.log.log_end_offset
    pending = asyncio.ensure_future(commit(service, 5))  # waits for follower 2
    await wait_until_async(lambda: p.log.log_end_offset > end, "the commit to be appended", 5)
    assert not pending.done()

    p.become_leader(leader_epoch=3, partition_epoch=4, replicas=[1, 2], isr=[1, 2])
    service.on_metadata_change()
    async with asyncio.timeout(2):  # well before the commit timeout (5 s)
        code = await pending
    assert code == ErrorCode.NOT_COORDINATOR
