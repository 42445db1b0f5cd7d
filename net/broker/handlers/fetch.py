"""Fetch (long poll woken by appends), ListOffsets and OffsetForLeaderEpoch."""

from __future__ import annotations

import logging

from kraft.log.partition_log import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP
from kraft.metadata.image import MetadataImage
from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import FetchInfo, FetchParams
from kraft.net.protocol import (
    ErrorCode,
    FetchRequest,
    FetchResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
    RequestHeader,
)
from kraft.net.server import Connection

from .context import ReplicaContext

logger = logging.getLogger(__name__)

EARLIEST_LOCAL_TIMESTAMP = -4
LATEST_TIERED_TIMESTAMP = -5


def check_partition(
    ctx: ReplicaContext, topic: str, index: int, current_leader_epoch: int, need_leader: bool = True
) -> tuple[Partition | None, int]:
    return ctx.replica_manager.get_partition_or_error(
        topic, index, current_leader_epoch, need_leader
    )


async def handle_fetch(
    ctx: ReplicaContext, header: RequestHeader, request: FetchRequest, conn: Connection
) -> FetchResponse:
    if request.session_id != 0:
        # No fetch sessions are ever handed out (KIP-227 allows a broker not to).
        return FetchResponse(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0)
    params, infos = fetch_params(ctx.image, request, header.api_version)
    data = await ctx.replica_manager.fetch_messages_async(params, infos)
    return fetch_response(request, data, header.api_version)


def fetch_params(
    image: MetadataImage, request: FetchRequest, version: int
) -> tuple[FetchParams, list[FetchInfo]]:
    """What the replica manager is asked: topics named (from v13 by id; an unknown id as an
    empty name), in request order."""
    replica_id = request.replica_state.replica_id if version >= 15 else request.replica_id
    params = FetchParams(
        replica_id=replica_id,
        max_wait_ms=request.max_wait_ms,
        min_bytes=request.min_bytes,
        max_bytes=request.max_bytes,
        isolation_level=request.isolation_level,
    )
    infos: list[FetchInfo] = []
    for wanted in request.topics:
        name = wanted.topic
        if version >= 13:
            found = image.topics_by_id.get(wanted.topic_id)
            name = found.name if found else ""
        infos.extend((name, fp) for fp in wanted.partitions)
    return params, infos


def fetch_response(
    request: FetchRequest, data: list[FetchResponse.PartitionData], version: int
) -> FetchResponse:
    """The replica manager's answers, one per partition asked, grouped as asked."""
    answers = iter(data)
    topics = []
    for wanted in request.topics:
        parts = [next(answers) for _ in wanted.partitions]
        topics.append(
            FetchResponse.FetchableTopicResponse(
                topic=wanted.topic, topic_id=wanted.topic_id, partitions=parts
            )
        )
    return FetchResponse(session_id=0, responses=topics)


async def handle_list_offsets(
    ctx: ReplicaContext, header: RequestHeader, request: ListOffsetsRequest, conn: Connection
) -> ListOffsetsResponse:
    topics = []
    debug = request.replica_id == -2
    for topic in request.topics:
        parts = []
        for p in topic.partitions:
            partition, code = check_partition(
                ctx, topic.name, p.partition_index, p.current_leader_epoch, need_leader=not debug
            )
            if partition is None:
                parts.append(
                    ListOffsetsResponse.ListOffsetsPartitionResponse(
                        partition_index=p.partition_index, error_code=code
                    )
                )
                continue
            offset, timestamp, epoch = _list_offset(partition, p.timestamp, debug)
            parts.append(
                ListOffsetsResponse.ListOffsetsPartitionResponse(
                    partition_index=p.partition_index,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=epoch,
                )
            )
        topics.append(
            ListOffsetsResponse.ListOffsetsTopicResponse(name=topic.name, partitions=parts)
        )
    return ListOffsetsResponse(topics=topics)


def _list_offset(partition: Partition, timestamp: int, debug: bool) -> tuple[int, int, int]:
    log = partition.log
    # Consumers see nothing at or above the high watermark (the debug replica sees the log end).
    visible_end = log.log_end_offset if debug else partition.high_watermark
    if timestamp == LATEST_TIMESTAMP:
        return visible_end, -1, log.epoch_at(visible_end - 1)
    if timestamp in (EARLIEST_TIMESTAMP, EARLIEST_LOCAL_TIMESTAMP):
        start = log.log_start_offset
        return start, -1, log.epoch_at(start)
    if timestamp == LATEST_TIERED_TIMESTAMP:
        return -1, -1, -1  # no tiered storage: nothing was ever tiered
    if timestamp == MAX_TIMESTAMP or timestamp >= 0:
        found = log.offset_for_timestamp(timestamp)
        if found is None or found.offset >= visible_end:
            return -1, -1, -1
        return found.offset, found.timestamp, found.leader_epoch
    return -1, -1, -1


async def handle_offset_for_leader_epoch(
    ctx: ReplicaContext,
    header: RequestHeader,
    request: OffsetForLeaderEpochRequest,
    conn: Connection,
) -> OffsetForLeaderEpochResponse:
    topics = []
    for topic in request.topics:
        parts = []
        for p in topic.partitions:
            partition, code = check_partition(ctx, topic.topic, p.partition, p.current_leader_epoch)
            if partition is None:
                parts.append(
                    OffsetForLeaderEpochResponse.EpochEndOffset(
                        partition=p.partition, error_code=code
                    )
                )
                continue
            epoch, end = partition.log.end_offset_for_epoch(p.leader_epoch)
            parts.append(
                OffsetForLeaderEpochResponse.EpochEndOffset(
                    partition=p.partition, leader_epoch=epoch, end_offset=end
                )
            )
        topics.append(
            OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(
                topic=topic.topic, partitions=parts
            )
        )
    return OffsetForLeaderEpochResponse(topics=topics)
