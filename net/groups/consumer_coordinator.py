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
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from kraft.net.groups.assignors import ASSIGNORS, Assignment, MemberSubscription, TopicInfo
from kraft.net.groups.consumer import (
    LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
    ConsumerGroup,
    ConsumerGroupState,
    ConsumerMember,
    MemberState,
    compile_regex,
    is_subset,
    reconcile,
    subscribed_topics,
)
from kraft.net.groups.consumer_records import (
    CURRENT_MEMBER_ASSIGNMENT,
    GROUP_METADATA,
    MEMBER_METADATA,
    PARTITION_METADATA,
    TARGET_ASSIGNMENT_MEMBER,
    TARGET_ASSIGNMENT_METADATA,
    ConsumerKey,
    ConsumerRecord,
    GroupMetadataValue,
    PartitionMetadataValue,
    TargetAssignmentMemberValue,
    TargetAssignmentMetadataValue,
    TopicMetadata,
    decode_record,
    encode_record,
)
from kraft.net.groups.coordinator import (
    CLASSIC_GROUP_TYPE,
    GroupCoordinator,
    GroupDescription,
    ListedGroup,
    MemberDescription,
    PartitionStatus,
    _group_store_error,
)
from kraft.net.groups.offsets import (
    ConsumerGroupOffsets,
    Records,
    remove_offsets,
)
from kraft.net.groups.state import CONSUMER_PROTOCOL_TYPE, ClassicGroup, GroupState
from kraft.net.protocol import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
    ErrorCode,
    encode_message,
)

logger = logging.getLogger(__name__)

CONSUMER_GROUP_TYPE = "consumer"
# The cluster's topics now: name -> (id, name, partition count).
TopicsFn = Callable[[], Mapping[str, TopicMetadata]]


def _kafka_style_id() -> str:
    """A random id shaped like Kafka's Uuid.toString (22 characters of URL-safe base64)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class ConsumerGroupConfig:
    """Kafka's broker configs of KIP-848 consumer groups."""

    session_timeout_ms: int = 45_000  # group.consumer.session.timeout.ms
    heartbeat_interval_ms: int = 5_000  # group.consumer.heartbeat.interval.ms
    max_size: int = 2**31 - 1  # group.consumer.max.size
    assignors: tuple[str, ...] = ("uniform", "range")  # group.consumer.assignors (1st: default)
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes


@dataclass(slots=True)
class HeartbeatRequest:
    """ConsumerGroupHeartbeat. Optional fields are None (or -1) when unchanged since the
    member's previous heartbeat; a join (epoch 0) carries all of them."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: list[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: dict[uuid.UUID, frozenset[int]] | None = None
    client_id: str = ""
    client_host: str = ""
    api_version: int = 0


@dataclass(slots=True)
class HeartbeatResult:
    error: int
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None  # None: unchanged since the last response


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


class GroupError(Exception):
    """Refuses a request: the error code and message the response carries."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _record(
    kind: int, group: str, member_id: str = "", value: object | None = None
) -> ConsumerRecord:
    return ConsumerRecord(ConsumerKey(kind, group, member_id), value)  # type: ignore[arg-type]


def _member_removal_records(group_id: str, member_id: str) -> list[ConsumerRecord]:
    """Kafka's order: current assignment, target assignment, then the member itself."""
    return [
        _record(CURRENT_MEMBER_ASSIGNMENT, group_id, member_id),
        _record(TARGET_ASSIGNMENT_MEMBER, group_id, member_id),
        _record(MEMBER_METADATA, group_id, member_id),
    ]


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


@dataclass(slots=True)
class _Join:
    """What one join or heartbeat works on, step by step (see `_join_or_heartbeat`)."""

    group: ConsumerGroup
    member_id: str
    targets: dict[str, Assignment]  # the target assignment, as this request changes it
    member: ConsumerMember | None = None  # as it was (None: a new member)
    replaced: ConsumerMember | None = None  # a static member's previous incarnation
    updated: ConsumerMember | None = None  # with the request's changes
    records: list[ConsumerRecord] = field(default_factory=list)


class ConsumerGroupCoordinator(ConsumerGroupOffsets):
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

    # ====================================================== ConsumerGroupHeartbeat

    def heartbeat(self, req: HeartbeatRequest, respond: Callable[[HeartbeatResult], None]) -> None:
        error = self.classic.check_group(req.group_id)
        if error:
            respond(HeartbeatResult(error))
            return
        try:
            self._validate(req)
            if req.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                group, records, result = self._leave(req)
            else:
                group, records, result = self._join_or_heartbeat(req)
        except GroupError as e:
            respond(HeartbeatResult(e.code, e.message))
            return

        def done(code: int) -> None:
            if code:
                respond(HeartbeatResult(_group_store_error(code)))
            else:
                respond(result)

        self._commit(group, records, done)

    def _validate(self, req: HeartbeatRequest) -> None:
        """Kafka's checks of a ConsumerGroupHeartbeat before it looks at the group."""

        def invalid(message: str) -> GroupError:
            return GroupError(ErrorCode.INVALID_REQUEST, message)

        if not req.group_id:
            raise invalid("GroupId can't be empty.")
        if req.instance_id == "":
            raise invalid("InstanceId can't be empty.")
        if req.rack_id == "":
            raise invalid("RackId can't be empty.")
        epoch = req.member_epoch
        if epoch == 0:
            if not req.member_id and req.api_version >= 1:
                raise invalid("MemberId can't be empty.")
            if req.rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if req.owned is None or any(req.owned.values()):
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and not req.subscribed_topic_regex:
                raise invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
                )
        elif epoch > 0 or epoch == LEAVE_GROUP_MEMBER_EPOCH:
            if not req.member_id:
                raise invalid("MemberId can't be empty.")
        elif epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if not req.member_id:
                raise invalid("MemberId can't be empty.")
            if req.instance_id is None:
                raise invalid("InstanceId can't be null.")
        else:
            raise invalid(f"MemberEpoch {epoch} is invalid.")
        if req.server_assignor is not None and req.server_assignor not in self.config.assignors:
            raise GroupError(
                ErrorCode.UNSUPPORTED_ASSIGNOR,
                f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                f"{', '.join(self.config.assignors)}.",
            )
        if req.subscribed_topic_regex:
            try:
                compile_regex(req.subscribed_topic_regex)
            except re.error as e:
                raise GroupError(
                    ErrorCode.INVALID_REGULAR_EXPRESSION,
                    f"SubscribedTopicRegex {req.subscribed_topic_regex!r} is not valid: {e}",
                ) from None

    def _join_or_heartbeat(
        self, req: HeartbeatRequest
    ) -> tuple[ConsumerGroup, list[ConsumerRecord], HeartbeatResult]:
        """A join (epoch 0) or heartbeat, in Kafka's steps: find the group; find and fence
        the member; update its subscription; compute the target assignment (a new group epoch
        if the members or their subscriptions changed); reconcile the member towards its
        target; answer. Records describe every change; state changes only as they are
        replayed (`_commit`)."""
        group = self._group_to_join(req)
        join = _Join(group, req.member_id or self.new_id(), dict(group.target))
        self._find_member(join, req)
        join.updated = self._updated_member(join, req)
        subscription_changed = self._record_member_metadata(join)
        members = dict(group.members)
        if join.replaced is not None:
            del members[join.replaced.member_id]
        members[join.member_id] = join.updated
        group_epoch, target_epoch, target_records, join.targets = self._maybe_new_epoch(
            group, members, join.targets, force=subscription_changed
        )
        join.records += target_records
        reconciled = self._reconcile(join, target_epoch, req.owned)
        self._log_member_changes(join, reconciled, group_epoch)
        result = self._heartbeat_result(join, reconciled, req)
        self._schedule_member_timers(join, reconciled)
        return group, join.records, result

    def _group_to_join(self, req: HeartbeatRequest) -> ConsumerGroup:
        """The group, or a new one for a join; an empty classic group of the same id is
        converted (see the module docstring), one with members refused."""
        group_id = req.group_id
        group = self.groups.get(group_id)
        if group is not None:
            return group
        if req.member_epoch != 0:
            raise GroupError(
                ErrorCode.UNKNOWN_MEMBER_ID,
                f"Member {req.member_id} is not a member of group {group_id}.",
            )
        classic = self.classic.groups.get(group_id)
        if classic is not None and not _is_empty_classic(classic):
            raise GroupError(
                ErrorCode.GROUP_ID_NOT_FOUND,
                f"Group {group_id} is not a consumer group: it is a classic group with members.",
            )
        return ConsumerGroup(group_id, self.classic.partition_of(group_id))

    def _find_member(self, join: _Join, req: HeartbeatRequest) -> None:
        """Sets `join.member` (None: a new member) and, for a static member rejoining under
        a new id, `join.replaced`; refuses unknown, fenced or epoch-mismatched members and
        joins beyond group.consumer.max.size."""
        group, member_id, epoch = join.group, join.member_id, req.member_epoch
        if req.instance_id is None:
            join.member = group.members.get(member_id)
            if join.member is None and epoch != 0:
                raise GroupError(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Member {member_id} is not a member of group {group.group_id}.",
                )
        elif epoch == 0:
            self._find_static_member_joining(join, req.instance_id)
        else:
            existing = group.static_member(req.instance_id)
            if existing is None:
                raise GroupError(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Instance id {req.instance_id} is unknown in group {group.group_id}.",
                )
            if existing.member_id != member_id:
                raise GroupError(
                    ErrorCode.FENCED_INSTANCE_ID,
                    f"Static member {member_id} with instance id {req.instance_id} was "
                    f"fenced by member {existing.member_id}.",
                )
            join.member = existing
        if join.member is None:
            if len(group.members) >= self.config.max_size:
                raise GroupError(
                    ErrorCode.GROUP_MAX_SIZE_REACHED,
                    f"The consumer group has reached its maximum capacity of "
                    f"{self.config.max_size} members.",
                )
        elif epoch != 0:
            _check_member_epoch(join.member, epoch, req.owned)

    def _find_static_member_joining(self, join: _Join, instance_id: str) -> None:
        group_id, member_id = join.group.group_id, join.member_id
        existing = join.group.static_member(instance_id)
        if existing is None or existing.member_id == member_id:
            join.member = existing
            return
        if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise GroupError(
                ErrorCode.UNRELEASED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} cannot join the "
                f"group because the instance id is owned by member {existing.member_id}.",
            )
        # The static member comes back under a new member id: it takes over the old
        # member's assignment, without a new group epoch.
        join.replaced = existing
        join.member = replace(existing, member_id=member_id)
        join.records += _member_removal_records(group_id, existing.member_id)
        target = join.targets.pop(existing.member_id, {})
        join.targets[member_id] = target
        join.records.append(
            _record(
                TARGET_ASSIGNMENT_MEMBER, group_id, member_id, TargetAssignmentMemberValue(target)
            )
        )

    @staticmethod
    def _updated_member(join: _Join, req: HeartbeatRequest) -> ConsumerMember:
        """The member with what the request changes (fields it leaves out are unchanged)."""
        member = join.member if join.member is not None else ConsumerMember(join.member_id)
        return replace(
            member,
            instance_id=req.instance_id if req.instance_id is not None else member.instance_id,
            rack_id=req.rack_id if req.rack_id is not None else member.rack_id,
            client_id=req.client_id,
            client_host=req.client_host,
            rebalance_timeout_ms=(
                req.rebalance_timeout_ms
                if req.rebalance_timeout_ms != -1
                else member.rebalance_timeout_ms
            ),
            server_assignor=(
                req.server_assignor if req.server_assignor is not None else member.server_assignor
            ),
            subscribed_topic_names=(
                tuple(sorted(set(req.subscribed_topic_names)))
                if req.subscribed_topic_names is not None
                else member.subscribed_topic_names
            ),
            subscribed_topic_regex=(
                (req.subscribed_topic_regex or None)
                if req.subscribed_topic_regex is not None
                else member.subscribed_topic_regex
            ),
        )

    @staticmethod
    def _record_member_metadata(join: _Join) -> bool:
        """Records the member's metadata if it changed; whether its subscription did (which
        forces a new group epoch)."""
        member, updated = join.member, join.updated
        assert updated is not None
        if (
            member is None
            or join.replaced is not None
            or (updated.metadata_value() != member.metadata_value())
        ):
            join.records.append(
                _record(
                    MEMBER_METADATA, join.group.group_id, join.member_id, updated.metadata_value()
                )
            )
        return member is None or (
            updated.subscribed_topic_names,
            updated.subscribed_topic_regex,
            updated.server_assignor,
        ) != (member.subscribed_topic_names, member.subscribed_topic_regex, member.server_assignor)

    @staticmethod
    def _reconcile(join: _Join, target_epoch: int, owned: Assignment | None) -> ConsumerMember:
        """The member's next state towards its target; records its assignment if changed."""
        updated, member = join.updated, join.member
        assert updated is not None
        reconciled = updated
        if (
            updated.state is not MemberState.STABLE
            or updated.member_epoch != target_epoch
            or owned is not None
        ):
            reconciled = reconcile(
                updated,
                target_epoch,
                join.targets.get(join.member_id, {}),
                join.group.owner_of,
                owned,
            )
        if (
            member is None
            or join.replaced is not None
            or reconciled.assignment_value() != member.assignment_value()
        ):
            join.records.append(
                _record(
                    CURRENT_MEMBER_ASSIGNMENT,
                    join.group.group_id,
                    join.member_id,
                    reconciled.assignment_value(),
                )
            )
        return reconciled

    def _log_member_changes(
        self, join: _Join, reconciled: ConsumerMember, group_epoch: int
    ) -> None:
        group_id, member_id, member = join.group.group_id, join.member_id, join.member
        if member is None:
            logger.info(
                "%sconsumer group %s: member %s joins (instance %s, epoch %d)",
                self.tag,
                group_id,
                member_id,
                reconciled.instance_id,
                group_epoch,
            )
        elif join.replaced is not None:
            logger.info(
                "%sconsumer group %s: static member %s rejoins as %s",
                self.tag,
                group_id,
                reconciled.instance_id,
                member_id,
            )
        before = member if member is not None else ConsumerMember(member_id)
        if reconciled.member_epoch != before.member_epoch or reconciled.state != before.state:
            logger.info(
                "%sconsumer group %s: member %s at epoch %d, %s",
                self.tag,
                group_id,
                member_id,
                reconciled.member_epoch,
                reconciled.state.name,
            )

    def _heartbeat_result(
        self, join: _Join, reconciled: ConsumerMember, req: HeartbeatRequest
    ) -> HeartbeatResult:
        """The answer: the assignment in full on a join or a full request (KIP-848: one
        carrying every field), else only when it changed."""
        before = join.member if join.member is not None else ConsumerMember(join.member_id)
        full = req.member_epoch == 0 or (
            req.rebalance_timeout_ms != -1
            and req.subscribed_topic_names is not None
            and req.owned is not None
        )
        return HeartbeatResult(
            ErrorCode.NONE,
            member_id=join.member_id,
            member_epoch=reconciled.member_epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            assignment=(
                reconciled.assigned if full or reconciled.assigned != before.assigned else None
            ),
        )

    def _schedule_member_timers(self, join: _Join, reconciled: ConsumerMember) -> None:
        """Register a new group; restart the member's session; watch a revocation."""
        group, member_id = join.group, join.member_id
        before = join.member if join.member is not None else ConsumerMember(member_id)
        if self.groups.get(group.group_id) is not group:
            self._register(group)
        if join.replaced is not None:
            self._cancel_member_timers(group, join.replaced.member_id)
        self._schedule_session(group, member_id)
        if reconciled.assignment_value() != before.assignment_value() or join.replaced is not None:
            if reconciled.state is MemberState.UNREVOKED_PARTITIONS:
                self._schedule_revocation(group, reconciled)
            else:
                self.classic.timer.cancel(("consumer-revocation", group.group_id, member_id))

    def _maybe_new_epoch(
        self,
        group: ConsumerGroup,
        members: Mapping[str, ConsumerMember],
        targets: dict[str, Assignment],
        *,
        force: bool,
        check_metadata: bool = False,
    ) -> tuple[int, int, list[ConsumerRecord], dict[str, Assignment]]:
        """Records of a new group epoch and its target assignment when the topics the
        members subscribe to changed, or `force` (the members or their subscriptions did):
        (group epoch, assignment epoch, records, targets). Without `force` the topics are
        only looked at once the metadata listener says they changed."""
        records: list[ConsumerRecord] = []
        metadata = (
            self._subscription_metadata(group, members.values())
            if force or check_metadata
            else group.subscription_metadata
        )
        bump = force or metadata != group.subscription_metadata
        group_epoch = group.group_epoch + 1 if bump else group.group_epoch
        if metadata != group.subscription_metadata:
            records.append(
                _record(
                    PARTITION_METADATA,
                    group.group_id,
                    value=PartitionMetadataValue(group_epoch, tuple(metadata.values())),
                )
            )
        if bump:
            records.append(
                _record(GROUP_METADATA, group.group_id, value=GroupMetadataValue(group_epoch))
            )
        if group_epoch <= group.assignment_epoch:
            return group_epoch, group.assignment_epoch, records, targets
        assignor_name = group.preferred_assignor(members.values(), self.config.assignors[0])
        assignor = ASSIGNORS[assignor_name]
        infos = {t.topic_id: TopicInfo(t.topic_id, t.name, t.partitions) for t in metadata.values()}
        subscriptions = [
            MemberSubscription(
                m.member_id, group.member_topics(m, metadata), m.instance_id, m.rack_id
            )
            for m in members.values()
        ]
        computed = assignor.assign(subscriptions, infos, targets)
        new_targets: dict[str, Assignment] = {}
        for member_id in members:
            target = computed.get(member_id, {})
            new_targets[member_id] = target
            if target != targets.get(member_id):
                records.append(
                    _record(
                        TARGET_ASSIGNMENT_MEMBER,
                        group.group_id,
                        member_id,
                        TargetAssignmentMemberValue(target),
                    )
                )
        records.append(
            _record(
                TARGET_ASSIGNMENT_METADATA,
                group.group_id,
                value=TargetAssignmentMetadataValue(group_epoch),
            )
        )
        logger.info(
            "%sconsumer group %s: epoch %d, %d members, target assignment by %s",
            self.tag,
            group.group_id,
            group_epoch,
            len(members),
            assignor_name,
        )
        return group_epoch, group_epoch, records, new_targets

    def _subscription_metadata(
        self, group: ConsumerGroup, members: Iterable[ConsumerMember]
    ) -> dict[str, TopicMetadata]:
        topics = self.topics()
        names = group.subscribed_topics(members, topics.keys())
        return {name: topics[name] for name in sorted(names) if name in topics}

    def _leave(
        self, req: HeartbeatRequest
    ) -> tuple[ConsumerGroup, list[ConsumerRecord], HeartbeatResult]:
        group = self.groups.get(req.group_id)
        member = None
        if group is not None:
            if req.instance_id is not None:
                member = group.static_member(req.instance_id)
                if member is not None and member.member_id != req.member_id:
                    raise GroupError(
                        ErrorCode.FENCED_INSTANCE_ID,
                        f"Static member {req.member_id} with instance id {req.instance_id} "
                        f"was fenced by member {member.member_id}.",
                    )
            else:
                member = group.members.get(req.member_id)
        if group is None or member is None:
            raise GroupError(
                ErrorCode.UNKNOWN_MEMBER_ID,
                f"Member {req.member_id} is not a member of group {req.group_id}.",
            )
        result = HeartbeatResult(
            ErrorCode.NONE, member_id=member.member_id, member_epoch=req.member_epoch
        )
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            # Gone for a while: it keeps its assignment (nobody else gets it) until its
            # session times out; what it was revoking is free at once.
            away = replace(
                member.with_epoch(LEAVE_GROUP_STATIC_MEMBER_EPOCH), pending_revocation={}
            )
            self.classic.timer.cancel(("consumer-revocation", group.group_id, member.member_id))
            logger.info(
                "%sconsumer group %s: static member %s (%s) leaves temporarily",
                self.tag,
                group.group_id,
                member.instance_id,
                member.member_id,
            )
            return (
                group,
                [
                    _record(
                        CURRENT_MEMBER_ASSIGNMENT,
                        group.group_id,
                        member.member_id,
                        away.assignment_value(),
                    )
                ],
                result,
            )
        return group, self._fence(group, member, "left the group"), result

    def _fence(
        self, group: ConsumerGroup, member: ConsumerMember, reason: str
    ) -> list[ConsumerRecord]:
        """Records removing a member and starting the epoch without it."""
        logger.info(
            "%sconsumer group %s: member %s %s; removed",
            self.tag,
            group.group_id,
            member.member_id,
            reason,
        )
        self._cancel_member_timers(group, member.member_id)
        records = _member_removal_records(group.group_id, member.member_id)
        members = {k: v for k, v in group.members.items() if k != member.member_id}
        targets = {k: v for k, v in group.target.items() if k != member.member_id}
        records += self._maybe_new_epoch(group, members, targets, force=True)[2]
        return records

    # =========================================================== timers

    def _schedule_session(self, group: ConsumerGroup, member_id: str) -> None:
        self.classic.timer.schedule(
            ("consumer-session", group.group_id, member_id),
            self.config.session_timeout_ms,
            lambda: self._session_expired(group, member_id),
        )

    def _session_expired(self, group: ConsumerGroup, member_id: str) -> None:
        member = group.members.get(member_id)
        if self.groups.get(group.group_id) is not group or member is None:
            return
        self._commit(
            group,
            self._fence(group, member, "missed its session timeout"),
            self._log_failure(group, "removing an expired member"),
        )

    def _schedule_revocation(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """A member that does not revoke in its rebalance timeout is removed (Kafka)."""
        epoch = member.member_epoch
        member_id = member.member_id

        def expired() -> None:
            current = group.members.get(member_id)
            if (
                self.groups.get(group.group_id) is not group
                or current is None
                or current.state is not MemberState.UNREVOKED_PARTITIONS
                or current.member_epoch != epoch
            ):
                return
            self._commit(
                group,
                self._fence(group, current, "did not revoke its partitions in time"),
                self._log_failure(group, "removing a member that did not revoke"),
            )

        timeout = member.rebalance_timeout_ms if member.rebalance_timeout_ms > 0 else 300_000
        self.classic.timer.schedule(
            ("consumer-revocation", group.group_id, member_id), timeout, expired
        )

    def _cancel_member_timers(self, group: ConsumerGroup, member_id: str) -> None:
        self.classic.timer.cancel(("consumer-session", group.group_id, member_id))
        self.classic.timer.cancel(("consumer-revocation", group.group_id, member_id))

    def _cancel_timers(self, group: ConsumerGroup) -> None:
        for member_id in group.members:
            self._cancel_member_timers(group, member_id)

    def _log_failure(self, group: ConsumerGroup, what: str) -> Callable[[int], None]:
        def done(code: int) -> None:
            if code:
                logger.warning(
                    "%sconsumer group %s: %s failed with error %d",
                    self.tag,
                    group.group_id,
                    what,
                    code,
                )

        return done

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
        if not _is_empty_classic(classic):
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
                    results[group_id] = _group_store_error(code)
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
            records += _member_removal_records(group.group_id, member_id)
        records += [
            _record(TARGET_ASSIGNMENT_METADATA, group.group_id),
            _record(PARTITION_METADATA, group.group_id),
            _record(GROUP_METADATA, group.group_id),
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


def _is_empty_classic(group: ClassicGroup) -> bool:
    return (
        group.state in (GroupState.EMPTY, GroupState.DEAD)
        and not group.members
        and not group.pending_members
    )


def _check_member_epoch(member: ConsumerMember, epoch: int, owned: Assignment | None) -> None:
    """Kafka's fencing: a member must heartbeat with its epoch, or with its previous one if
    the response that moved it on may have been lost (then it owns no more than it has)."""
    if epoch > member.member_epoch:
        raise GroupError(
            ErrorCode.FENCED_MEMBER_EPOCH,
            f"The consumer group member has a greater member epoch ({epoch}) than the one "
            f"known by the group coordinator ({member.member_epoch}). The member must abandon "
            "all its partitions and rejoin.",
        )
    if epoch < member.member_epoch and (
        epoch != member.previous_member_epoch
        or owned is None
        or not is_subset(owned, member.assigned)
    ):
        raise GroupError(
            ErrorCode.FENCED_MEMBER_EPOCH,
            f"The consumer group member has a smaller member epoch ({epoch}) than the one "
            f"known by the group coordinator ({member.member_epoch}). The member must abandon "
            "all its partitions and rejoin.",
        )


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
]
