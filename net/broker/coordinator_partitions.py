"""The replica manager as a coordinator sees it (Kafka's CoordinatorPartitionWriter): the
partitions of an internal topic this broker leads, and an acks=all append to one, with the
coordinator's append origin. The group coordinator declares what it needs
(`kraft.net.groups.service.CoordinatorPartitions`); this is the broker's side of that seam."""

from __future__ import annotations

from collections.abc import Callable

from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import AppendOrigin, AppendResults, ReplicaManager


class CoordinatorPartitionWriter:
    def __init__(self, replica_manager: ReplicaManager) -> None:
        self.replica_manager = replica_manager

    def led_partitions(self, topic: str) -> dict[int, Partition]:
        return {
            index: p
            for (name, index), p in self.replica_manager.partitions.items()
            if name == topic and p.is_leader
        }

    def append(
        self,
        topic_partition: tuple[str, int],
        batch: bytes,
        timeout_ms: int,
        done: Callable[[int], None],
    ) -> None:
        def answered(results: AppendResults) -> None:
            done(results[topic_partition].error_code)

        self.replica_manager.append_records(
            {topic_partition: batch}, -1, timeout_ms, AppendOrigin.COORDINATOR, answered
        )
