"""The group coordinator of one broker: classic groups (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, describe, list, delete) and their loading; committed offsets are the mixin
`ClassicGroupOffsets` of `kraft.net.groups.offsets`.

A broker coordinates the groups whose `__consumer_offsets` partition it leads (partition =
Java hashCode of the group id, made non-negative, mod the partition count). Taking the lead
of a partition starts a load (`begin_load`, `replay` of every record in the log,
`complete_load`); meanwhile its groups answer COORDINATOR_LOAD_IN_PROGRESS. Losing the lead
(`unload`) drops them; requests then get NOT_COORDINATOR and clients look the coordinator up
again.

Pure and single-threaded, like Kafka's GroupCoordinator minus the I/O: the clock, the timers
(session, rebalance and sync deadlines) and the record writer are injected, and requests that
wait (JoinGroup until the rebalance completes, SyncGroup until the leader's assignment is
stored, commits until replicated) take a callback instead of returning. As in Kafka, group
state changes in memory as requests arrive; records are written for what must survive a
coordinator change — the group's generation, members and assignment once the leader syncs
(the response waits for the write), offsets (applied only once the write is replicated), and
tombstones for deletions. Writes are never replayed into a live coordinator: `replay` runs
only while loading.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kraft.net.groups.offsets import (
    ClassicGroupOffsets,
    Clock,
    Records,
    TopicPartition,
    Writer,
    remove_offsets,
)
from kraft.net.groups.records import (
    GroupKey,
    GroupValue,
    MemberValue,
    OffsetKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_group_value,
)
from kraft.net.groups.state import (
    ClassicGroup,
    CommittedOffset,
    GroupState,
    JoinCallback,
    JoinedMember,
    JoinResult,
    Member,
    SyncCallback,
    SyncResult,
)
from kraft.net.groups.timer import Timer
from kraft.net.protocol import ErrorCode

logger = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"

# KIP-394 and Kafka: a member that joined but whose join never completed is dropped after
# this long (it cannot heartbeat while its JoinGroup waits).
NEW_MEMBER_JOIN_TIMEOUT_MS = 300_000
ALL_GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)  # READ, DELETE, DESCRIBE
CLASSIC_GROUP_TYPE = "classic"


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
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupDescription:
    state: str
    protocol_type: str
    protocol_data: str
    members: list[MemberDescription]


@dataclass(frozen=True, slots=True)
class ListedGroup:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = CLASSIC_GROUP_TYPE


class PartitionStatus(enum.Enum):
    LOADING = "loading"
    ACTIVE = "active"


def java_string_hash(s: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    raw = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(raw), 2):
        h = (31 * h + ((raw[i] << 8) | raw[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """Kafka's partition of a group: Utils.abs(groupId.hashCode) % partitions."""
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


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


class GroupCoordinator(ClassicGroupOffsets):
    def __init__(
        self,
        config: GroupConfig,
        clock: Clock,
        timer: Timer,
        writer: Writer,
        num_partitions: Callable[[], int],
        *,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        tag: str = "",
    ) -> None:
        self.config = config
        self.clock = clock
        self.timer = timer
        self.writer = writer
        self.num_partitions = num_partitions
        self.new_id = new_id
        self.tag = tag
        self.groups: dict[str, ClassicGroup] = {}
        self.partitions: dict[int, PartitionStatus] = {}

    # ================================================================== ownership

    def partition_of(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions())

    def check_group(self, group_id: str, require_id: bool = True) -> int:
        """NONE if this coordinator serves `group_id` now; else the error to answer with.
        JoinGroup, SyncGroup, Heartbeat, LeaveGroup and OffsetDelete refuse an empty id
        (INVALID_GROUP_ID); offset commits and fetches, DescribeGroups and DeleteGroups
        accept it, as Kafka does."""
        if require_id and not group_id:
            return ErrorCode.INVALID_GROUP_ID
        status = self.partitions.get(self.partition_of(group_id))
        if status is None:
            return ErrorCode.NOT_COORDINATOR
        if status is PartitionStatus.LOADING:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return ErrorCode.NONE

    def active_partitions(self) -> list[int]:
        """The partitions whose groups this coordinator serves now (loaded)."""
        return sorted(p for p, s in self.partitions.items() if s is PartitionStatus.ACTIVE)

    @property
    def is_loading(self) -> bool:
        return PartitionStatus.LOADING in self.partitions.values()

    def begin_load(self, partition: int) -> None:
        """This broker now leads `partition`: its groups answer COORDINATOR_LOAD_IN_PROGRESS
        until `complete_load`."""
        if partition in self.partitions:
            self.unload(partition)
        self.partitions[partition] = PartitionStatus.LOADING

    def replay(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Apply one record of the partition's log during a load (later records win; a
        null value deletes). Raises RecordFormatError for a record that does not parse."""
        parsed = decode_key(key)
        now = self.clock()
        if isinstance(parsed, OffsetKey):
            group = self.groups.get(parsed.group)
            tp = (parsed.topic, parsed.partition)
            if value is None:
                if group is not None:
                    group.offsets.pop(tp, None)
                    self._maybe_forget(group)
                return
            offset = decode_offset_value(value)
            if group is None:
                group = self.groups[parsed.group] = ClassicGroup(parsed.group, partition, now)
            group.offsets[tp] = offset
        elif isinstance(parsed, GroupKey):
            if value is None:
                self.groups.pop(parsed.group, None)
                return
            self._load_group(partition, parsed.group, decode_group_value(value), now)

    def _load_group(self, partition: int, group_id: str, value: GroupValue, now: int) -> None:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = ClassicGroup(group_id, partition, now)
        group.protocol_type = value.protocol_type or None
        group.generation_id = value.generation
        group.protocol_name = value.protocol
        group.leader_id = value.leader
        group.state_timestamp = value.current_state_timestamp
        group.members = {}
        group.static_members = {}
        for m in value.members:
            member = Member(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                value.protocol_type,
                [(value.protocol or "", m.subscription)],
                assignment=m.assignment,
            )
            group.members[m.member_id] = member
            if m.group_instance_id is not None:
                group.static_members[m.group_instance_id] = m.member_id
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members), None)
        group.state = GroupState.STABLE if group.members else GroupState.EMPTY
        group.subscribed_topics = group._compute_subscribed_topics() if group.members else None
        group.persisted = True

    def complete_load(self, partition: int) -> list[ClassicGroup]:
        """The partition's log is loaded: serve its groups. Members of loaded groups get a
        full session timeout to find this coordinator and heartbeat."""
        self.partitions[partition] = PartitionStatus.ACTIVE
        loaded = [g for g in self.groups.values() if g.partition == partition]
        for group in loaded:
            for member in group.members.values():
                self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms)
            if len(group.members) > self.config.max_size:
                self._prepare_rebalance(group, "freshly loaded group is over capacity")
        return loaded

    def unload(self, partition: int) -> int:
        """This broker no longer leads `partition`: drop its groups (pending requests get
        NOT_COORDINATOR). Returns how many groups were dropped."""
        status = self.partitions.pop(partition, None)
        if status is None:
            return 0
        dropped = [g for g in self.groups.values() if g.partition == partition]
        for group in dropped:
            del self.groups[group.group_id]
            self._cancel_timers(group)
            group.state = GroupState.DEAD
            for member in list(group.members.values()):
                member.invoke_join(JoinResult(ErrorCode.NOT_COORDINATOR, member.member_id))
                member.invoke_sync(SyncResult(ErrorCode.NOT_COORDINATOR))
        return len(dropped)

    # ================================================================== JoinGroup

    def join_group(self, req: JoinRequest, respond: JoinCallback) -> None:
        error = self.check_group(req.group_id)
        if not error and not (
            self.config.min_session_timeout_ms
            <= req.session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            error = ErrorCode.INVALID_SESSION_TIMEOUT
        if error:
            respond(JoinResult(error, req.member_id))
            return
        unknown = req.member_id == ""
        group = self.groups.get(req.group_id)
        if group is None:
            if not unknown:
                respond(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, req.member_id))
                return
            group = self.groups[req.group_id] = ClassicGroup(
                req.group_id, self.partition_of(req.group_id), self.clock()
            )
        if group.state is GroupState.DEAD:
            # Being deleted or unloaded: the client looks the coordinator up again.
            respond(JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, req.member_id))
            return
        names = [name for name, _ in req.protocols]
        if not group.supports_protocols(req.protocol_type, names):
            respond(JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id))
            self._maybe_forget(group)
            return
        if not self._accept_joining_member(group, req.member_id):
            member = group.members.get(req.member_id)
            if member is not None:
                self._remove_member_and_update_group(group, member, "group is full")
            respond(JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, ""))
            self._maybe_forget(group)
            return
        if unknown:
            self._join_new_member(group, req, respond)
        else:
            self._join_current_member(group, req, respond)
        if group.state is GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        """Kafka's group.max.size rule: known members always; new ones while the group (or,
        during a rebalance, the number of members already rejoined) is below the limit."""
        state = group.state
        if state in (GroupState.EMPTY, GroupState.DEAD):
            return True
        member = group.members.get(member_id)
        if state is GroupState.PREPARING_REBALANCE:
            return (
                member is not None and member.awaiting_join is not None
            ) or group.awaiting_join_count < self.config.max_size
        return member is not None or len(group.members) < self.config.max_size

    def _join_new_member(
        self, group: ClassicGroup, req: JoinRequest, respond: JoinCallback
    ) -> None:
        if req.group_instance_id is not None:
            new_id = f"{req.group_instance_id}-{self.new_id()}"
            old_id = group.static_members.get(req.group_instance_id)
            if old_id is None:
                self._add_member_and_rebalance(group, req, new_id, respond)
            else:
                logger.info(
                    "%sgroup %s: static member %s rejoins; member %s replaces %s",
                    self.tag,
                    group.group_id,
                    req.group_instance_id,
                    new_id,
                    old_id,
                )
                self._update_static_member_and_rebalance(group, old_id, new_id, req, respond)
            return
        member_id = f"{req.client_id}-{self.new_id()}"
        if req.require_known_member_id:
            # KIP-394: hand out the id and make the client join again with it, so a client
            # that never gets this response leaves no member behind.
            group.pending_members.add(member_id)
            self._schedule_heartbeat(group, member_id, req.session_timeout_ms)
            respond(JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id))
            return
        self._add_member_and_rebalance(group, req, member_id, respond)

    def _join_current_member(
        self, group: ClassicGroup, req: JoinRequest, respond: JoinCallback
    ) -> None:
        member_id = req.member_id
        if member_id in group.pending_members:
            self._add_member_and_rebalance(group, req, member_id, respond)
            return
        if group.is_static_member_fenced(req.group_instance_id, member_id):
            respond(JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id))
            return
        member = group.members.get(member_id)
        if member is None or (
            req.group_instance_id is not None and req.group_instance_id not in group.static_members
        ):
            respond(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
            return
        state = group.state
        if state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(
                group, member, req, respond, f"member {member_id} joins during the rebalance"
            )
        elif state is GroupState.COMPLETING_REBALANCE:
            if member.matches(req.protocols):
                # The same metadata again (it missed the first response): this generation.
                respond(self._join_result(group, member, with_members=group.leader_id == member_id))
            else:
                self._update_member_and_rebalance(
                    group, member, req, respond, f"member {member_id} changed its metadata"
                )
        elif state is GroupState.STABLE:
            if group.leader_id == member_id:
                # The leader rejoins to force a rebalance (e.g. topic metadata changed).
                self._update_member_and_rebalance(
                    group, member, req, respond, f"leader {member_id} rejoins"
                )
            elif not member.matches(req.protocols):
                self._update_member_and_rebalance(
                    group, member, req, respond, f"member {member_id} changed its metadata"
                )
            else:
                respond(self._join_result(group, member, with_members=False))
        else:
            respond(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _join_result(
        self, group: ClassicGroup, member: Member, with_members: bool, leader: str | None = None
    ) -> JoinResult:
        return JoinResult(
            ErrorCode.NONE,
            member.member_id,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            (leader if leader is not None else group.leader_id) or "",
            group.current_member_metadata() if with_members else [],
        )

    def _add_member_and_rebalance(
        self, group: ClassicGroup, req: JoinRequest, member_id: str, respond: JoinCallback
    ) -> None:
        member = Member(
            member_id,
            req.group_instance_id,
            req.client_id,
            req.client_host,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            req.protocol_type,
            list(req.protocols),
            is_new=True,
            supports_skip_assignment=req.supports_skip_assignment,
        )
        if group.state is GroupState.PREPARING_REBALANCE and group.generation_id == 0:
            group.new_member_added = True
        group.add(member, respond)
        # A new member cannot heartbeat while its JoinGroup waits; if its client gave up and
        # rejoined under another id, this removes the leftover.
        self._schedule_heartbeat(group, member_id, self.config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance(group, f"member {member_id} joins")

    def _update_member_and_rebalance(
        self,
        group: ClassicGroup,
        member: Member,
        req: JoinRequest,
        respond: JoinCallback,
        reason: str,
    ) -> None:
        # A JoinGroup the client gave up on is answered before the new one replaces it.
        member.invoke_join(JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.protocols = list(req.protocols)
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.supports_skip_assignment = req.supports_skip_assignment
        member.awaiting_join = respond
        self._maybe_prepare_rebalance(group, reason)

    def _update_static_member_and_rebalance(
        self,
        group: ClassicGroup,
        old_id: str,
        new_id: str,
        req: JoinRequest,
        respond: JoinCallback,
    ) -> None:
        assert req.group_instance_id is not None
        instance_id = req.group_instance_id
        previous_leader = group.leader_id
        self.timer.cancel(("heartbeat", group.group_id, old_id))
        member = group.replace_static_member(instance_id, old_id, new_id)
        self._schedule_heartbeat(group, new_id, req.session_timeout_ms)
        old = (member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms)
        member.protocols = list(req.protocols)
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.supports_skip_assignment = req.supports_skip_assignment
        member.awaiting_join = respond
        state = group.state
        if state is GroupState.STABLE:
            if group.protocol_name != group.select_protocol():
                self._maybe_prepare_rebalance(
                    group, f"static member {instance_id} rejoins with other protocols"
                )
                return
            # Same protocols: no rebalance. Store the new member id, then give the member
            # this generation. Below JoinGroup v9 it is told the old leader id, so a
            # rejoining leader does not assign (a stable group would not relay it).
            assignment = {m.member_id: m.assignment for m in group.members.values()}
            generation = group.generation_id

            def stored(error: int) -> None:
                if group.state is GroupState.DEAD or group.members.get(new_id) is not member:
                    return
                if error:
                    member.awaiting_join = None
                    group.replace_static_member(instance_id, new_id, old_id)
                    member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms = old
                    self.timer.cancel(("heartbeat", group.group_id, new_id))
                    self._schedule_heartbeat(group, old_id, member.session_timeout_ms)
                    respond(JoinResult(error, ""))
                    return
                if generation != group.generation_id:
                    return  # a rebalance started meanwhile: the join completes with it
                skip = member.supports_skip_assignment and group.leader_id == new_id
                result = self._join_result(
                    group,
                    member,
                    with_members=skip,
                    leader=group.leader_id if member.supports_skip_assignment else previous_leader,
                )
                result.skip_assignment = skip
                member.invoke_join(result)

            self._store_group(group, assignment, stored)
        elif state is GroupState.COMPLETING_REBALANCE:
            # The leader may already be assigning with the old member id: start over.
            self._prepare_rebalance(group, f"static member {instance_id} rejoins mid-rebalance")
        # PreparingRebalance: the join completes with the rebalance.

    # ------------------------------------------------------------- rebalancing

    def _maybe_prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self.timer.cancel(("sync", group.group_id))
        group.pending_sync_members.clear()
        was_empty = group.state is GroupState.EMPTY
        group.transition_to(GroupState.PREPARING_REBALANCE, self.clock())
        logger.info(
            "%sgroup %s: preparing to rebalance, generation %d (%s-%d): %s",
            self.tag,
            group.group_id,
            group.generation_id,
            OFFSETS_TOPIC,
            group.partition,
            reason,
        )
        if was_empty:
            delay = self.config.initial_rebalance_delay_ms
            group.initial_delay_active = True
            group.new_member_added = False
            group.initial_delay_remaining_ms = max(group.rebalance_timeout_ms - delay, 0)
            self._schedule_join(group, delay, initial=True)
        else:
            group.initial_delay_active = False
            self._schedule_join(group, group.rebalance_timeout_ms, initial=False)
            self._try_complete_join(group)

    def _schedule_join(self, group: ClassicGroup, delay_ms: int, initial: bool) -> None:
        def expired() -> None:
            if self.groups.get(group.group_id) is not group:
                return
            if group.state is not GroupState.PREPARING_REBALANCE:
                return
            if initial and group.new_member_added and group.initial_delay_remaining_ms > 0:
                # Members keep arriving: wait another delay, within the rebalance timeout.
                group.new_member_added = False
                delay = min(
                    self.config.initial_rebalance_delay_ms, group.initial_delay_remaining_ms
                )
                group.initial_delay_remaining_ms = max(group.initial_delay_remaining_ms - delay, 0)
                self._schedule_join(group, delay, initial=True)
                return
            group.initial_delay_active = False
            self._complete_join(group)

        self.timer.schedule(("join", group.group_id), delay_ms, expired)

    def _try_complete_join(self, group: ClassicGroup) -> None:
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and not group.initial_delay_active
            and group.has_all_members_joined()
        ):
            self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        """The join phase ends (everyone rejoined, or the rebalance timeout): dynamic members
        that did not rejoin are removed, the next generation starts."""
        self.timer.cancel(("join", group.group_id))
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        for member in group.not_yet_rejoined():
            if member.group_instance_id is None:
                logger.info(
                    "%sgroup %s: member %s did not rejoin in time; removed",
                    self.tag,
                    group.group_id,
                    member.member_id,
                )
                self.timer.cancel(("heartbeat", group.group_id, member.member_id))
                member.invoke_sync(SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
                group.remove(member.member_id)
        for pending in list(group.pending_members):
            self.timer.cancel(("heartbeat", group.group_id, pending))
        group.pending_members.clear()
        if group.members and not group.maybe_elect_new_joined_leader():
            # Only static members that have not rejoined are left: wait for them (or for
            # their session timeouts) one more rebalance timeout.
            logger.warning(
                "%sgroup %s: no member rejoined; waiting another rebalance timeout",
                self.tag,
                group.group_id,
            )
            self._schedule_join(group, group.rebalance_timeout_ms, initial=False)
            return
        group.init_next_generation(self.clock())
        if group.state is GroupState.EMPTY:
            logger.info(
                "%sgroup %s: empty at generation %d", self.tag, group.group_id, group.generation_id
            )
            self._store_group(group, {}, lambda error: None)
            return
        logger.info(
            "%sgroup %s: generation %d with %d members, protocol %s, leader %s",
            self.tag,
            group.group_id,
            group.generation_id,
            len(group.members),
            group.protocol_name,
            group.leader_id,
        )
        for member in list(group.members.values()):
            member.invoke_join(
                self._join_result(group, member, with_members=group.leader_id == member.member_id)
            )
            self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms)
            member.is_new = False
        # Members that do not send SyncGroup within the rebalance timeout are removed.
        group.pending_sync_members = set(group.members)
        generation = group.generation_id
        self.timer.schedule(
            ("sync", group.group_id),
            group.rebalance_timeout_ms,
            lambda: self._sync_expired(group, generation),
        )

    def _sync_expired(self, group: ClassicGroup, generation: int) -> None:
        if self.groups.get(group.group_id) is not group or generation != group.generation_id:
            return
        if group.state not in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        if not group.pending_sync_members:
            return
        missing = sorted(group.pending_sync_members)
        for member_id in missing:
            self.timer.cancel(("heartbeat", group.group_id, member_id))
            group.remove(member_id)
        self._prepare_rebalance(group, f"members {missing} sent no SyncGroup in time")

    # ================================================================== SyncGroup

    def sync_group(self, req: SyncRequest, respond: SyncCallback) -> None:
        error = self.check_group(req.group_id)
        if error:
            respond(SyncResult(error))
            return
        group = self.groups.get(req.group_id)
        member = group.members.get(req.member_id) if group is not None else None
        if group is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif group.state is GroupState.DEAD:
            error = ErrorCode.COORDINATOR_NOT_AVAILABLE
        elif group.is_static_member_fenced(req.group_instance_id, req.member_id):
            error = ErrorCode.FENCED_INSTANCE_ID
        elif member is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif req.generation_id != group.generation_id:
            error = ErrorCode.ILLEGAL_GENERATION
        elif (req.protocol_type is not None and req.protocol_type != group.protocol_type) or (
            req.protocol_name is not None and req.protocol_name != group.protocol_name
        ):
            error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        elif group.state is GroupState.EMPTY:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif group.state is GroupState.PREPARING_REBALANCE:
            error = ErrorCode.REBALANCE_IN_PROGRESS
        if error or group is None or member is None:
            respond(SyncResult(error))
            return
        if group.state is GroupState.STABLE:
            group.pending_sync_members.discard(member.member_id)
            respond(
                SyncResult(
                    ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment
                )
            )
            self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms)
            return
        # CompletingRebalance: wait for the leader's assignment.
        member.invoke_sync(SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.awaiting_sync = respond
        group.pending_sync_members.discard(member.member_id)
        if not group.pending_sync_members:
            self.timer.cancel(("sync", group.group_id))
        if group.leader_id != member.member_id:
            return
        assignment = {m: req.assignments.get(m, b"") for m in group.members}
        missing = [m for m in group.members if m not in req.assignments]
        if missing:
            logger.warning(
                "%sgroup %s: the leader's assignment leaves out %s; they get none",
                self.tag,
                group.group_id,
                missing,
            )
        generation = group.generation_id

        def stored(error: int) -> None:
            # Another member may have joined (or the group been unloaded) meanwhile.
            if group.state is not GroupState.COMPLETING_REBALANCE:
                return
            if generation != group.generation_id:
                return
            if error:
                self._reset_and_propagate_assignment_error(group, error)
                self._maybe_prepare_rebalance(group, "storing the group assignment failed")
                return
            for m in group.members.values():
                m.assignment = assignment.get(m.member_id, b"")
            self._propagate_assignment(group, ErrorCode.NONE)
            group.transition_to(GroupState.STABLE, self.clock())
            logger.info(
                "%sgroup %s: stable at generation %d",
                self.tag,
                group.group_id,
                group.generation_id,
            )

        self._store_group(group, assignment, stored)

    def _propagate_assignment(self, group: ClassicGroup, error: int) -> None:
        for m in group.members.values():
            m.invoke_sync(
                SyncResult(
                    error,
                    group.protocol_type,
                    group.protocol_name,
                    m.assignment if not error else b"",
                )
            )
            # A member's session may have run out while its SyncGroup waited (expiry skips
            # members with pending requests): start it afresh.
            self._schedule_heartbeat(group, m.member_id, m.session_timeout_ms)

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup, error: int) -> None:
        for m in group.members.values():
            m.assignment = b""
        self._propagate_assignment(group, error)

    # ================================================================== Heartbeat

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> int:
        error = self.check_group(group_id)
        if error:
            return error
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if group.is_static_member_fenced(group_instance_id, member_id):
            return ErrorCode.FENCED_INSTANCE_ID
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.state is GroupState.EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._schedule_heartbeat(group, member_id, member.session_timeout_ms)
        if group.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def _schedule_heartbeat(self, group: ClassicGroup, member_id: str, timeout_ms: int) -> None:
        self.timer.schedule(
            ("heartbeat", group.group_id, member_id),
            timeout_ms,
            lambda: self._heartbeat_expired(group, member_id),
        )

    def _heartbeat_expired(self, group: ClassicGroup, member_id: str) -> None:
        if self.groups.get(group.group_id) is not group:
            return
        if member_id in group.pending_members:
            logger.info(
                "%sgroup %s: pending member %s never joined; removed",
                self.tag,
                group.group_id,
                member_id,
            )
            group.pending_members.discard(member_id)
            self._try_complete_join(group)
            self._maybe_forget(group)
            return
        member = group.members.get(member_id)
        if member is None:
            return
        if not member.is_new and (
            member.awaiting_join is not None or member.awaiting_sync is not None
        ):
            return  # a request of the member is pending: it is alive
        logger.info(
            "%sgroup %s: member %s %s; removed",
            self.tag,
            group.group_id,
            member_id,
            "never completed its join" if member.is_new else "missed its session timeout",
        )
        self._remove_member_and_update_group(
            group, member, f"member {member_id} expired (session timeout)"
        )

    # ================================================================= LeaveGroup

    def leave_group(
        self, group_id: str, leaving: list[LeavingMember]
    ) -> tuple[int, list[tuple[LeavingMember, int]]]:
        """(group error, per-member error)."""
        error = self.check_group(group_id)
        if error:
            return error, []
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [(m, ErrorCode.UNKNOWN_MEMBER_ID) for m in leaving]
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        out: list[tuple[LeavingMember, int]] = []
        for leaver in leaving:
            reason = f"member {leaver.member_id or leaver.group_instance_id} left"
            if leaver.reason:
                reason += f" ({leaver.reason})"
            if leaver.member_id == "":
                # Administrative removal of a static member by its instance id alone.
                current = (
                    group.static_members.get(leaver.group_instance_id)
                    if leaver.group_instance_id is not None
                    else None
                )
                if current is None:
                    out.append((leaver, ErrorCode.UNKNOWN_MEMBER_ID))
                else:
                    self._remove_member_and_update_group(group, group.members[current], reason)
                    out.append((leaver, ErrorCode.NONE))
            elif leaver.member_id in group.pending_members:
                group.pending_members.discard(leaver.member_id)
                self.timer.cancel(("heartbeat", group.group_id, leaver.member_id))
                self._try_complete_join(group)
                out.append((leaver, ErrorCode.NONE))
            elif group.is_static_member_fenced(leaver.group_instance_id, leaver.member_id):
                out.append((leaver, ErrorCode.FENCED_INSTANCE_ID))
            elif leaver.member_id not in group.members:
                out.append((leaver, ErrorCode.UNKNOWN_MEMBER_ID))
            else:
                logger.info("%sgroup %s: %s", self.tag, group.group_id, reason)
                self._remove_member_and_update_group(group, group.members[leaver.member_id], reason)
                out.append((leaver, ErrorCode.NONE))
        self._maybe_forget(group)
        return ErrorCode.NONE, out

    def _remove_member_and_update_group(
        self, group: ClassicGroup, member: Member, reason: str
    ) -> None:
        self.timer.cancel(("heartbeat", group.group_id, member.member_id))
        # A member removed while its JoinGroup waits is told to join again from scratch.
        member.invoke_join(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, ""))
        member.invoke_sync(SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, reason)
        elif group.state is GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

    # ======================================================== describe, list, delete

    def describe_group(self, group_id: str) -> tuple[int, GroupDescription]:
        error = self.check_group(group_id, require_id=False)
        dead = GroupDescription(GroupState.DEAD.value, "", "", [])
        if error:
            return error, dead
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, dead
        stable = group.state is GroupState.STABLE and group.protocol_name is not None
        members = [
            MemberDescription(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(group.protocol_name) if stable and group.protocol_name else b"",
                m.assignment if stable else b"",
            )
            for m in group.members.values()
        ]
        return ErrorCode.NONE, GroupDescription(
            group.state.value,
            group.protocol_type or "",
            (group.protocol_name or "") if stable else "",
            members,
        )

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> tuple[int, list[ListedGroup]]:
        """Every group served here, filtered by state and type names (case-insensitive);
        COORDINATOR_LOAD_IN_PROGRESS along with what is loaded while a load runs."""
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        out = []
        if not wanted_types or CLASSIC_GROUP_TYPE in wanted_types:
            for group in self.groups.values():
                if self.partitions.get(group.partition) is not PartitionStatus.ACTIVE:
                    continue
                if wanted_states and group.state.value.lower() not in wanted_states:
                    continue
                out.append(
                    ListedGroup(group.group_id, group.protocol_type or "", group.state.value)
                )
        error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if self.is_loading else ErrorCode.NONE
        return error, sorted(out, key=lambda g: g.group_id)

    def delete_groups(
        self, group_ids: list[str], respond: Callable[[dict[str, int]], None]
    ) -> None:
        """DeleteGroups: empty groups only; their offsets and metadata get tombstones."""
        results: dict[str, int] = {}
        by_partition: dict[int, tuple[list[str], Records]] = {}
        for group_id in group_ids:
            error = self.check_group(group_id, require_id=False)
            group = self.groups.get(group_id)
            if error:
                results[group_id] = error
            elif group is None or group.state is GroupState.DEAD:
                results[group_id] = ErrorCode.GROUP_ID_NOT_FOUND
            elif group.state is not GroupState.EMPTY:
                results[group_id] = ErrorCode.NON_EMPTY_GROUP
            else:
                records = remove_offsets(group_id, group.offsets)
                records += self._mark_dead(group)
                ids, batch = by_partition.setdefault(group.partition, ([], []))
                ids.append(group_id)
                batch += records
                results[group_id] = ErrorCode.NONE
                logger.info("%sgroup %s: deleted", self.tag, group_id)
        waiting = {p for p, (_, batch) in by_partition.items() if batch}
        if not waiting:
            respond(results)
            return
        for partition, (ids, batch) in by_partition.items():
            if not batch:
                continue

            def written(code: int, partition: int = partition, ids: list[str] = ids) -> None:
                if code:
                    for group_id in ids:
                        results[group_id] = group_store_error(code)
                waiting.discard(partition)
                if not waiting:
                    respond(results)

            self.writer(partition, batch, written)

    def _maybe_mark_dead(self, group: ClassicGroup) -> Records:
        """An empty group without offsets is dead (see `_mark_dead`)."""
        if group.state is not GroupState.EMPTY or group.offsets:
            return []
        return self._mark_dead(group)

    def _mark_dead(self, group: ClassicGroup) -> Records:
        """Drop the group; a tombstone for its metadata if it ever had a generation (Kafka
        writes none for offset-only groups). Pending members find it gone and start over."""
        group.transition_to(GroupState.DEAD, self.clock())
        self._cancel_timers(group)
        if self.groups.get(group.group_id) is group:
            del self.groups[group.group_id]
        if group.generation_id > 0 or group.persisted:
            return [(encode_group_key(group.group_id), None)]
        return []

    def _maybe_forget(self, group: ClassicGroup) -> None:
        """Drop a group that holds nothing and was never written (a failed first join, a
        pending member that never came back, a refused commit)."""
        if (
            group.state is GroupState.EMPTY
            and not group.members
            and not group.pending_members
            and not group.offsets
            and not group.persisted
            and group.generation_id == 0
            and self.groups.get(group.group_id) is group
        ):
            del self.groups[group.group_id]

    # ================================================================== storage

    def _store_group(
        self, group: ClassicGroup, assignment: dict[str, bytes], done: Callable[[int], None]
    ) -> None:
        protocol = group.protocol_name
        members = tuple(
            MemberValue(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                m.metadata(protocol) if protocol is not None else b"",
                assignment.get(m.member_id, b""),
            )
            for m in group.members.values()
        )
        value = GroupValue(
            group.protocol_type or "",
            group.generation_id,
            protocol,
            group.leader_id if group.members else None,
            group.state_timestamp,
            members,
        )

        def written(code: int) -> None:
            if code == ErrorCode.NONE:
                group.persisted = True
            else:
                logger.warning(
                    "%sgroup %s: storing generation %d failed with error %d",
                    self.tag,
                    group.group_id,
                    group.generation_id,
                    code,
                )
            done(group_store_error(code))

        self.writer(
            group.partition,
            [(encode_group_key(group.group_id), encode_group_value(value))],
            written,
        )

    def _cancel_timers(self, group: ClassicGroup) -> None:
        self.timer.cancel(("join", group.group_id))
        self.timer.cancel(("sync", group.group_id))
        for member_id in list(group.members) + list(group.pending_members):
            self.timer.cancel(("heartbeat", group.group_id, member_id))


__all__ = [
    "OFFSETS_TOPIC",
    "ClassicGroup",
    "Clock",
    "CommittedOffset",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupState",
    "JoinRequest",
    "JoinResult",
    "JoinedMember",
    "LeavingMember",
    "ListedGroup",
    "MemberDescription",
    "PartitionStatus",
    "Records",
    "SyncRequest",
    "SyncResult",
    "TopicPartition",
    "Writer",
    "java_string_hash",
    "partition_for",
]
