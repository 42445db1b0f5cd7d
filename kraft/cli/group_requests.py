"""Consumer group requests for the CLI: coordinator lookup, listing, describing, committed
offsets, offset commits by an admin (the group must be empty, as in kafka-consumer-groups.sh)
and deletion."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from kraft.net.protocol import (
    ApiKey,
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
    ConsumerProtocolAssignment,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    ErrorCode,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    ProtocolError,
    decode_message,
)

from .kafka_admin import KafkaAdmin, KafkaError, NotFound, check

GROUP_KEY = 0
# Errors that mean "ask again shortly": the coordinator is loading or moving.
_RETRIABLE = {
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_COORDINATOR,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
}
_RETRY_BACKOFF_S = 0.1


async def find_coordinator(admin: KafkaAdmin, group: str) -> int:
    """The coordinator of `group`, retried while the coordinator is not available (the offsets
    topic may still be being created), within the admin's timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + admin.timeout
    while True:
        conn = await admin.connection(admin.any_broker())
        request = FindCoordinatorRequest(key_type=GROUP_KEY)
        if admin.version(conn, request, None) >= 4:
            request.coordinator_keys = [group]
        else:
            request.key = group
        response = await admin.call(admin.any_broker(), request, FindCoordinatorResponse)
        if response.coordinators:
            c = response.coordinators[0]
            code, node_id, message = c.error_code, c.node_id, c.error_message
        else:
            code, node_id, message = response.error_code, response.node_id, response.error_message
        if code == 0:
            if node_id not in admin.brokers:
                await admin.refresh_metadata()
            return node_id
        if code not in _RETRIABLE or loop.time() >= deadline:
            check(code, f"coordinator of group {group!r}", message)
        await asyncio.sleep(_RETRY_BACKOFF_S)  # backoff between retries, not a wait


async def list_groups(admin: KafkaAdmin) -> list[dict[str, Any]]:
    """Every group of every broker (each broker lists the groups it coordinates)."""
    groups: dict[str, dict[str, Any]] = {}
    for node_id in sorted(admin.brokers):
        response = await admin.call(node_id, ListGroupsRequest(), ListGroupsResponse)
        check(response.error_code, f"ListGroups on broker {node_id}")
        for g in response.groups:
            groups[g.group_id] = {
                "group": g.group_id,
                "protocol_type": g.protocol_type,
                "state": g.group_state or None,
                "type": g.group_type or None,
                "coordinator": node_id,
            }
    return [groups[name] for name in sorted(groups)]


def _decode_assignment(data: bytes | None) -> list[tuple[str, int]]:
    if not data or len(data) < 2:
        return []
    (version,) = struct.unpack_from(">h", data)
    try:
        assignment = decode_message(ConsumerProtocolAssignment, bytes(data[2:]), min(version, 3))
    except ProtocolError:
        return []
    return [(tp.topic, p) for tp in assignment.assigned_partitions for p in sorted(tp.partitions)]


async def describe_group(admin: KafkaAdmin, group: str, coordinator: int) -> dict[str, Any]:
    """State and members (with their assigned partitions) of `group`; NotFound if the
    coordinator does not know it."""
    if admin.supports(ApiKey.CONSUMER_GROUP_DESCRIBE):
        response = await admin.call(
            coordinator,
            ConsumerGroupDescribeRequest(group_ids=[group]),
            ConsumerGroupDescribeResponse,
        )
        g = response.groups[0]
        if g.error_code == 0:
            return {
                "group": group,
                "state": g.group_state,
                "protocol_type": "consumer",
                "protocol": g.assignor_name,
                "coordinator": coordinator,
                "members": [
                    {
                        "member_id": m.member_id,
                        "client_id": m.client_id,
                        "host": m.client_host,
                        "assignment": sorted(
                            (tp.topic_name, p)
                            for tp in m.assignment.topic_partitions
                            for p in tp.partitions
                        ),
                    }
                    for m in g.members
                ],
            }
    classic = await admin.call(
        coordinator, DescribeGroupsRequest(groups=[group]), DescribeGroupsResponse
    )
    d = classic.groups[0]
    if d.error_code == ErrorCode.GROUP_ID_NOT_FOUND or d.group_state == "Dead":
        raise NotFound(ErrorCode.GROUP_ID_NOT_FOUND, f"group {group!r}")
    check(d.error_code, f"group {group!r}")
    return {
        "group": group,
        "state": d.group_state,
        "protocol_type": d.protocol_type,
        "protocol": d.protocol_data,
        "coordinator": coordinator,
        "members": [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "assignment": _decode_assignment(m.member_assignment)
                if d.protocol_type == "consumer"
                else [],
            }
            for m in d.members
        ],
    }


async def committed_offsets(
    admin: KafkaAdmin, group: str, coordinator: int
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> committed offset of every partition the group committed."""
    # v7 is the last with the single-group shape; every Kafka 3.x/4.x broker speaks it.
    request = OffsetFetchRequest(group_id=group, topics=None)
    response = await admin.call(
        coordinator, request, OffsetFetchResponse, max_version=7, min_version=2
    )
    check(response.error_code, f"group {group!r}")
    out = {}
    for t in response.topics:
        for p in t.partitions:
            check(p.error_code, f"group {group!r} partition {t.name}-{p.partition_index}")
            if p.committed_offset >= 0:
                out[(t.name, p.partition_index)] = p.committed_offset
    return out


async def commit_offsets(
    admin: KafkaAdmin, group: str, coordinator: int, offsets: dict[tuple[str, int], int]
) -> None:
    """Commit as an admin (no generation): the coordinator accepts it for an empty group."""
    topics: dict[str, list[OffsetCommitRequest.OffsetCommitRequestPartition]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        topics.setdefault(topic, []).append(
            OffsetCommitRequest.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset
            )
        )
    request = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[
            OffsetCommitRequest.OffsetCommitRequestTopic(name=name, partitions=parts)
            for name, parts in topics.items()
        ],
    )
    # v10+ names topics by id.
    response = await admin.call(
        coordinator, request, OffsetCommitResponse, max_version=9, min_version=2
    )
    for t in response.topics:
        for p in t.partitions:
            check(p.error_code, f"commit of group {group!r} {t.name}-{p.partition_index}")


async def delete_group(admin: KafkaAdmin, group: str, coordinator: int) -> None:
    response = await admin.call(
        coordinator, DeleteGroupsRequest(groups_names=[group]), DeleteGroupsResponse
    )
    for result in response.results:
        if result.error_code == ErrorCode.GROUP_ID_NOT_FOUND:
            raise NotFound(result.error_code, f"group {group!r}")
        if result.error_code == ErrorCode.NON_EMPTY_GROUP:
            raise KafkaError(result.error_code, f"group {group!r} has active members")
        check(result.error_code, f"group {group!r}")
