"""KIP-848 consumer groups on the wire: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe
(69), turned into calls of the broker's `ConsumerGroupCoordinator` (net/groups). Offsets and
the group administration APIs of both kinds of groups are in `groups.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from kraft.net.groups.consumer_coordinator import HeartbeatRequest, HeartbeatResult
from kraft.net.protocol import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
    RequestHeader,
)
from kraft.net.server import Connection

from .context import GroupContext
from .groups import _authorized_operations, _client_host, _Reply


async def handle_consumer_group_heartbeat(
    ctx: GroupContext,
    header: RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
    conn: Connection,
) -> ConsumerGroupHeartbeatResponse:
    version = header.api_version
    owned: dict[uuid.UUID, frozenset[int]] | None = None
    if request.topic_partitions is not None:
        owned = {}
        for tp in request.topic_partitions:
            owned[tp.topic_id] = owned.get(tp.topic_id, frozenset()) | frozenset(tp.partitions)
    heartbeat = HeartbeatRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        member_epoch=request.member_epoch,
        instance_id=request.instance_id,
        rack_id=request.rack_id,
        rebalance_timeout_ms=request.rebalance_timeout_ms,
        subscribed_topic_names=(
            None if request.subscribed_topic_names is None else list(request.subscribed_topic_names)
        ),
        subscribed_topic_regex=request.subscribed_topic_regex if version >= 1 else None,
        server_assignor=request.server_assignor,
        owned=owned,
        client_id=header.client_id or "",
        client_host=_client_host(conn),
        api_version=version,
    )
    reply: _Reply[HeartbeatResult] = _Reply()
    ctx.groups.consumer.heartbeat(heartbeat, reply)
    result = await reply.future
    assignment = None
    if result.assignment is not None:
        assignment = ConsumerGroupHeartbeatResponse.Assignment(
            topic_partitions=_heartbeat_partitions(result.assignment)
        )
    return ConsumerGroupHeartbeatResponse(
        error_code=result.error,
        error_message=result.message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval_ms=result.heartbeat_interval_ms,
        assignment=assignment,
    )


def _heartbeat_partitions(
    assignment: Mapping[uuid.UUID, frozenset[int]],
) -> list[ConsumerGroupHeartbeatResponse.TopicPartitions]:
    return [
        ConsumerGroupHeartbeatResponse.TopicPartitions(topic_id=topic_id, partitions=sorted(ps))
        for topic_id, ps in sorted(assignment.items(), key=lambda kv: kv[0].bytes)
        if ps
    ]


async def handle_consumer_group_describe(
    ctx: GroupContext,
    header: RequestHeader,
    request: ConsumerGroupDescribeRequest,
    conn: Connection,
) -> ConsumerGroupDescribeResponse:
    operations = _authorized_operations(request.include_authorized_operations)
    out = []
    for group_id in request.group_ids:
        code, message, d = ctx.groups.consumer.describe(group_id)
        if d is None:
            out.append(
                ConsumerGroupDescribeResponse.DescribedGroup(
                    error_code=code,
                    error_message=message,
                    group_id=group_id,
                    authorized_operations=operations,
                )
            )
            continue
        names = d.topic_names

        def assignment(
            a: Mapping[uuid.UUID, frozenset[int]], names: Mapping[uuid.UUID, str] = names
        ) -> ConsumerGroupDescribeResponse.Assignment:
            return ConsumerGroupDescribeResponse.Assignment(
                topic_partitions=[
                    ConsumerGroupDescribeResponse.TopicPartitions(
                        topic_id=topic_id, topic_name=names.get(topic_id, ""), partitions=sorted(ps)
                    )
                    for topic_id, ps in sorted(a.items(), key=lambda kv: names.get(kv[0], ""))
                    if ps
                ]
            )

        out.append(
            ConsumerGroupDescribeResponse.DescribedGroup(
                group_id=group_id,
                group_state=d.state,
                group_epoch=d.group_epoch,
                assignment_epoch=d.assignment_epoch,
                assignor_name=d.assignor,
                members=[
                    ConsumerGroupDescribeResponse.Member(
                        member_id=dm.member.member_id,
                        instance_id=dm.member.instance_id,
                        rack_id=dm.member.rack_id,
                        member_epoch=dm.member.member_epoch,
                        client_id=dm.member.client_id,
                        client_host=dm.member.client_host,
                        subscribed_topic_names=list(dm.member.subscribed_topic_names),
                        subscribed_topic_regex=dm.member.subscribed_topic_regex,
                        assignment=assignment(dm.member.assigned),
                        target_assignment=assignment(dm.target),
                    )
                    for dm in d.members
                ],
                authorized_operations=operations,
            )
        )
    return ConsumerGroupDescribeResponse(groups=out)
