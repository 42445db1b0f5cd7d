"""Consumer groups across the cluster, as Kafka's admin tools see them.

A group lives on one coordinator (the leader of its `__consumer_offsets` partition), which
may be any broker, so the façade asks over the Kafka protocol, the way
kafka-consumer-groups.sh does: ListGroups to every live broker, DescribeGroups (classic) or
ConsumerGroupDescribe (KIP-848) and OffsetFetch to the group's coordinator, ListOffsets to
the partitions' leaders for the lag. Writes go the same way (OffsetCommit with no member
and generation -1 resets the offsets of an empty group; DeleteGroups removes one).

Every request is bounded by `timeout_s`; a broker that does not answer is reported, not
waited for forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kraft.metadata.image import MetadataImage
from kraft.net.client import KafkaConnection
from kraft.net.groups.coordinator import partition_for
from kraft.net.protocol import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
    ConsumerProtocolAssignment,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
    Message,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    ProtocolError,
    decode_message,
)
from kraft.net.protocol import error_name as kafka_error_name

OFFSETS_TOPIC = "__consumer_offsets"
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
CLIENT_ID = "kraft-node-api"
UNREACHABLE = (OSError, ConnectionError, TimeoutError, ProtocolError)
TopicPartition = tuple[str, int]
# The versions asked for: the fields this module fills exist in them, and every kraft broker
# (and Kafka 3.x/4.x) serves them.
VERSIONS = {
    2: 5,  # ListOffsets
    8: 8,  # OffsetCommit
    9: 7,  # OffsetFetch: one group, topics=None for all
    15: 5,  # DescribeGroups
    16: 4,  # ListGroups: states filter
    42: 2,  # DeleteGroups
    69: 0,  # ConsumerGroupDescribe
}


def error_name(code: int) -> str | None:
    """The error's name, or None for no error (how the façade's results say success)."""
    return kafka_error_name(code) if code else None


@dataclass(frozen=True, slots=True)
class GroupSummary:
    group_id: str
    group_type: str  # "classic" or "consumer" (KIP-848)
    protocol_type: str
    state: str
    coordinator: int


@dataclass(frozen=True, slots=True)
class GroupMemberInfo:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    assignment: list[TopicPartition]


@dataclass(frozen=True, slots=True)
class GroupOffsetInfo:
    topic: str
    partition: int
    committed: int  # -1: nothing committed
    log_end_offset: int | None  # the partition's end as consumers see it (None: unknown)
    lag: int | None
    metadata: str | None = None


@dataclass(frozen=True, slots=True)
class GroupDetail:
    group_id: str
    group_type: str
    state: str
    protocol_type: str
    protocol: str
    coordinator: int
    members: list[GroupMemberInfo]
    offsets: list[GroupOffsetInfo]
    error: str | None = None
    total_lag: int = 0


@dataclass(frozen=True, slots=True)
class GroupList:
    groups: list[GroupSummary]
    # Brokers that did not answer ListGroups, with the reason: the list may miss their groups.
    unreachable: dict[int, str] = field(default_factory=dict)


def decode_assignment(data: bytes) -> list[TopicPartition]:
    """A classic consumer's assignment (ConsumerProtocolAssignment: int16 version + body);
    an empty or non-consumer assignment gives no partitions."""
    if len(data) < 2:
        return []
    version = int.from_bytes(data[:2], "big", signed=True)
    try:
        assignment = decode_message(ConsumerProtocolAssignment, data[2:], max(0, min(version, 3)))
    except ProtocolError:
        return []
    return sorted((t.topic, p) for t in assignment.assigned_partitions for p in t.partitions)


class ClusterGroups:
    def __init__(
        self,
        image: Callable[[], MetadataImage | None],
        endpoint_of: Callable[[int], tuple[str, int] | None],
        timeout_s: float = 10.0,
        ssl_context: Callable[[], ssl.SSLContext | None] = lambda: None,
    ) -> None:
        self._image = image
        self._endpoint_of = endpoint_of
        self.timeout_s = timeout_s
        # The inter-broker listener's TLS (the endpoints are that listener's).
        self._ssl_context = ssl_context

    # ----------------------------------------------------------------- reads

    async def list_groups(self) -> GroupList:
        image = self._image()
        if image is None:
            return GroupList([])
        brokers = image.unfenced_brokers()
        answers = await asyncio.gather(
            *(self._ask(b, ListGroupsRequest(states_filter=[], types_filter=[])) for b in brokers)
        )
        groups: list[GroupSummary] = []
        unreachable: dict[int, str] = {}
        for broker, answer in zip(brokers, answers, strict=True):
            if not isinstance(answer, ListGroupsResponse):
                unreachable[broker] = str(answer)
                continue
            if answer.error_code:
                unreachable[broker] = error_name(answer.error_code) or ""
            for g in answer.groups:
                groups.append(
                    GroupSummary(
                        g.group_id,
                        (g.group_type or "classic").lower(),
                        g.protocol_type,
                        g.group_state or "",
                        broker,
                    )
                )
        return GroupList(sorted(groups, key=lambda g: g.group_id), unreachable)

    def _offsets_topic_exists(self) -> bool:
        image = self._image()
        return image is not None and OFFSETS_TOPIC in image.topics

    def coordinator_of(self, group_id: str) -> int | None:
        image = self._image()
        topic = image.topics.get(OFFSETS_TOPIC) if image is not None else None
        if topic is None or not topic.partitions:
            return None
        state = topic.partitions.get(partition_for(group_id, len(topic.partitions)))
        return state.leader if state is not None and state.leader >= 0 else None

    async def describe_group(self, group_id: str) -> GroupDetail | None:
        """The group's members, assignment, committed offsets and lag; None if no group of
        that id exists (nothing committed and no members)."""
        if not self._offsets_topic_exists():
            return None  # no group was ever coordinated: none exists
        coordinator = self.coordinator_of(group_id)
        if coordinator is None:
            return _failed(group_id, -1, "COORDINATOR_NOT_AVAILABLE")
        request = DescribeGroupsRequest(groups=[group_id], include_authorized_operations=False)
        described = await self._ask(coordinator, request)
        if not isinstance(described, DescribeGroupsResponse) or not described.groups:
            return _failed(group_id, coordinator, str(described))
        classic = described.groups[0]
        if classic.error_code:
            return _failed(group_id, coordinator, error_name(classic.error_code))
        group_type, state = "classic", classic.group_state
        protocol_type, protocol = classic.protocol_type, classic.protocol_data
        members = [self._classic_member(m, protocol_type) for m in classic.members]
        if state == "Dead":
            # Not a classic group: it may be a KIP-848 consumer group.
            request_848 = ConsumerGroupDescribeRequest(group_ids=[group_id])
            consumer = await self._ask(coordinator, request_848)
            if isinstance(consumer, ConsumerGroupDescribeResponse) and consumer.groups:
                g = consumer.groups[0]
                if not g.error_code:
                    group_type, state, protocol_type = "consumer", g.group_state, "consumer"
                    members = [self._consumer_member(m) for m in g.members]
        offsets = await self._committed(coordinator, group_id)
        if isinstance(offsets, str):
            return _failed(group_id, coordinator, offsets)
        if state == "Dead" and not offsets:
            return None
        with_lag = await self._with_lag(offsets)
        return GroupDetail(
            group_id,
            group_type,
            state,
            protocol_type,
            protocol,
            coordinator,
            members,
            with_lag,
            total_lag=sum(o.lag or 0 for o in with_lag),
        )

    @staticmethod
    def _classic_member(
        m: DescribeGroupsResponse.DescribedGroupMember, protocol_type: str
    ) -> GroupMemberInfo:
        assignment = bytes(m.member_assignment) if protocol_type == "consumer" else b""
        return GroupMemberInfo(
            m.member_id,
            m.group_instance_id,
            m.client_id,
            m.client_host,
            decode_assignment(assignment),
        )

    def _consumer_member(self, m: ConsumerGroupDescribeResponse.Member) -> GroupMemberInfo:
        image = self._image()
        names = {t.topic_id: t.name for t in image.topics.values()} if image else {}
        assigned = sorted(
            (names.get(t.topic_id, t.topic_name or str(t.topic_id)), p)
            for t in (m.assignment.topic_partitions if m.assignment else [])
            for p in t.partitions
        )
        return GroupMemberInfo(m.member_id, m.instance_id, m.client_id, m.client_host, assigned)

    async def _committed(
        self, coordinator: int, group_id: str
    ) -> list[tuple[TopicPartition, int, str | None]] | str:
        answer = await self._ask(
            coordinator, OffsetFetchRequest(group_id=group_id, topics=None, require_stable=False)
        )
        if not isinstance(answer, OffsetFetchResponse):
            return str(answer)
        if answer.error_code:
            return error_name(answer.error_code) or ""
        return sorted(
            ((t.name, p.partition_index), p.committed_offset, p.metadata)
            for t in answer.topics
            for p in t.partitions
            if not p.error_code
        )

    async def _with_lag(
        self, offsets: list[tuple[TopicPartition, int, str | None]]
    ) -> list[GroupOffsetInfo]:
        partitions = [tp for tp, _, _ in offsets]
        ends, starts = await asyncio.gather(
            self.end_offsets(partitions), self.list_offsets(partitions, EARLIEST_TIMESTAMP)
        )
        out = []
        for (topic, index), committed, metadata in offsets:
            end = ends.get((topic, index))
            # Lag counts from the log start at the earliest: offsets before it are gone (a
            # consumer resumes at the log start), and it is never negative.
            start = starts.get((topic, index))
            lag = None
            if end is not None and committed >= 0:
                lag = max(end - max(committed, start if start is not None else 0), 0)
            out.append(GroupOffsetInfo(topic, index, committed, end, lag, metadata))
        return out

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The high watermark of each partition (ListOffsets LATEST to its leader)."""
        return await self.list_offsets(partitions, LATEST_TIMESTAMP)

    async def list_offsets(
        self, partitions: Iterable[TopicPartition], timestamp: int
    ) -> dict[TopicPartition, int]:
        """ListOffsets to each partition's leader: LATEST (-1), EARLIEST (-2) or the first
        offset at or after a timestamp (-1 when there is none). Partitions without a leader
        or an answer are left out."""
        image = self._image()
        if image is None:
            return {}
        by_leader: dict[int, dict[str, list[int]]] = {}
        for topic, index in partitions:
            state = image.partition(topic, index)
            if state is not None and state.leader >= 0:
                by_leader.setdefault(state.leader, {}).setdefault(topic, []).append(index)
        leaders = list(by_leader)
        answers = await asyncio.gather(
            *(
                self._ask(
                    leader,
                    ListOffsetsRequest(
                        replica_id=-1,
                        isolation_level=0,
                        topics=[
                            ListOffsetsRequest.ListOffsetsTopic(
                                name=topic,
                                partitions=[
                                    ListOffsetsRequest.ListOffsetsPartition(
                                        partition_index=i, timestamp=timestamp
                                    )
                                    for i in indexes
                                ],
                            )
                            for topic, indexes in by_leader[leader].items()
                        ],
                    ),
                )
                for leader in leaders
            )
        )
        out: dict[TopicPartition, int] = {}
        for answer in answers:
            if isinstance(answer, ListOffsetsResponse):
                for t in answer.topics:
                    for p in t.partitions:
                        if not p.error_code:
                            out[(t.name, p.partition_index)] = p.offset
        return out

    # ---------------------------------------------------------------- writes

    async def alter_offsets(
        self, group_id: str, offsets: dict[TopicPartition, int]
    ) -> dict[TopicPartition, str | None]:
        """Set the committed offsets of an empty group (error name per partition, None = ok).
        The coordinator refuses while the group has members."""
        coordinator = self.coordinator_of(group_id)
        if coordinator is None:
            return dict.fromkeys(offsets, "COORDINATOR_NOT_AVAILABLE")
        by_topic: dict[str, list[tuple[int, int]]] = {}
        for (topic, index), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append((index, offset))
        request = OffsetCommitRequest(
            group_id=group_id,
            generation_id_or_member_epoch=-1,
            member_id="",
            topics=[
                OffsetCommitRequest.OffsetCommitRequestTopic(
                    name=topic,
                    partitions=[
                        OffsetCommitRequest.OffsetCommitRequestPartition(
                            partition_index=i, committed_offset=o, committed_metadata=""
                        )
                        for i, o in parts
                    ],
                )
                for topic, parts in by_topic.items()
            ],
        )
        answer = await self._ask(coordinator, request)
        if not isinstance(answer, OffsetCommitResponse):
            return dict.fromkeys(offsets, str(answer))
        return {
            (t.name, p.partition_index): error_name(p.error_code)
            for t in answer.topics
            for p in t.partitions
        }

    async def delete_group(self, group_id: str) -> str | None:
        """Delete an empty group and its offsets: None, or the error name."""
        if not self._offsets_topic_exists():
            return "GROUP_ID_NOT_FOUND"
        coordinator = self.coordinator_of(group_id)
        if coordinator is None:
            return "COORDINATOR_NOT_AVAILABLE"
        answer = await self._ask(coordinator, DeleteGroupsRequest(groups_names=[group_id]))
        if not isinstance(answer, DeleteGroupsResponse) or not answer.results:
            return str(answer)
        return error_name(answer.results[0].error_code)

    # ------------------------------------------------------------------- wire

    async def _ask(self, broker: int, request: Message) -> Message | str:
        return await self._ask_at(broker, request, VERSIONS[type(request).API_KEY or 0])

    async def ask_at(self, broker: int, request: Message, version: int) -> Message | str:
        """One request to one broker at `version`: its answer, or why there is none."""
        return await self._ask_at(broker, request, version)

    async def _ask_at(self, broker: int, request: Message, version: int) -> Message | str:
        """The broker's answer, or why there is none (as text)."""
        endpoint = self._endpoint_of(broker)
        if endpoint is None:
            return f"broker {broker} has no known endpoint"
        conn = KafkaConnection(
            endpoint[0], endpoint[1], client_id=CLIENT_ID, ssl=self._ssl_context()
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                await conn.connect()
                return await conn.send(request, version)
        except UNREACHABLE as e:
            return f"broker {broker} at {endpoint[0]}:{endpoint[1]}: {e or type(e).__name__}"
        finally:
            with contextlib.suppress(*UNREACHABLE):
                await conn.close()


def _failed(group_id: str, coordinator: int, error: str | None) -> GroupDetail:
    return GroupDetail(group_id, "", "", "", "", coordinator, [], [], error=error or "unknown")
