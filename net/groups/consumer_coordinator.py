"""The KIP-848 consumer group coordinator of one broker, beside the classic one.

It serves the consumer groups (`group.protocol=consumer`) of the same `__consumer_offsets`
partitions as the classic `GroupCoordinator`, whose ownership it shares: the classic
coordinator keeps which partitions are loading or active, and the broker drives both through
this one (`begin_load`, `replay`, `complete_load`, `unload`), which forwards what is not a
consumer group record. Like the classic coordinator it is pure and single-threaded: clock,
timers and writer are the classic coordinator's (injected), the cluster's topics come from
an injected function.

Every operation computes the records it implies from the current state (ConsumerGroupHeartbeat
joins, heartbeats and leaves; session and revocation timeouts; topic metadata changes), then
replays them into the group (`ConsumerGroup.replay`, which loading uses too), then writes
them; its answer waits until they are replicated. An operation that writes nothing still
answers only after every earlier write of its partition, so no answer reveals a state that
could be lost. (A write that fails leaves the state applied in memory: the client sees the
error and joins again; Kafka reverts the state instead.)

This module holds loading, topic-metadata changes, the ordering of writes and answers, and
describe/list/delete; the member protocol (ConsumerGroupHeartbeat) is the mixin
`ConsumerGroupHeartbeats` of `consumer_heartbeat.py`, committed offsets and their expiry the
mixin `ConsumerGroupOffsets` of `offsets.py`.

Target assignments are computed as soon as the group epoch moves (Kafka computes them on the
next heartbeat), so group epoch and assignment epoch are equal after every operation.

A group id is either classic or consumer. An *empty* group of the other kind is converted,
as Kafka's offline upgrade and downgrade do: a consumer member joining an empty classic group
(for instance one that only holds committed offsets) turns it into a consumer group, and a
classic JoinGroup on an empty consumer group turns it back; committed offsets carry over.
A non-empty group of the other kind is refused: GROUP_ID_NOT_FOUND for ConsumerGroupHeartbeat,
INCONSISTENT_GROUP_PROTOCOL for JoinGroup (Kafka 4.0 can also migrate live groups member by
member; this coordinator cannot).
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kraft.net.groups.assignors import ASSIGNORS, Assignment
from kraft.net.groups.common import (
    ConsumerGroupConfig,
    PartitionStatus,
    Records,
    group_store_error,
)
from kraft.net.groups.consumer import (
    ConsumerGroup,
    ConsumerGroupState,
    ConsumerMember,
    GroupError,
    HeartbeatRequest,
    HeartbeatResult,
    MemberState,
    group_record,
    is_empty_classic,
    member_removal_records,
    subscribed_topics,
)
from kraft.net.groups.consumer_heartbeat import ConsumerGroupHeartbeats, TopicsFn
from kraft.net.groups.consumer_records import (
    GROUP_METADATA,
    PARTITION_METADATA,
    TARGET_ASSIGNMENT_METADATA,
    ConsumerRecord,
    decode_record,
    encode_record,
)
from kraft.net.groups.coordinator import (
    CLASSIC_GROUP_TYPE,
    GroupCoordinator,
    GroupDescription,
    ListedGroup,
    MemberDescription,
)
from kraft.net.groups.offsets import ConsumerGroupOffsets, remove_offsets
from kraft.net.groups.state import CONSUMER_PROTOCOL_TYPE, ClassicGroup, GroupState
from kraft.net.protocol import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
    ErrorCode,
    encode_message,
)

logger = logging.getLogger(__name__)

CONSUMER_GROUP_TYPE = "consumer"


def _kafka_style_id() -> str:
    """A random id shaped like Kafka's Uuid.toString (22 characters of URL-safe base64)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class DescribedMember:
    member: ConsumerMember
    target: Assignment


@dataclass(frozen=True, slots=True)
class ConsumerGroupDescription:
    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor: str
    members: list[DescribedMember]
    topic_names: Mapping[uuid.UUID, str]


class _PartitionWrites:
    """Writes of one offsets partition not yet reported, and who waits for them."""

    def __init__(self) -> None:
        self.issued = 0
        self.outstanding: set[int] = set()
        self.waiters: list[tuple[int, Callable[[], None]]] = []

    def settled_through(self, seq: int) -> bool:
        return not any(s <= seq for s in self.outstanding)

    def complete(self, seq: int) -> None:
        self.outstanding.discard(seq)
        ready = [w for w in self.waiters if self.settled_through(w[0])]
        self.waiters = [w for w in self.waiters if not self.settled_through(w[0])]
        for _, fn in ready:
            fn()


class ConsumerGroupCoordinator(ConsumerGroupHeartbeats, ConsumerGroupOffsets):
    classic: GroupCoordinator  # the parts see it as `ClassicGroups`

    def __init__(
        self,
        classic: GroupCoordinator,
        config: ConsumerGroupConfig,
        topics: TopicsFn,
        *,
        new_id: Callable[[], str] = _kafka_style_id,
        tag: str = "",
    ) -> None:
        unknown = [a for a in config.assignors if a not in ASSIGNORS]
        if not config.assignors or unknown:
            raise ValueError(f"unknown server assignors {unknown}; known: {sorted(ASSIGNORS)}")
        self.classic = classic
        self.config = config
        self.topics = topics
        self.new_id = new_id
        self.tag = tag
        self.groups: dict[str, ConsumerGroup] = {}
        self._writes: dict[int, _PartitionWrites] = {}
        self._expiry_scheduled = False

    @property
    def clock(self) -> Callable[[], int]:
        return self.classic.clock

    def is_consumer_group(self, group_id: str) -> bool:
        """Whether requests about `group_id` are this coordinator's (else the classic one's)."""
        return group_id in self.groups

    # ============================================================ loading

    def begin_load(self, partition: int) -> None:
        self.classic.begin_load(partition)
        self._drop(partition)

    def replay(self, partition: int, key: bytes, value: bytes | None) -> None:
        """One record of the partition's log during a load; classic and offset records go
        to the classic coordinator. Raises RecordFormatError for one that does not parse."""
        record = decode_record(key, value)
        if record is None:
            self.classic.replay(partition, key, value)
            return
        group_id = record.key.group
        group = self.groups.get(group_id)
        if record.key.type == GROUP_METADATA and record.value is None:
            if group is not None:
                del self.groups[group_id]
            return
        if group is None:
            group = self.groups[group_id] = ConsumerGroup(group_id, partition)
        group.replay(record)

    def complete_load(self, partition: int) -> list[ClassicGroup | ConsumerGroup]:
        """Serve the partition's groups: offsets of consumer groups move from the classic
        coordinator (which read them) to their groups; members get a full session timeout
        to find this coordinator; groups catch up with topic changes made meanwhile."""
        loaded: list[ClassicGroup | ConsumerGroup] = list(self.classic.complete_load(partition))
        mine = [g for g in self.groups.values() if g.partition == partition]
        for group in mine:
            self._adopt_classic(group, loaded_now=True)
            for member in group.members.values():
                self._schedule_session(group, member.member_id)
                if member.state is MemberState.UNREVOKED_PARTITIONS:
                    self._schedule_revocation(group, member)
        loaded = [g for g in loaded if self.classic.groups.get(g.group_id) is g]
        self._refresh_metadata(mine)
        self._schedule_offset_expiry()
        return loaded + mine

    def unload(self, partition: int) -> int:
        dropped = self.classic.unload(partition)
        return dropped + self._drop(partition)

    def _drop(self, partition: int) -> int:
        dropped = [g for g in self.groups.values() if g.partition == partition]
        for group in dropped:
            del self.groups[group.group_id]
            group.dead = True
            self._cancel_timers(group)
        self._writes.pop(partition, None)
        return len(dropped)

    # ===================================================== topic metadata

    def on_metadata_change(self) -> None:
        """Topics changed (created, deleted, partitions added): groups subscribed to them
        start a new epoch with a new target assignment."""
        self._refresh_metadata(list(self.groups.values()))

    def _refresh_metadata(self, groups: Iterable[ConsumerGroup]) -> None:
        for group in groups:
            if self.classic.partitions.get(group.partition) is not PartitionStatus.ACTIVE:
                continue
            if not group.members:
                continue
            if (
                self._subscription_metadata(group, group.members.values())
                == group.subscription_metadata
            ):
                continue
            records = self._maybe_new_epoch(
                group, group.members, dict(group.target), force=False, check_metadata=True
            )[2]
            logger.info("%sconsumer group %s: subscribed topics changed", self.tag, group.group_id)
            self._commit(group, records, self._log_failure(group, "a new epoch for new metadata"))

    # ==================================================== records and writes

    def _register(self, group: ConsumerGroup) -> None:
        """A new consumer group; an empty classic group of the same id gives way to it."""
        self._adopt_classic(group, loaded_now=False)
        self.groups[group.group_id] = group

    def _adopt_classic(self, group: ConsumerGroup, *, loaded_now: bool) -> None:
        classic = self.classic.groups.get(group.group_id)
        if classic is None:
            return
        if not is_empty_classic(classic):
            # Both in one log can only come from a log of another broker: the consumer
            # group's records are the newer ones (the classic group could not have members
            # while they were live), so it wins.
            logger.warning(
                "%sgroup %s is both a classic group with members and a consumer group; "
                "keeping the consumer group",
                self.tag,
                group.group_id,
            )
        del self.classic.groups[group.group_id]
        self.classic._cancel_timers(classic)
        classic.state = GroupState.DEAD
        for tp, offset in classic.offsets.items():
            group.offsets.setdefault(tp, offset)
        if not loaded_now:
            logger.info(
                "%sgroup %s: empty classic group becomes a consumer group (%d offsets kept)",
                self.tag,
                group.group_id,
                len(classic.offsets),
            )

    def _apply(self, group: ConsumerGroup, record: ConsumerRecord) -> None:
        if record.key.type == GROUP_METADATA and record.value is None:
            group.dead = True
            self._cancel_timers(group)
            if self.groups.get(group.group_id) is group:
                del self.groups[group.group_id]
            return
        group.replay(record)

    def _commit(
        self, group: ConsumerGroup, records: list[ConsumerRecord], done: Callable[[int], None]
    ) -> None:
        """Replay `records` into the group and write them; `done(error)` once replicated
        (with nothing to write: once every earlier write of the partition is)."""
        for record in records:
            self._apply(group, record)
        self._write(group.partition, [encode_record(r) for r in records], done)

    def _write(self, partition: int, raw: Records, done: Callable[[int], None]) -> None:
        writes = self._writes.setdefault(partition, _PartitionWrites())
        if not raw:
            if writes.settled_through(writes.issued):
                done(ErrorCode.NONE)
            else:
                writes.waiters.append((writes.issued, lambda: done(ErrorCode.NONE)))
            return
        writes.issued += 1
        seq = writes.issued
        writes.outstanding.add(seq)

        def written(code: int) -> None:
            try:
                done(code)
            finally:
                writes.complete(seq)

        self.classic.writer(partition, raw, written)

    # ================================================ describe, list, delete

    def describe(self, group_id: str) -> tuple[int, str | None, ConsumerGroupDescription | None]:
        """ConsumerGroupDescribe of one group: (error, message, description)."""
        error = self.classic.check_group(group_id)
        if error:
            return error, None, None
        group = self.groups.get(group_id)
        if group is None:
            message = (
                f"Group {group_id} is not a consumer group."
                if group_id in self.classic.groups
                else f"Group {group_id} not found."
            )
            return ErrorCode.GROUP_ID_NOT_FOUND, message, None
        names = {t.topic_id: t.name for t in self.topics().values()}
        for t in group.subscription_metadata.values():
            names.setdefault(t.topic_id, t.name)
        return (
            ErrorCode.NONE,
            None,
            ConsumerGroupDescription(
                group_id,
                group.state.value,
                group.group_epoch,
                group.assignment_epoch,
                group.preferred_assignor(group.members.values(), self.config.assignors[0]),
                [
                    DescribedMember(m, group.target.get(m.member_id, {}))
                    for m in group.members.values()
                ],
                names,
            ),
        )

    def describe_group(self, group_id: str) -> tuple[int, GroupDescription]:
        """DescribeGroups (the classic API): a consumer group as a classic client would see
        one of type "consumer": subscriptions and assignments in the consumer protocol's
        formats (version 0), the server assignor as the protocol."""
        if group_id not in self.groups:
            return self.classic.describe_group(group_id)
        error, _, d = self.describe(group_id)
        if error or d is None:
            return self.classic.describe_group(group_id)
        members = []
        for dm in d.members:
            m = dm.member
            subscription = ConsumerProtocolSubscription(
                topics=sorted(subscribed_topics([m], self.topics().keys()))
            )
            assignment = ConsumerProtocolAssignment(
                assigned_partitions=[
                    ConsumerProtocolAssignment.TopicPartition(
                        topic=d.topic_names.get(t, str(t)), partitions=sorted(ps)
                    )
                    for t, ps in sorted(
                        m.assigned.items(), key=lambda kv: d.topic_names.get(kv[0], "")
                    )
                ]
            )
            members.append(
                MemberDescription(
                    m.member_id,
                    m.instance_id,
                    m.client_id,
                    m.client_host,
                    b"\x00\x00" + bytes(encode_message(subscription, 0)),
                    b"\x00\x00" + bytes(encode_message(assignment, 0)),
                )
            )
        return ErrorCode.NONE, GroupDescription(
            d.state, CONSUMER_PROTOCOL_TYPE, d.assignor, members
        )

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> tuple[int, list[ListedGroup]]:
        """ListGroups over both kinds of groups, filtered by state and type."""
        states, types = list(states), list(types)
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        error: int = ErrorCode.NONE
        out: list[ListedGroup] = []
        if not wanted_types or CLASSIC_GROUP_TYPE in wanted_types:
            error, out = self.classic.list_groups(states, [CLASSIC_GROUP_TYPE])
        if not wanted_types or CONSUMER_GROUP_TYPE in wanted_types:
            for group in self.groups.values():
                if self.classic.partitions.get(group.partition) is not PartitionStatus.ACTIVE:
                    continue
                state = group.state.value
                if wanted_states and state.lower() not in wanted_states:
                    continue
                out.append(
                    ListedGroup(group.group_id, CONSUMER_PROTOCOL_TYPE, state, CONSUMER_GROUP_TYPE)
                )
        if self.classic.is_loading:
            error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return error, sorted(out, key=lambda g: g.group_id)

    def delete_groups(
        self, group_ids: list[str], respond: Callable[[dict[str, int]], None]
    ) -> None:
        """DeleteGroups over both kinds: consumer groups without members lose their
        offsets and records; the rest goes to the classic coordinator."""
        results: dict[str, int] = {}
        classic_ids = [g for g in group_ids if g not in self.groups]
        mine = list(dict.fromkeys(g for g in group_ids if g in self.groups))
        waiting = len(mine) + (1 if classic_ids else 0)

        def one_done() -> None:
            nonlocal waiting
            waiting -= 1
            if waiting == 0:
                respond(results)

        if waiting == 0:
            respond(results)
            return
        for group_id in mine:
            group = self.groups[group_id]
            error = self.classic.check_group(group_id, require_id=False)
            if error or group.members:
                results[group_id] = error or ErrorCode.NON_EMPTY_GROUP
                one_done()
                continue
            raw = remove_offsets(group_id, group.offsets)
            records = self._group_tombstones(group)
            for record in records:
                self._apply(group, record)
            raw += [encode_record(r) for r in records]
            results[group_id] = ErrorCode.NONE
            logger.info("%sconsumer group %s: deleted", self.tag, group_id)

            def written(code: int, group_id: str = group_id) -> None:
                if code:
                    results[group_id] = group_store_error(code)
                one_done()

            self._write(group.partition, raw, written)
        if classic_ids:

            def classic_done(found: dict[str, int]) -> None:
                results.update(found)
                one_done()

            self.classic.delete_groups(classic_ids, classic_done)

    def _group_tombstones(self, group: ConsumerGroup) -> list[ConsumerRecord]:
        records: list[ConsumerRecord] = []
        for member_id in group.members:
            records += member_removal_records(group.group_id, member_id)
        records += [
            group_record(TARGET_ASSIGNMENT_METADATA, group.group_id),
            group_record(PARTITION_METADATA, group.group_id),
            group_record(GROUP_METADATA, group.group_id),
        ]
        return records

    def prepare_classic_join(self, group_id: str) -> int:
        """Before a classic JoinGroup: NONE if the group id is (now) free for a classic
        group. An empty consumer group turns back into a classic one (offsets kept); one
        with members refuses with INCONSISTENT_GROUP_PROTOCOL."""
        group = self.groups.get(group_id)
        if group is None or self.classic.check_group(group_id):
            return ErrorCode.NONE
        if group.members:
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        offsets = dict(group.offsets)
        records = self._group_tombstones(group)
        for record in records:
            self._apply(group, record)
        classic = ClassicGroup(group_id, group.partition, self.clock())
        classic.offsets = offsets
        self.classic.groups[group_id] = classic
        logger.info(
            "%sgroup %s: empty consumer group becomes a classic group (%d offsets kept)",
            self.tag,
            group_id,
            len(offsets),
        )
        self._write(
            group.partition,
            [encode_record(r) for r in records],
            self._log_failure(group, "turning into a classic group"),
        )
        return ErrorCode.NONE


__all__ = [
    "CONSUMER_GROUP_TYPE",
    "ConsumerGroupConfig",
    "ConsumerGroupCoordinator",
    "ConsumerGroupDescription",
    "ConsumerGroupState",
    "DescribedMember",
    "GroupError",
    "HeartbeatRequest",
    "HeartbeatResult",
    "TopicsFn",
]
