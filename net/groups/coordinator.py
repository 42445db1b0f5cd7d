"""The group coordinator of one broker: classic groups, their ownership and loading,
describe, list and delete, and the group record's write. The member protocol (JoinGroup,
SyncGroup, Heartbeat, LeaveGroup) is the mixin `ClassicGroupMembership` of
`classic_membership.py`; committed offsets the mixin `ClassicGroupOffsets` of `offsets.py`.

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

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kraft.net.groups.classic_membership import ClassicGroupMembership
from kraft.net.groups.common import (
    Clock,
    GroupConfig,
    PartitionStatus,
    Records,
    TopicPartition,
    Writer,
    group_store_error,
)
from kraft.net.groups.offsets import ClassicGroupOffsets, remove_offsets
from kraft.net.groups.records import (
    OFFSETS_TOPIC,
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
    JoinedMember,
    JoinRequest,
    JoinResult,
    LeavingMember,
    Member,
    SyncRequest,
    SyncResult,
)
from kraft.net.groups.timer import Timer
from kraft.net.protocol import ErrorCode

logger = logging.getLogger(__name__)


ALL_GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)  # READ, DELETE, DESCRIBE
CLASSIC_GROUP_TYPE = "classic"


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


class GroupCoordinator(ClassicGroupMembership, ClassicGroupOffsets):
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
