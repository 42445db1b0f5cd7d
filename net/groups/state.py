"""One classic consumer group: members, generation, protocol and leader (Kafka's ClassicGroup).

States and the transitions the coordinator makes (Kafka's)::

    Empty               -- a member joins -->                       PreparingRebalance
    PreparingRebalance  -- all rejoined, or the rebalance timeout --> CompletingRebalance
    PreparingRebalance  -- no member left -->                       Empty
    CompletingRebalance -- the leader's SyncGroup is stored -->     Stable
    Stable, CompletingRebalance -- a join with new metadata, the leader rejoining, a leave
                           or an expired session -->               PreparingRebalance
    any                 -- deleted (Empty only) or unloaded -->     Dead

The broker never looks inside the protocols' metadata or assignments (it is agnostic to the
clients' assignors, eager or cooperative); it only picks the protocol every member supports
and relays the leader's assignment. The one exception is reading the subscribed topics of
"consumer" groups, which OffsetDelete needs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from kraft.net.groups.records import OffsetValue
from kraft.net.protocol import (
    ConsumerProtocolSubscription,
    ErrorCode,
    ProtocolError,
    decode_message,
)

CONSUMER_PROTOCOL_TYPE = "consumer"


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


# The requests of the member protocol (JoinGroup v0-9, SyncGroup v0-5, LeaveGroup v0-5) as
# the coordinator takes them, whatever the version they came in; their results below.


@dataclass(slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    group_instance_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    require_known_member_id: bool = False  # JoinGroup v4+ without group.instance.id
    supports_skip_assignment: bool = False  # JoinGroup v9+
    reason: str | None = None


@dataclass(slots=True)
class SyncRequest:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None
    protocol_type: str | None = None  # SyncGroup v5+: checked against the group's
    protocol_name: str | None = None
    assignments: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeavingMember:
    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class JoinedMember:
    """A member as the leader sees it in its JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(slots=True)
class JoinResult:
    error: int
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: list[JoinedMember] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass(slots=True)
class SyncResult:
    error: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


JoinCallback = Callable[[JoinResult], None]
SyncCallback = Callable[[SyncResult], None]


# A committed offset is held as the value of its record in __consumer_offsets.
CommittedOffset = OffsetValue


@dataclass(slots=True, eq=False)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    # (name, metadata) in the member's order of preference.
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    # The pending JoinGroup / SyncGroup of this member, answered when the group moves on.
    awaiting_join: JoinCallback | None = None
    awaiting_sync: SyncCallback | None = None
    # Joined but not yet through a completed join: expires by the new-member timeout.
    is_new: bool = False
    # JoinGroup v9+ (KIP-814): a rejoining static leader may be told to skip assignment.
    supports_skip_assignment: bool = False

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise KeyError(f"member {self.member_id} does not support protocol {protocol!r}")

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those every member supports."""
        return next(name for name, _ in self.protocols if name in candidates)

    def invoke_join(self, result: JoinResult) -> bool:
        callback, self.awaiting_join = self.awaiting_join, None
        if callback is None:
            return False
        callback(result)
        return True

    def invoke_sync(self, result: SyncResult) -> bool:
        callback, self.awaiting_sync = self.awaiting_sync, None
        if callback is None:
            return False
        callback(result)
        return True


class ClassicGroup:
    def __init__(
        self,
        group_id: str,
        partition: int,
        now_ms: int,
        state: GroupState = GroupState.EMPTY,
    ) -> None:
        self.group_id = group_id
        self.partition = partition  # of __consumer_offsets, where its records live
        self.state = state
        self.state_timestamp = now_ms
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id -> member id
        # KIP-394: member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
        self.pending_members: set[str] = set()
        # Members of this generation that have not sent SyncGroup yet.
        self.pending_sync_members: set[str] = set()
        # group.initial.rebalance.delay.ms: while the first rebalance of an empty group
        # waits, each new member extends the wait (up to the rebalance timeout).
        self.initial_delay_active = False
        self.initial_delay_remaining_ms = 0
        self.new_member_added = False
        self.offsets: dict[tuple[str, int], CommittedOffset] = {}
        self.subscribed_topics: set[str] | None = None
        # A GroupMetadata record of this group is in the log: deleting it needs a tombstone.
        self.persisted = False

    def __repr__(self) -> str:
        return (
            f"ClassicGroup({self.group_id!r}, {self.state.value}, generation "
            f"{self.generation_id}, {len(self.members)} members)"
        )

    # ------------------------------------------------------------------ state

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        if self.state not in _VALID_PREVIOUS[state]:
            raise AssertionError(
                f"group {self.group_id}: illegal transition {self.state.value} -> {state.value}"
            )
        self.state = state
        self.state_timestamp = now_ms

    @property
    def is_consumer_group(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE

    def can_rebalance(self) -> bool:
        return self.state in (
            GroupState.STABLE,
            GroupState.COMPLETING_REBALANCE,
            GroupState.EMPTY,
        )

    # ---------------------------------------------------------------- members

    def add(self, member: Member, callback: JoinCallback | None) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        self.members[member.member_id] = member
        self.pending_members.discard(member.member_id)
        member.awaiting_join = callback

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if (
            member.group_instance_id is not None
            and self.static_members.get(member.group_instance_id) == member_id
        ):
            del self.static_members[member.group_instance_id]
        self.pending_sync_members.discard(member_id)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        return member

    def replace_static_member(self, instance_id: str, old_id: str, new_id: str) -> Member:
        """A static member rejoined with an unknown member id: it takes over the old member
        (assignment included) under a new id; whoever still waits as the old id is fenced."""
        member = self.members.pop(old_id)
        member.invoke_join(JoinResult(error=ErrorCode.FENCED_INSTANCE_ID, member_id=old_id))
        member.invoke_sync(SyncResult(error=ErrorCode.FENCED_INSTANCE_ID))
        member.member_id = new_id
        self.members[new_id] = member
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync_members:
            self.pending_sync_members.discard(old_id)
            self.pending_sync_members.add(new_id)
        self.static_members[instance_id] = new_id
        return member

    def is_static_member_fenced(self, instance_id: str | None, member_id: str) -> bool:
        if instance_id is None:
            return False
        current = self.static_members.get(instance_id)
        return current is not None and current != member_id

    @property
    def awaiting_join_count(self) -> int:
        return sum(1 for m in self.members.values() if m.awaiting_join is not None)

    def has_all_members_joined(self) -> bool:
        return self.awaiting_join_count == len(self.members) and not self.pending_members

    def not_yet_rejoined(self) -> list[Member]:
        return [m for m in self.members.values() if m.awaiting_join is None]

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else make any rejoined member leader; False when
        no member rejoined."""
        if self.leader_id is None:
            return False
        leader = self.members.get(self.leader_id)
        if leader is not None and leader.awaiting_join is not None:
            return True
        for member in self.members.values():
            if member.awaiting_join is not None:
                self.leader_id = member.member_id
                return True
        return False

    # -------------------------------------------------------------- protocols

    def candidate_protocols(self) -> set[str]:
        """Protocols every member supports."""
        members = list(self.members.values())
        if not members:
            return set()
        common = {name for name, _ in members[0].protocols}
        for m in members[1:]:
            common &= {name for name, _ in m.protocols}
        return common

    def supports_protocols(self, protocol_type: str, protocols: list[str]) -> bool:
        """Whether a member with these protocols may join: into an empty group with any
        non-empty set, else with the group's type and one protocol every member supports."""
        if not self.members:
            return bool(protocol_type) and bool(protocols)
        if self.protocol_type != protocol_type:
            return False
        counts: dict[str, int] = {}
        for m in self.members.values():
            for name, _ in m.protocols:
                counts[name] = counts.get(name, 0) + 1
        return any(counts.get(name, 0) == len(self.members) for name in protocols)

    def select_protocol(self) -> str:
        """Each member votes for its preferred candidate; the most votes wins (ties: the
        one voted first, so the choice is deterministic)."""
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for m in self.members.values():
            choice = m.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        best = max(votes.values())
        return next(name for name, count in votes.items() if count == best)

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self._compute_subscribed_topics()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = None
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync_members.clear()

    def current_member_metadata(self) -> list[JoinedMember]:
        assert self.protocol_name is not None
        return [
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        ]

    def _compute_subscribed_topics(self) -> set[str] | None:
        """Topics the members of a "consumer" group subscribe to; None when unknown (another
        protocol type, or metadata that does not parse)."""
        if not self.is_consumer_group or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            parsed = parse_subscription(m.metadata(self.protocol_name))
            if parsed is None:
                return None
            topics |= parsed
        return topics

    def is_subscribed_to(self, topic: str) -> bool:
        return self.subscribed_topics is None or topic in self.subscribed_topics


def parse_subscription(metadata: bytes) -> set[str] | None:
    """The topics of a ConsumerProtocolSubscription (int16 version, then the struct at that
    version); None if it does not parse. Every version starts with the topics array, so a
    version newer than ours is read for that prefix only."""
    if len(metadata) < 2:
        return None
    version = int.from_bytes(metadata[:2], "big", signed=True)
    if version < 0:
        return None
    try:
        return set(
            decode_message(ConsumerProtocolSubscription, metadata[2:], min(version, 3)).topics
        )
    except ProtocolError:
        pass
    data = metadata[2:]
    count = int.from_bytes(data[:4], "big", signed=True)
    if len(data) < 4 or count < 0 or count > len(data):
        return None
    pos = 4
    topics: set[str] = set()
    for _ in range(count):
        n = int.from_bytes(data[pos : pos + 2], "big", signed=True)
        if n < 0 or pos + 2 + n > len(data):
            return None
        try:
            topics.add(data[pos + 2 : pos + 2 + n].decode())
        except UnicodeDecodeError:
            return None
        pos += 2 + n
    return topics
