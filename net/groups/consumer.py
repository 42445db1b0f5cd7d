"""One KIP-848 consumer group: members, epochs, target assignment, and each member's
reconciliation towards it (Kafka's ConsumerGroup, ConsumerGroupMember and
CurrentAssignmentBuilder).

Epochs:

- the *group epoch* grows whenever what the assignment depends on changes: a member joins
  or leaves, a subscription or server assignor changes, or the subscribed topics change
  (created, deleted, partitions added);
- the *assignment epoch* is the group epoch the target assignment was computed for (the
  coordinator computes it at once, so after every operation they are equal);
- a *member epoch* is the assignment epoch the member has reconciled to. A member moves to a
  new epoch only after revoking every partition it must give up; it gets a partition only
  once that partition's previous owner has revoked it (until then the member waits in
  UNRELEASED_PARTITIONS). So no partition is ever owned by two members.

Member states (Kafka's MemberState; the byte is what the records store)::

    STABLE                 at the target epoch, owns its target (or waits for nothing)
    UNREVOKED_PARTITIONS   must revoke `pending_revocation` before its epoch can move
    UNRELEASED_PARTITIONS  at the target epoch, waits for partitions others still own

Group state (derived): Empty (no members), Assigning (group epoch ahead of the assignment
epoch), Reconciling (a member is not STABLE at the assignment epoch), Stable.

State changes only through `replay(record)`: the coordinator computes the records of an
operation from the current state, then replays them, exactly as it replays the log when it
loads the group. Live and reloaded groups are therefore the same.

Also here, below the coordinator and its member-protocol part that both use them: the
heartbeat's request and result, `GroupError`, the records that remove a member, and the
member-epoch fencing rule.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from kraft.net.groups.assignors import Assignment
from kraft.net.groups.consumer_records import (
    CURRENT_MEMBER_ASSIGNMENT,
    GROUP_METADATA,
    MEMBER_METADATA,
    PARTITION_METADATA,
    TARGET_ASSIGNMENT_MEMBER,
    TARGET_ASSIGNMENT_METADATA,
    ConsumerKey,
    ConsumerRecord,
    CurrentAssignmentValue,
    GroupMetadataValue,
    MemberMetadataValue,
    PartitionMetadataValue,
    TargetAssignmentMemberValue,
    TargetAssignmentMetadataValue,
    TopicMetadata,
)
from kraft.net.groups.state import ClassicGroup, CommittedOffset, GroupState
from kraft.net.protocol import ErrorCode

logger = logging.getLogger(__name__)

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
# Topics a regular expression never matches (Kafka's internal topics).
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


class MemberState(enum.IntEnum):
    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


def _clean(assignment: Assignment) -> dict[uuid.UUID, frozenset[int]]:
    return {t: frozenset(ps) for t, ps in assignment.items() if ps}


def assignment_partitions(assignment: Assignment) -> set[tuple[uuid.UUID, int]]:
    return {(t, p) for t, ps in assignment.items() for p in ps}


def is_subset(owned: Assignment, assigned: Assignment) -> bool:
    return all(ps <= assigned.get(t, frozenset()) for t, ps in owned.items())


@dataclass(frozen=True, slots=True)
class ConsumerMember:
    """A member as its records describe it: subscription metadata (MemberMetadata) and its
    current assignment (CurrentMemberAssignment). Immutable: updates make a new one."""

    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)

    def with_epoch(self, epoch: int) -> ConsumerMember:
        return replace(self, member_epoch=epoch, previous_member_epoch=self.member_epoch)

    def metadata_value(self) -> MemberMetadataValue:
        return MemberMetadataValue(
            self.instance_id,
            self.rack_id,
            self.client_id,
            self.client_host,
            self.subscribed_topic_names,
            self.subscribed_topic_regex,
            self.rebalance_timeout_ms,
            self.server_assignor,
        )

    def assignment_value(self) -> CurrentAssignmentValue:
        return CurrentAssignmentValue(
            self.member_epoch,
            self.previous_member_epoch,
            int(self.state),
            self.assigned,
            self.pending_revocation,
        )

    def owned_partitions(self) -> set[tuple[uuid.UUID, int]]:
        """What the member may still be consuming: assigned and not yet revoked."""
        return assignment_partitions(self.assigned) | assignment_partitions(self.pending_revocation)


def compile_regex(pattern: str) -> re.Pattern[str]:
    """A subscription regex (Kafka uses RE2/J; Python's syntax agrees on the common part).
    Raises re.error for an invalid one."""
    return re.compile(pattern)


class ConsumerGroup:
    def __init__(self, group_id: str, partition: int) -> None:
        self.group_id = group_id
        self.partition = partition  # of __consumer_offsets, where its records live
        self.group_epoch = 0
        self.assignment_epoch = 0
        # Topic name -> metadata of the topics the members subscribe to, as of the last
        # group epoch: a difference with the cluster's metadata means a new epoch.
        self.subscription_metadata: dict[str, TopicMetadata] = {}
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.target: dict[str, Assignment] = {}
        # (topic id, partition) -> the member that owns it (assigned or revoking).
        self.owners: dict[tuple[uuid.UUID, int], str] = {}
        self.offsets: dict[tuple[str, int], CommittedOffset] = {}
        self.dead = False

    def __repr__(self) -> str:
        return (
            f"ConsumerGroup({self.group_id!r}, {self.state.value}, epoch {self.group_epoch}, "
            f"{len(self.members)} members)"
        )

    # ----------------------------------------------------------------- derived

    @property
    def state(self) -> ConsumerGroupState:
        if self.dead:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for m in self.members.values():
            if m.state is not MemberState.STABLE or m.member_epoch != self.assignment_epoch:
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def owner_of(self, topic_id: uuid.UUID, partition: int) -> str | None:
        return self.owners.get((topic_id, partition))

    def static_member(self, instance_id: str) -> ConsumerMember | None:
        member_id = self.static_members.get(instance_id)
        return self.members.get(member_id) if member_id is not None else None

    def preferred_assignor(self, members: Iterable[ConsumerMember], default: str) -> str:
        """The server assignor most members ask for (ties: the one asked for first); the
        default when none asks."""
        votes: dict[str, int] = {}
        for m in members:
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return default
        best = max(votes.values())
        return next(name for name, count in votes.items() if count == best)

    # ----------------------------------------------------------------- replay

    def replay(self, record: ConsumerRecord) -> None:
        """Apply one record (GroupMetadata tombstones, which delete the whole group, are the
        coordinator's to handle)."""
        key, value = record.key, record.value
        if key.type == GROUP_METADATA:
            if isinstance(value, GroupMetadataValue):
                self.group_epoch = value.epoch
        elif key.type == PARTITION_METADATA:
            self.subscription_metadata = (
                {t.name: t for t in value.topics}
                if isinstance(value, PartitionMetadataValue)
                else {}
            )
        elif key.type == MEMBER_METADATA:
            if isinstance(value, MemberMetadataValue):
                known = self.members.get(key.member_id) or ConsumerMember(key.member_id)
                self._put_member(
                    replace(
                        known,
                        instance_id=value.instance_id,
                        rack_id=value.rack_id,
                        client_id=value.client_id,
                        client_host=value.client_host,
                        subscribed_topic_names=tuple(value.subscribed_topic_names),
                        subscribed_topic_regex=value.subscribed_topic_regex,
                        rebalance_timeout_ms=value.rebalance_timeout_ms,
                        server_assignor=value.server_assignor,
                    )
                )
            else:
                self._remove_member(key.member_id)
        elif key.type == TARGET_ASSIGNMENT_METADATA:
            self.assignment_epoch = (
                value.assignment_epoch if isinstance(value, TargetAssignmentMetadataValue) else 0
            )
        elif key.type == TARGET_ASSIGNMENT_MEMBER:
            if isinstance(value, TargetAssignmentMemberValue):
                self.target[key.member_id] = _clean(value.partitions)
            else:
                self.target.pop(key.member_id, None)
        elif key.type == CURRENT_MEMBER_ASSIGNMENT:
            old = self.members.get(key.member_id)
            if isinstance(value, CurrentAssignmentValue):
                base = old or ConsumerMember(key.member_id)
                try:
                    state = MemberState(value.state)
                except ValueError:
                    state = MemberState.UNKNOWN
                self._put_member(
                    replace(
                        base,
                        member_epoch=value.member_epoch,
                        previous_member_epoch=value.previous_member_epoch,
                        state=state,
                        assigned=_clean(value.assigned),
                        pending_revocation=_clean(value.pending_revocation),
                    )
                )
            elif old is not None:
                self._put_member(
                    replace(
                        old,
                        member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                        previous_member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                        state=MemberState.STABLE,
                        assigned={},
                        pending_revocation={},
                    )
                )

    def _put_member(self, member: ConsumerMember) -> None:
        old = self.members.get(member.member_id)
        if old is not None:
            self._release(old)
            if old.instance_id is not None and old.instance_id != member.instance_id:
                if self.static_members.get(old.instance_id) == old.member_id:
                    del self.static_members[old.instance_id]
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        for tp in member.owned_partitions():
            holder = self.owners.get(tp)
            if holder is not None and holder != member.member_id:
                logger.warning(
                    "group %s: partition %s of member %s is also owned by %s",
                    self.group_id,
                    tp,
                    member.member_id,
                    holder,
                )
            self.owners[tp] = member.member_id

    def _remove_member(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is None:
            return
        self._release(member)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == (
            member_id
        ):
            del self.static_members[member.instance_id]

    def _release(self, member: ConsumerMember) -> None:
        for tp in member.owned_partitions():
            if self.owners.get(tp) == member.member_id:
                del self.owners[tp]

    # ------------------------------------------------------------ subscriptions

    def subscribed_topics(
        self, members: Iterable[ConsumerMember], topic_names: Iterable[str]
    ) -> set[str]:
        return subscribed_topics(members, topic_names)

    def member_topics(
        self, member: ConsumerMember, metadata: Mapping[str, TopicMetadata]
    ) -> frozenset[uuid.UUID]:
        """Ids of the existing topics one member subscribes to."""
        names = self.subscribed_topics([member], metadata)
        return frozenset(metadata[n].topic_id for n in names if n in metadata)

    def is_subscribed_to(self, topic: str) -> bool:
        return topic in self.subscription_metadata or topic in self.subscribed_topics(
            self.members.values(), [topic]
        )


def subscribed_topics(members: Iterable[ConsumerMember], topic_names: Iterable[str]) -> set[str]:
    """Topic names the members subscribe to, by name or by regex (resolved against
    `topic_names`, the cluster's topics)."""
    out: set[str] = set()
    patterns = []
    for m in members:
        out.update(m.subscribed_topic_names)
        if m.subscribed_topic_regex:
            try:
                patterns.append(compile_regex(m.subscribed_topic_regex))
            except re.error:
                continue  # refused when it arrived; only a foreign log can hold one
    if patterns:
        for name in topic_names:
            if name not in INTERNAL_TOPICS and any(p.fullmatch(name) for p in patterns):
                out.add(name)
    return out


# ------------------------------------------------------------------ reconciliation


def reconcile(
    member: ConsumerMember,
    target_epoch: int,
    target: Assignment,
    owner_of: Callable[[uuid.UUID, int], str | None],
    owned: Assignment | None,
) -> ConsumerMember:
    """The member's next state towards `target` at `target_epoch` (Kafka's
    CurrentAssignmentBuilder). `owned` is what the member reported owning in this
    heartbeat (None: not reported, so it is assumed to still own everything)."""

    def still_owns(partitions: Assignment) -> bool:
        if owned is None:
            return True
        return any(ps & partitions.get(t, frozenset()) for t, ps in owned.items())

    if member.state is MemberState.STABLE and member.member_epoch == target_epoch:
        return member
    if member.state is MemberState.UNREVOKED_PARTITIONS and still_owns(member.pending_revocation):
        return member
    # Otherwise (also UNRELEASED_PARTITIONS, and UNKNOWN from a newer log) start over from
    # the target.
    return _next_assignment(member, member.member_epoch, target_epoch, target, owner_of, owned)


def _next_assignment(
    member: ConsumerMember,
    member_epoch: int,
    target_epoch: int,
    target: Assignment,
    owner_of: Callable[[uuid.UUID, int], str | None],
    owned: Assignment | None,
) -> ConsumerMember:
    assigned: dict[uuid.UUID, frozenset[int]] = {}
    revoking: dict[uuid.UUID, frozenset[int]] = {}
    pending: dict[uuid.UUID, frozenset[int]] = {}
    unreleased = False
    for topic_id in set(target) | set(member.assigned):
        want = target.get(topic_id, frozenset())
        have = member.assigned.get(topic_id, frozenset())
        keep = have & want
        give_up = have - keep
        missing = want - keep
        # A partition someone (possibly this member, while revoking it) still owns must be
        # released first.
        free = frozenset(p for p in missing if owner_of(topic_id, p) is None)
        if len(free) != len(missing):
            unreleased = True
        if keep:
            assigned[topic_id] = keep
        if give_up:
            revoking[topic_id] = give_up
        if free:
            pending[topic_id] = free
    still_owns_revoked = owned is None or any(
        ps & revoking.get(t, frozenset()) for t, ps in owned.items()
    )
    if revoking and still_owns_revoked:
        # Revoke first, at the current epoch.
        return replace(
            member.with_epoch(member_epoch),
            state=MemberState.UNREVOKED_PARTITIONS,
            assigned=assigned,
            pending_revocation=revoking,
        )
    for topic_id, ps in pending.items():
        assigned[topic_id] = assigned.get(topic_id, frozenset()) | ps
    return replace(
        member.with_epoch(target_epoch),
        state=MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE,
        assigned=assigned,
        pending_revocation={},
    )


# ------------------------------------------------ the member protocol's requests and rules
# (ConsumerGroupHeartbeat: `consumer_heartbeat`; the coordinator: `consumer_coordinator`)


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


class GroupError(Exception):
    """Refuses a request: the error code and message the response carries."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def group_record(
    kind: int, group: str, member_id: str = "", value: object | None = None
) -> ConsumerRecord:
    return ConsumerRecord(ConsumerKey(kind, group, member_id), value)  # type: ignore[arg-type]


def member_removal_records(group_id: str, member_id: str) -> list[ConsumerRecord]:
    """Kafka's order: current assignment, target assignment, then the member itself."""
    return [
        group_record(CURRENT_MEMBER_ASSIGNMENT, group_id, member_id),
        group_record(TARGET_ASSIGNMENT_MEMBER, group_id, member_id),
        group_record(MEMBER_METADATA, group_id, member_id),
    ]


def is_empty_classic(group: ClassicGroup) -> bool:
    return (
        group.state in (GroupState.EMPTY, GroupState.DEAD)
        and not group.members
        and not group.pending_members
    )


def check_member_epoch(member: ConsumerMember, epoch: int, owned: Assignment | None) -> None:
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
    "LEAVE_GROUP_MEMBER_EPOCH",
    "LEAVE_GROUP_STATIC_MEMBER_EPOCH",
    "ConsumerGroup",
    "ConsumerGroupState",
    "ConsumerMember",
    "GroupError",
    "HeartbeatRequest",
    "HeartbeatResult",
    "MemberState",
    "assignment_partitions",
    "check_member_epoch",
    "compile_regex",
    "group_record",
    "is_empty_classic",
    "is_subset",
    "member_removal_records",
    "reconcile",
    "subscribed_topics",
]
