"""ConsumerGroupHeartbeat (KIP-848): the member protocol of consumer groups.

A member joins (epoch 0), heartbeats and leaves (epoch -1, or -2 for a static member that
will come back) through one request. `ConsumerGroupHeartbeats` is that half of the
`ConsumerGroupCoordinator` (a mixin; the coordinator provides the groups, the records' replay
and write, and the group registry):

- validation of the request (Kafka's messages, word for word);
- a join or heartbeat in Kafka's steps (`_join_or_heartbeat`): find the group; find and
  fence the member; update its subscription; compute the target assignment (a new group
  epoch when the members or their subscriptions changed, `_maybe_new_epoch`); reconcile the
  member towards its target (`consumer.reconcile`); answer;
- leaving and fencing, and the two timers that fence: the session timeout and the
  rebalance timeout of a member that does not revoke what it must.

Every step computes records; the group changes only as they are replayed (`_commit`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from kraft.net.groups.assignors import ASSIGNORS, Assignment, MemberSubscription, TopicInfo
from kraft.net.groups.common import ClassicGroups, ConsumerGroupConfig, group_store_error
from kraft.net.groups.consumer import (
    LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
    ConsumerGroup,
    ConsumerMember,
    GroupError,
    HeartbeatRequest,
    HeartbeatResult,
    MemberState,
    check_member_epoch,
    compile_regex,
    group_record,
    is_empty_classic,
    member_removal_records,
    reconcile,
)
from kraft.net.groups.consumer_records import (
    CURRENT_MEMBER_ASSIGNMENT,
    GROUP_METADATA,
    MEMBER_METADATA,
    PARTITION_METADATA,
    TARGET_ASSIGNMENT_MEMBER,
    TARGET_ASSIGNMENT_METADATA,
    ConsumerRecord,
    GroupMetadataValue,
    PartitionMetadataValue,
    TargetAssignmentMemberValue,
    TargetAssignmentMetadataValue,
    TopicMetadata,
)
from kraft.net.protocol import ErrorCode

logger = logging.getLogger(__name__)

# The cluster's topics now: name -> (id, name, partition count).
TopicsFn = Callable[[], Mapping[str, TopicMetadata]]


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


class ConsumerGroupHeartbeats:
    """ConsumerGroupHeartbeat: the member protocol half of `ConsumerGroupCoordinator`, which
    provides the state and hooks below."""

    classic: ClassicGroups
    config: ConsumerGroupConfig
    topics: TopicsFn
    new_id: Callable[[], str]
    tag: str
    groups: dict[str, ConsumerGroup]

    def _commit(
        self, group: ConsumerGroup, records: list[ConsumerRecord], done: Callable[[int], None]
    ) -> None:
        raise NotImplementedError

    def _register(self, group: ConsumerGroup) -> None:
        raise NotImplementedError

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
                respond(HeartbeatResult(group_store_error(code)))
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
        if classic is not None and not is_empty_classic(classic):
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
            check_member_epoch(join.member, epoch, req.owned)

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
        join.records += member_removal_records(group_id, existing.member_id)
        target = join.targets.pop(existing.member_id, {})
        join.targets[member_id] = target
        join.records.append(
            group_record(
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
                group_record(
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
                group_record(
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
                group_record(
                    PARTITION_METADATA,
                    group.group_id,
                    value=PartitionMetadataValue(group_epoch, tuple(metadata.values())),
                )
            )
        if bump:
            records.append(
                group_record(GROUP_METADATA, group.group_id, value=GroupMetadataValue(group_epoch))
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
                    group_record(
                        TARGET_ASSIGNMENT_MEMBER,
                        group.group_id,
                        member_id,
                        TargetAssignmentMemberValue(target),
                    )
                )
        records.append(
            group_record(
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
                    group_record(
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
        records = member_removal_records(group.group_id, member.member_id)
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
