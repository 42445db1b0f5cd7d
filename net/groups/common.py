"""What the group coordinators and their parts share: the configs, the shapes of the injected
clock and record writer, the loading status of an offsets partition, and `ClassicGroups` —
what the KIP-848 consumer coordinator's parts use of the classic coordinator.

Below every other module of `net.groups` but `records`, `state` and `timer`: the parts of a
coordinator (`classic_membership`, `offsets`, `consumer_heartbeat`) take their types from
here rather than from the coordinator that composes them, so imports point one way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from kraft.net.groups.state import ClassicGroup
from kraft.net.groups.timer import Timer
from kraft.net.protocol import ErrorCode

TopicPartition = tuple[str, int]
# (key, value) records for one partition; a None value is a tombstone.
Records = list[tuple[bytes, bytes | None]]
# Append records to a partition of __consumer_offsets; call back with a Kafka error code
# once they are replicated (0) or failed.
Writer = Callable[[int, Records, Callable[[int], None]], None]
Clock = Callable[[], int]

# KIP-394 and Kafka: a member that joined but whose join never completed is dropped after
# this long (it cannot heartbeat while its JoinGroup waits).
NEW_MEMBER_JOIN_TIMEOUT_MS = 300_000


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Kafka's broker configs of the classic group coordinator."""

    initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    min_session_timeout_ms: int = 6000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    max_size: int = 2**31 - 1  # group.max.size
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes
    new_member_join_timeout_ms: int = NEW_MEMBER_JOIN_TIMEOUT_MS
    offsets_retention_ms: int = 7 * 24 * 3600_000  # offsets.retention.minutes = 10080
    offsets_retention_check_interval_ms: int = 600_000  # offsets.retention.check.interval.ms


@dataclass(frozen=True, slots=True)
class ConsumerGroupConfig:
    """Kafka's broker configs of KIP-848 consumer groups."""

    session_timeout_ms: int = 45_000  # group.consumer.session.timeout.ms
    heartbeat_interval_ms: int = 5_000  # group.consumer.heartbeat.interval.ms
    max_size: int = 2**31 - 1  # group.consumer.max.size
    assignors: tuple[str, ...] = ("uniform", "range")  # group.consumer.assignors (1st: default)
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes


class PartitionStatus(enum.Enum):
    LOADING = "loading"
    ACTIVE = "active"


def group_store_error(code: int) -> int:
    """Kafka's mapping of a failed group metadata write to what the client sees."""
    if code in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    return ErrorCode.UNKNOWN_SERVER_ERROR if code else ErrorCode.NONE


class ClassicGroups(Protocol):
    """The classic `GroupCoordinator` as the consumer coordinator's parts see it: the one
    owner of the offsets partitions' status, the timers and the group-id namespace (a group
    id is either a classic group or a consumer group)."""

    config: GroupConfig
    timer: Timer
    groups: dict[str, ClassicGroup]
    partitions: dict[int, PartitionStatus]

    def check_group(self, group_id: str, require_id: bool = True) -> int: ...

    def partition_of(self, group_id: str) -> int: ...

    def active_partitions(self) -> list[int]: ...

    def expire_offsets(self, partitions: Iterable[int]) -> int: ...
