"""Metadata and DescribeCluster: the cluster as clients must dial it."""

from __future__ import annotations

import logging

from kraft.controller.controller import (
    INTERNAL_TOPICS,
    ControllerError,
    TopicSpec,
    validate_topic_name,
)
from kraft.metadata.image import TopicImage
from kraft.net.protocol import (
    DescribeClusterRequest,
    DescribeClusterResponse,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    ErrorCode,
    MetadataRequest,
    MetadataResponse,
    RequestHeader,
)
from kraft.net.server import Connection

from .context import MetadataContext

logger = logging.getLogger(__name__)


def alive_brokers(ctx: MetadataContext, listener: str) -> list[tuple[int, str, int, str | None]]:
    """(id, host, port, rack) of every unfenced broker with an endpoint on `listener`."""
    out = []
    for reg in sorted(ctx.image.brokers.values(), key=lambda r: r.broker_id):
        if reg.fenced:
            continue
        endpoint = reg.endpoints.get(listener)
        if endpoint is not None:
            out.append((reg.broker_id, endpoint[0], endpoint[1], reg.rack))
    return out


def controller_id_for_clients(
    ctx: MetadataContext, brokers: list[tuple[int, str, int, str | None]]
) -> int:
    """The "controller" clients are told of. KRaft clients cannot reach the controllers: any
    broker forwards admin requests, so it is this broker while it is listed, else another
    listed broker (Kafka names a random alive one), else -1. Naming a broker the same response
    does not list leaves a client waiting for a controller it cannot find."""
    ids = [b[0] for b in brokers]
    if ctx.node_id in ids:
        return ctx.node_id
    return ids[0] if ids else -1


def topic_metadata(
    ctx: MetadataContext, topic: TopicImage
) -> MetadataResponse.MetadataResponseTopic:
    alive = {b for b, reg in ctx.image.brokers.items() if not reg.fenced}
    partitions = []
    for index in sorted(topic.partitions):
        state = topic.partitions[index]
        partitions.append(
            MetadataResponse.MetadataResponsePartition(
                error_code=ErrorCode.LEADER_NOT_AVAILABLE if state.leader < 0 else 0,
                partition_index=index,
                leader_id=state.leader,
                leader_epoch=state.leader_epoch,
                replica_nodes=list(state.replicas),
                isr_nodes=list(state.isr),
                offline_replicas=[r for r in state.replicas if r not in alive],
            )
        )
    return MetadataResponse.MetadataResponseTopic(
        error_code=0,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=topic.name in INTERNAL_TOPICS,
        partitions=partitions,
    )


async def handle_metadata(
    ctx: MetadataContext, header: RequestHeader, request: MetadataRequest, conn: Connection
) -> MetadataResponse:
    image = ctx.image
    topics: list[MetadataResponse.MetadataResponseTopic] = []
    if request.topics is None:
        topics = [topic_metadata(ctx, t) for _, t in sorted(image.topics.items())]
    else:
        # v0 has no flag and always auto-creates (subject to the broker config).
        allow = request.allow_auto_topic_creation if header.api_version >= 4 else True
        missing: list[str] = []
        for wanted in request.topics:
            name = wanted.name
            if name is None and wanted.topic_id.int:
                found = image.topics_by_id.get(wanted.topic_id)
                name = found.name if found else None
                if name is None:
                    topics.append(
                        MetadataResponse.MetadataResponseTopic(
                            error_code=ErrorCode.UNKNOWN_TOPIC_ID,
                            name=None,
                            topic_id=wanted.topic_id,
                        )
                    )
                    continue
            if name is None:
                continue
            if name not in image.topics:
                missing.append(name)
        if missing and allow and ctx.config.auto_create_topics_enable:
            await auto_create(ctx, missing)
        for wanted in request.topics:
            name = wanted.name
            if name is None:
                found = image.topics_by_id.get(wanted.topic_id)
                name = found.name if found else None
            if name is None:
                continue
            topic = image.topics.get(name)
            if topic is not None:
                topics.append(topic_metadata(ctx, topic))
                continue
            try:
                validate_topic_name(name)
                code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            except ControllerError:
                code = ErrorCode.INVALID_TOPIC_EXCEPTION
            topics.append(MetadataResponse.MetadataResponseTopic(error_code=code, name=name))
    brokers = alive_brokers(ctx, conn.listener)
    return MetadataResponse(
        brokers=[
            MetadataResponse.MetadataResponseBroker(node_id=i, host=h, port=p, rack=r)
            for i, h, p, r in brokers
        ],
        cluster_id=ctx.cluster_id,
        controller_id=controller_id_for_clients(ctx, brokers),
        topics=topics,
    )


async def auto_create(ctx: MetadataContext, names: list[str]) -> None:
    specs = []
    for name in names:
        try:
            validate_topic_name(name)
        except ControllerError:
            continue
        specs.append(TopicSpec(name))
    if not specs:
        return
    for name, code in await ctx.create_topics(specs):
        if code == 0:
            logger.info("%sauto-created topic %s", ctx.tag, name)


async def handle_describe_quorum(
    ctx: MetadataContext, header: RequestHeader, request: DescribeQuorumRequest, conn: Connection
) -> DescribeQuorumResponse:
    """A single node is its own quorum; in a cluster the active controller answers."""
    if ctx.config.is_cluster:
        response = await ctx.forward(request, header.api_version)
        assert isinstance(response, DescribeQuorumResponse)
        return response
    end = ctx.image.last_offset + 1
    me = DescribeQuorumResponse.ReplicaState(replica_id=ctx.node_id, log_end_offset=end)
    return DescribeQuorumResponse(
        topics=[
            DescribeQuorumResponse.TopicData(
                topic_name="__cluster_metadata",
                partitions=[
                    DescribeQuorumResponse.PartitionData(
                        partition_index=0,
                        leader_id=ctx.node_id,
                        leader_epoch=0,
                        high_watermark=end,
                        current_voters=[me],
                    )
                ],
            )
        ]
    )


async def handle_describe_cluster(
    ctx: MetadataContext, header: RequestHeader, request: DescribeClusterRequest, conn: Connection
) -> DescribeClusterResponse:
    if request.endpoint_type not in (1,):
        return DescribeClusterResponse(
            error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            error_message="only broker endpoints (endpoint_type 1) are served here",
            endpoint_type=request.endpoint_type,
        )
    brokers = alive_brokers(ctx, conn.listener)
    return DescribeClusterResponse(
        cluster_id=ctx.cluster_id,
        controller_id=controller_id_for_clients(ctx, brokers),
        endpoint_type=1,
        brokers=[
            DescribeClusterResponse.DescribeClusterBroker(broker_id=i, host=h, port=p, rack=r)
            for i, h, p, r in brokers
        ],
    )
