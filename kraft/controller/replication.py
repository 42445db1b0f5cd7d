"""Replication control: leader election, ISR changes, fencing, controlled shutdown.

Pure functions from the metadata image to PartitionChangeRecords, as Kafka's
ReplicationControlManager decides them:

- a leader is elected from the ISR in replica order among usable (registered, unfenced, not
  shutting down) brokers; failing that, from the eligible leader replicas (KIP-966: replicas
  removed from the ISR only while it was at min.insync.replicas, so they hold every committed
  write); failing that, with `unclean.leader.election.enable`, from any usable replica — which
  then becomes the whole ISR and its leader recovery state is RECOVERING; otherwise there is no
  leader (-1);
- a fenced or shutting-down broker leaves the ISR, except when it is the last member: the ISR
  is never emptied, so the last member can come back as leader without data loss;
- a record changes the leader epoch only when the leader changes (image.apply bumps it), and
  every record bumps the partition epoch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kraft.metadata.image import LEADER_UNCHANGED, MetadataImage, PartitionState
from net.protocol import ErrorCode, Message
from net.protocol import _generated as m

NO_LEADER = -1
RECOVERED = 0
RECOVERING = 1


def usable_brokers(image: MetadataImage) -> set[int]:
    return {
        b for b, reg in image.brokers.items() if not reg.fenced and not reg.in_controlled_shutdown
    }


def elect_leader(
    state: PartitionState, isr: list[int], usable: set[int], unclean: bool
) -> tuple[int, bool]:
    """(new leader or -1, whether the election was unclean)."""
    for replica in state.replicas:
        if replica in isr and replica in usable:
            return replica, False
    for replica in state.replicas:
        if replica in state.eligible_leader_replicas and replica in usable:
            return replica, False
    if unclean:
        for replica in state.replicas:
            if replica in usable:
                return replica, True
    return NO_LEADER, False


@dataclass(frozen=True, slots=True)
class PartitionRef:
    topic: str
    topic_id: uuid.UUID
    index: int
    state: PartitionState


def partitions_of(image: MetadataImage, broker_id: int) -> Iterable[PartitionRef]:
    for topic in image.topics.values():
        for index, state in topic.partitions.items():
            if broker_id in state.replicas:
                yield PartitionRef(topic.name, topic.topic_id, index, state)


def _change(
    ref: PartitionRef,
    leader: int = LEADER_UNCHANGED,
    isr: list[int] | None = None,
    recovery: int = -1,
) -> m.PartitionChangeRecord:
    return m.PartitionChangeRecord(
        topic_id=ref.topic_id,
        partition_id=ref.index,
        leader=leader,
        isr=isr,
        leader_recovery_state=recovery,
    )


def remove_broker(
    image: MetadataImage,
    broker_id: int,
    unclean_for: Callable[[str], bool],
    usable: set[int],
) -> list[Message]:
    """Partition changes for a broker that can no longer lead or follow (fenced, or in
    controlled shutdown): leaderships move, it leaves ISRs it is not the last member of."""
    records: list[Message] = []
    usable = usable - {broker_id}
    for ref in partitions_of(image, broker_id):
        state = ref.state
        isr = [r for r in state.isr if r != broker_id] or list(state.isr)
        if state.leader == broker_id or (state.leader == NO_LEADER and broker_id in state.isr):
            leader, unclean = elect_leader(state, isr, usable, unclean_for(ref.topic))
            if unclean:
                records.append(_change(ref, leader, [leader], RECOVERING))
            elif leader != state.leader or isr != state.isr:
                records.append(
                    _change(ref, leader if leader != state.leader else LEADER_UNCHANGED, isr)
                )
        elif isr != state.isr:
            records.append(_change(ref, isr=isr))
    return records


def elect_leaderless(
    image: MetadataImage, usable: set[int], unclean_for: Callable[[str], bool]
) -> list[Message]:
    """Leaders for partitions that have none, now that `usable` brokers can lead."""
    records: list[Message] = []
    for topic in image.topics.values():
        for index, state in topic.partitions.items():
            if state.leader != NO_LEADER and state.leader in usable:
                continue
            ref = PartitionRef(topic.name, topic.topic_id, index, state)
            leader, unclean = elect_leader(state, state.isr, usable, unclean_for(topic.name))
            if leader == NO_LEADER or leader == state.leader:
                continue
            if unclean:
                records.append(_change(ref, leader, [leader], RECOVERING))
            else:
                records.append(_change(ref, leader))
    return records


def preferred_leader_changes(image: MetadataImage, usable: set[int]) -> list[Message]:
    """Move leadership back to the first replica wherever it is in the ISR and usable."""
    records: list[Message] = []
    for topic in image.topics.values():
        for index, state in topic.partitions.items():
            preferred = state.replicas[0] if state.replicas else NO_LEADER
            if (
                preferred != state.leader
                and preferred in state.isr
                and preferred in usable
                and state.leader_recovery_state == RECOVERED
            ):
                records.append(
                    _change(PartitionRef(topic.name, topic.topic_id, index, state), preferred)
                )
    return records


@dataclass(slots=True)
class AlterPartitionResult:
    error_code: int
    record: m.PartitionChangeRecord | None = None


def alter_partition(
    image: MetadataImage,
    broker_id: int,
    topic_id: uuid.UUID,
    index: int,
    leader_epoch: int,
    partition_epoch: int,
    new_isr: list[int],
    leader_recovery_state: int,
) -> AlterPartitionResult:
    """A leader's ISR change (AlterPartition), checked against the current partition state."""
    topic = image.topics_by_id.get(topic_id)
    state = topic.partitions.get(index) if topic else None
    if topic is None or state is None:
        return AlterPartitionResult(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if state.leader != broker_id:
        return AlterPartitionResult(ErrorCode.NOT_LEADER_OR_FOLLOWER)
    if leader_epoch != state.leader_epoch:
        return AlterPartitionResult(ErrorCode.FENCED_LEADER_EPOCH)
    if partition_epoch != state.partition_epoch:
        return AlterPartitionResult(ErrorCode.INVALID_UPDATE_VERSION)
    if broker_id not in new_isr or len(set(new_isr)) != len(new_isr):
        return AlterPartitionResult(ErrorCode.INVALID_REQUEST)
    usable = usable_brokers(image)
    added = set(new_isr) - set(state.isr)
    if any(r not in state.replicas or r not in usable for r in added):
        return AlterPartitionResult(ErrorCode.INELIGIBLE_REPLICA)
    if any(r not in state.replicas for r in new_isr):
        return AlterPartitionResult(ErrorCode.INELIGIBLE_REPLICA)
    if state.leader_recovery_state == RECOVERED and leader_recovery_state == RECOVERING:
        return AlterPartitionResult(ErrorCode.INVALID_REQUEST)
    ordered = [r for r in state.replicas if r in new_isr]
    if ordered == state.isr and leader_recovery_state == state.leader_recovery_state:
        return AlterPartitionResult(0)
    record = m.PartitionChangeRecord(
        topic_id=topic_id,
        partition_id=index,
        isr=ordered,
        leader_recovery_state=(
            leader_recovery_state if leader_recovery_state != state.leader_recovery_state else -1
        ),
    )
    return AlterPartitionResult(0, record)


class BrokerHeartbeats:
    """Soft state of the active controller: when each broker last heartbeated (monotonic ms).

    Not replicated (like Kafka's BrokerHeartbeatManager): a new active controller gives every
    broker a fresh session from the moment it takes over.
    """

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self._last: dict[int, int] = {}

    def touch(self, broker_id: int) -> None:
        self._last[broker_id] = self.clock()

    def forget(self, broker_id: int) -> None:
        self._last.pop(broker_id, None)

    def reset(self, broker_ids: Iterable[int]) -> None:
        now = self.clock()
        self._last = {b: now for b in broker_ids}

    def expired(self, session_timeout_ms: int) -> list[int]:
        now = self.clock()
        return sorted(b for b, t in self._last.items() if now - t > session_timeout_ms)
