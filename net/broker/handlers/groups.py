"""Consumer groups on the wire: FindCoordinator, the classic group protocol (JoinGroup,
SyncGroup, Heartbeat, LeaveGroup), committed offsets (OffsetCommit, OffsetFetch,
OffsetDelete) and group administration (DescribeGroups, ListGroups, DeleteGroups).

Each handler turns the request of any advertised version into a call of the broker's
`GroupCoordinator` (net/groups) and its result into the response of that version. Requests
that wait (JoinGroup, SyncGroup, commits and deletions) await the coordinator's callback.
Offsets of KIP-848 consumer groups go to the `ConsumerGroupCoordinator` instead, which also
answers DescribeGroups, ListGroups and DeleteGroups for both kinds of groups.

FindCoordinator for transactional ids (key type 1) answers COORDINATOR_NOT_AVAILABLE: this
broker has no transaction coordinator (transactional produce is refused too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Generic, TypeVar

from kraft.net.groups.coordinator import (
    ALL_GROUP_OPERATIONS,
    CommittedOffset,
    JoinRequest,
    LeavingMember,
    SyncRequest,
    TopicPartition,
)
from kraft.net.groups.state import JoinResult, SyncResult
from kraft.net.protocol import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    ErrorCode,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    RequestHeader,
    SyncGroupRequest,
    SyncGroupResponse,
)
from kraft.net.server import Connection

from .context import GroupContext

T = TypeVar("T")

GROUP_KEY = 0
TRANSACTION_KEY = 1
# DescribeGroups v3+ without include_authorized_operations.
NO_AUTHORIZED_OPERATIONS = -(2**31)


class _Reply(Generic[T]):
    """The callback a waiting coordinator call completes, and the future to await."""

    def __init__(self) -> None:
        self.future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def __call__(self, value: T) -> None:
        if not self.future.done():  # a closed connection cancels the wait
            self.future.set_result(value)


def _by_topic(items: Iterable[tuple[TopicPartition, T]]) -> dict[str, list[tuple[int, T]]]:
    """Per-partition results grouped by topic, in the order given (that of the request)."""
    out: dict[str, list[tuple[int, T]]] = {}
    for (topic, index), value in items:
        out.setdefault(topic, []).append((index, value))
    return out


def _authorized_operations(include: bool) -> int:
    # No authorizer: everything is allowed.
    return ALL_GROUP_OPERATIONS if include else NO_AUTHORIZED_OPERATIONS


def _client_host(conn: Connection) -> str:
    """The client's address as Kafka reports it in DescribeGroups ("/127.0.0.1")."""
    host = conn.peer.rsplit(":", 1)[0] if ":" in conn.peer else conn.peer
    return "/" + host


# ------------------------------------------------------------------- FindCoordinator


async def handle_find_coordinator(
    ctx: GroupContext, header: RequestHeader, request: FindCoordinatorRequest, conn: Connection
) -> FindCoordinatorResponse:
    version = header.api_version
    keys = list(request.coordinator_keys) if version >= 4 else [request.key]
    results: list[FindCoordinatorResponse.Coordinator] = []
    for key in keys:
        message: str | None = None
        if request.key_type == GROUP_KEY:
            code, node, host, port = await ctx.groups.find_coordinator(key, conn.listener)
        elif request.key_type == TRANSACTION_KEY:
            code, node, host, port = ErrorCode.COORDINATOR_NOT_AVAILABLE, -1, "", -1
            message = "this broker has no transaction coordinator"
        else:
            code, node, host, port = ErrorCode.INVALID_REQUEST, -1, "", -1
            message = f"coordinator key type {request.key_type} is not supported"
        results.append(
            FindCoordinatorResponse.Coordinator(
                key=key, node_id=node, host=host, port=port, error_code=code, error_message=message
            )
        )
    if version >= 4:
        return FindCoordinatorResponse(coordinators=results)
    r = results[0]
    return FindCoordinatorResponse(
        error_code=r.error_code,
        error_message=r.error_message if version >= 1 else "",
        node_id=r.node_id,
        host=r.host,
        port=r.port,
    )


# ---------------------------------------------------------------- group membership


async def handle_join_group(
    ctx: GroupContext, header: RequestHeader, request: JoinGroupRequest, conn: Connection
) -> JoinGroupResponse:
    version = header.api_version
    instance_id = request.group_instance_id if version >= 5 else None
    join = JoinRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        protocol_type=request.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in request.protocols],
        session_timeout_ms=request.session_timeout_ms,
        # v0 has no rebalance timeout: the session timeout is used, as in Kafka.
        rebalance_timeout_ms=(
            request.rebalance_timeout_ms if version >= 1 else request.session_timeout_ms
        ),
        group_instance_id=instance_id,
        client_id=header.client_id or "",
        client_host=_client_host(conn),
        require_known_member_id=version >= 4 and instance_id is None,
        supports_skip_assignment=version >= 9,
        reason=request.reason if version >= 8 else None,
    )
    reply: _Reply[JoinResult] = _Reply()
    # A KIP-848 consumer group of this id: converted if empty, else refused.
    error = ctx.groups.consumer.prepare_classic_join(join.group_id)
    if error:
        reply(JoinResult(error, join.member_id))
    else:
        ctx.groups.coordinator.join_group(join, reply)
    result = await reply.future
    return JoinGroupResponse(
        error_code=result.error,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type if version >= 7 else None,
        # Nullable from v7; older clients read "" as "no protocol".
        protocol_name=result.protocol_name if version >= 7 else (result.protocol_name or ""),
        leader=result.leader_id,
        skip_assignment=result.skip_assignment if version >= 9 else False,
        member_id=result.member_id,
        members=[
            JoinGroupResponse.JoinGroupResponseMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id if version >= 5 else None,
                metadata=m.metadata,
            )
            for m in result.members
        ],
    )


async def handle_sync_group(
    ctx: GroupContext, header: RequestHeader, request: SyncGroupRequest, conn: Connection
) -> SyncGroupResponse:
    version = header.api_version
    sync = SyncRequest(
        group_id=request.group_id,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id if version >= 3 else None,
        protocol_type=request.protocol_type if version >= 5 else None,
        protocol_name=request.protocol_name if version >= 5 else None,
        assignments={a.member_id: bytes(a.assignment) for a in request.assignments},
    )
    reply: _Reply[SyncResult] = _Reply()
    ctx.groups.coordinator.sync_group(sync, reply)
    result = await reply.future
    return SyncGroupResponse(
        error_code=result.error,
        protocol_type=result.protocol_type if version >= 5 else None,
        protocol_name=result.protocol_name if version >= 5 else None,
        assignment=result.assignment,
    )


async def handle_heartbeat(
    ctx: GroupContext, header: RequestHeader, request: HeartbeatRequest, conn: Connection
) -> HeartbeatResponse:
    code = ctx.groups.coordinator.heartbeat(
        request.group_id,
        request.generation_id,
        request.member_id,
        request.group_instance_id if header.api_version >= 3 else None,
    )
    return HeartbeatResponse(error_code=code)


async def handle_leave_group(
    ctx: GroupContext, header: RequestHeader, request: LeaveGroupRequest, conn: Connection
) -> LeaveGroupResponse:
    version = header.api_version
    if version >= 3:
        leaving = [
            LeavingMember(m.member_id, m.group_instance_id, m.reason if version >= 5 else None)
            for m in request.members
        ]
    else:
        leaving = [LeavingMember(request.member_id)]
    code, results = ctx.groups.coordinator.leave_group(request.group_id, leaving)
    if version < 3:
        return LeaveGroupResponse(error_code=code or (results[0][1] if results else 0))
    return LeaveGroupResponse(
        error_code=code,
        members=[
            LeaveGroupResponse.MemberResponse(
                member_id=m.member_id, group_instance_id=m.group_instance_id, error_code=error
            )
            for m, error in results
        ],
    )


# ---------------------------------------------------------------------------- offsets


async def handle_offset_commit(
    ctx: GroupContext, header: RequestHeader, request: OffsetCommitRequest, conn: Connection
) -> OffsetCommitResponse:
    version = header.api_version
    order: list[TopicPartition] = []
    results: dict[TopicPartition, int] = {}
    offsets: dict[TopicPartition, CommittedOffset] = {}
    for topic in request.topics:
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            order.append(tp)
            if ctx.image.partition(topic.name, p.partition_index) is None:
                results[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                offsets[tp] = CommittedOffset(
                    p.committed_offset,
                    p.committed_leader_epoch if version >= 6 else -1,
                    p.committed_metadata or "",
                )
    if offsets and ctx.groups.consumer.is_consumer_group(request.group_id):
        # A KIP-848 group: v9+ carries the member epoch in the generation field.
        consumer_reply: _Reply[dict[TopicPartition, int]] = _Reply()
        ctx.groups.consumer.commit_offsets(
            request.group_id,
            request.generation_id_or_member_epoch,
            request.member_id,
            request.group_instance_id if version >= 7 else None,
            offsets,
            consumer_reply,
            api_version=version,
        )
        results.update(await consumer_reply.future)
    elif offsets:
        reply: _Reply[dict[TopicPartition, int]] = _Reply()
        ctx.groups.coordinator.commit_offsets(
            request.group_id,
            request.generation_id_or_member_epoch,
            request.member_id,
            request.group_instance_id if version >= 7 else None,
            offsets,
            reply,
            # v9 (Kafka 4.0) names a group the coordinator does not know.
            missing_group_error=(
                ErrorCode.GROUP_ID_NOT_FOUND if version >= 9 else ErrorCode.ILLEGAL_GENERATION
            ),
        )
        results.update(await reply.future)
    return OffsetCommitResponse(
        topics=[
            OffsetCommitResponse.OffsetCommitResponseTopic(
                name=name,
                partitions=[
                    OffsetCommitResponse.OffsetCommitResponsePartition(
                        partition_index=index, error_code=error
                    )
                    for index, error in parts
                ],
            )
            for name, parts in _by_topic((tp, results[tp]) for tp in order).items()
        ]
    )


def _fetched(
    ctx: GroupContext,
    group_id: str,
    partitions: list[TopicPartition] | None,
    member_id: str | None = None,
    member_epoch: int = -1,
) -> tuple[int, dict[str, list[tuple[int, CommittedOffset | None]]]]:
    consumer = ctx.groups.consumer
    if consumer.is_consumer_group(group_id):
        # v9+: members of KIP-848 groups say who they are; their epoch must be current.
        code, found = consumer.fetch_offsets(group_id, partitions, member_id, member_epoch)
    else:
        code, found = ctx.groups.coordinator.fetch_offsets(group_id, partitions)
    return code, _by_topic(found)


def _wanted(
    topics: list[OffsetFetchRequest.OffsetFetchRequestTopic]
    | list[OffsetFetchRequest.OffsetFetchRequestTopics]
    | None,
) -> list[TopicPartition] | None:
    """The partitions an OffsetFetch asks for; None (v2+): all of the group's."""
    if topics is None:
        return None
    return [(t.name, i) for t in topics for i in t.partition_indexes]


async def handle_offset_fetch(
    ctx: GroupContext, header: RequestHeader, request: OffsetFetchRequest, conn: Connection
) -> OffsetFetchResponse:
    """Committed offsets (-1 where none); all of a group's when the topics are null (v2+).
    `require_stable` changes nothing: only replicated commits are ever visible."""
    version = header.api_version
    if version >= 8:
        groups = []
        for g in request.groups:
            wanted = _wanted(g.topics)
            code, by_topic = (
                _fetched(ctx, g.group_id, wanted, g.member_id, g.member_epoch)
                if version >= 9
                else _fetched(ctx, g.group_id, wanted)
            )
            groups.append(
                OffsetFetchResponse.OffsetFetchResponseGroup(
                    group_id=g.group_id,
                    error_code=code,
                    topics=[
                        OffsetFetchResponse.OffsetFetchResponseTopics(
                            name=name,
                            partitions=[
                                OffsetFetchResponse.OffsetFetchResponsePartitions(
                                    partition_index=index,
                                    committed_offset=c.offset if c else -1,
                                    committed_leader_epoch=c.leader_epoch if c else -1,
                                    metadata=c.metadata if c else "",
                                )
                                for index, c in parts
                            ],
                        )
                        for name, parts in by_topic.items()
                    ],
                )
            )
        return OffsetFetchResponse(groups=groups)
    wanted = _wanted(request.topics)
    code, by_topic = _fetched(ctx, request.group_id, wanted)
    if code and version >= 2:
        return OffsetFetchResponse(error_code=code)
    if code:
        # v1 has no top-level error: every requested partition carries it.
        by_topic = _by_topic((tp, None) for tp in wanted or [])
    return OffsetFetchResponse(
        error_code=code if version >= 2 else 0,
        topics=[
            OffsetFetchResponse.OffsetFetchResponseTopic(
                name=name,
                partitions=[
                    OffsetFetchResponse.OffsetFetchResponsePartition(
                        partition_index=index,
                        committed_offset=c.offset if c else -1,
                        committed_leader_epoch=c.leader_epoch if c and version >= 5 else -1,
                        metadata=c.metadata if c else "",
                        error_code=code,
                    )
                    for index, c in parts
                ],
            )
            for name, parts in by_topic.items()
        ],
    )


async def handle_offset_delete(
    ctx: GroupContext, header: RequestHeader, request: OffsetDeleteRequest, conn: Connection
) -> OffsetDeleteResponse:
    order: list[TopicPartition] = []
    results: dict[TopicPartition, int] = {}
    known: list[TopicPartition] = []
    for topic in request.topics:
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            order.append(tp)
            if ctx.image.partition(topic.name, p.partition_index) is None:
                results[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                known.append(tp)
    reply: _Reply[tuple[int, dict[TopicPartition, int]]] = _Reply()
    delete_offsets = (
        ctx.groups.consumer.delete_offsets
        if ctx.groups.consumer.is_consumer_group(request.group_id)
        else ctx.groups.coordinator.delete_offsets
    )
    delete_offsets(request.group_id, known, lambda code, errors: reply((code, errors)))
    code, errors = await reply.future
    if code:
        return OffsetDeleteResponse(error_code=code)
    results.update(errors)
    return OffsetDeleteResponse(
        topics=[
            OffsetDeleteResponse.OffsetDeleteResponseTopic(
                name=name,
                partitions=[
                    OffsetDeleteResponse.OffsetDeleteResponsePartition(
                        partition_index=index, error_code=error
                    )
                    for index, error in parts
                ],
            )
            for name, parts in _by_topic(
                (tp, results.get(tp, ErrorCode.NONE)) for tp in order
            ).items()
        ]
    )


# ------------------------------------------------------------------ administration


async def handle_describe_groups(
    ctx: GroupContext, header: RequestHeader, request: DescribeGroupsRequest, conn: Connection
) -> DescribeGroupsResponse:
    version = header.api_version
    operations = _authorized_operations(version >= 3 and request.include_authorized_operations)
    out = []
    for group_id in request.groups:
        code, d = ctx.groups.consumer.describe_group(group_id)  # either kind
        out.append(
            DescribeGroupsResponse.DescribedGroup(
                error_code=code,
                group_id=group_id,
                group_state=d.state,
                protocol_type=d.protocol_type,
                protocol_data=d.protocol_data,
                members=[
                    DescribeGroupsResponse.DescribedGroupMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id if version >= 4 else None,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=m.metadata,
                        member_assignment=m.assignment,
                    )
                    for m in d.members
                ],
                authorized_operations=operations,
            )
        )
    return DescribeGroupsResponse(groups=out)


async def handle_list_groups(
    ctx: GroupContext, header: RequestHeader, request: ListGroupsRequest, conn: Connection
) -> ListGroupsResponse:
    version = header.api_version
    code, groups = ctx.groups.consumer.list_groups(  # both kinds
        request.states_filter if version >= 4 else (),
        request.types_filter if version >= 5 else (),
    )
    return ListGroupsResponse(
        error_code=code,
        groups=[
            ListGroupsResponse.ListedGroup(
                group_id=g.group_id,
                protocol_type=g.protocol_type,
                group_state=g.state if version >= 4 else "",
                group_type=g.group_type if version >= 5 else "",
            )
            for g in groups
        ],
    )


async def handle_delete_groups(
    ctx: GroupContext, header: RequestHeader, request: DeleteGroupsRequest, conn: Connection
) -> DeleteGroupsResponse:
    reply: _Reply[dict[str, int]] = _Reply()
    ctx.groups.consumer.delete_groups(list(request.groups_names), reply)  # both kinds
    results = await reply.future
    return DeleteGroupsResponse(
        results=[
            DeleteGroupsResponse.DeletableGroupResult(group_id=g, error_code=results[g])
            for g in dict.fromkeys(request.groups_names)
        ]
    )
