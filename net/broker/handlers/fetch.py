"""Fetch (long poll woken by appends), ListOffsets and OffsetForLeaderEpoch."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from kraft.log.errors import LogError
from kraft.log.partition_log import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP
from kraft.net.broker.partition import Partition
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

if TYPE_CHECKING:
    from kraft.net.broker.broker import Broker

logger = logging.getLogger(__name__)

EARLIEST_LOCAL_TIMESTAMP = -4
LATEST_TIERED_TIMESTAMP = -5
READ_COMMITTED = 1
_EMPTY = memoryview(b"")


def check_partition(
    broker: Broker, topic: str, index: int, current_leader_epoch: int, need_leader: bool = True
) -> tuple[Partition | None, int]:
    """The hosted partition, or the error code a client must see (unknown, not leader,
    fenced or unknown leader epoch)."""
    partition = broker.partitions.get((topic, index))
    if partition is None:
        if topic in broker.image.topics and index in broker.image.topics[topic].partitions:
            return None, ErrorCode.NOT_LEADER_OR_FOLLOWER
        return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if current_leader_epoch >= 0:
        if current_leader_epoch < partition.leader_epoch:
            return None, ErrorCode.FENCED_LEADER_EPOCH
        if current_leader_epoch > partition.leader_epoch:
            return None, ErrorCode.UNKNOWN_LEADER_EPOCH
    if need_leader and not partition.is_leader:
        return None, ErrorCode.NOT_LEADER_OR_FOLLOWER
    return partition, 0


async def handle_fetch(
    broker: Broker, header: RequestHeader, request: FetchRequest, conn: Connection
) -> FetchResponse:
    if request.session_id != 0:
        # No fetch sessions are ever handed out (KIP-227 allows a broker not to).
        return FetchResponse(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0)
    replica_id = (
        request.replica_state.replica_id if header.api_version >= 15 else request.replica_id
    )
    by_id = header.api_version >= 13
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(request.max_wait_ms, 0) / 1000
    while True:
        response, total, partitions, errors = read_fetch(broker, request, replica_id, by_id)
        remaining = deadline - loop.time()
        if total >= request.min_bytes or errors or remaining <= 0 or not partitions:
            return response
        fut: asyncio.Future[None] = loop.create_future()
        for p in partitions:
            p.add_waiter(fut)
        try:
            await asyncio.wait_for(fut, remaining)
        except TimeoutError:
            pass
        finally:
            for p in partitions:
                p.remove_waiter(fut)


def read_fetch(
    broker: Broker, request: FetchRequest, replica_id: int, by_id: bool
) -> tuple[FetchResponse, int, list[Partition], bool]:
    """One pass over a Fetch without waiting: (response, bytes read, partitions hosted here to
    wait on, whether to answer at once: an error, or a follower that must truncate first).
    A follower's fetch (`replica_id` >= 0) reads up to the log end and records its progress;
    the replication simulation calls this too."""
    image = broker.image
    total = 0
    budget = request.max_bytes
    errors = False
    hosted: list[Partition] = []
    topics: list[FetchResponse.FetchableTopicResponse] = []
    is_follower = replica_id >= 0
    for wanted in request.topics:
        name = wanted.topic
        if by_id:
            found = image.topics_by_id.get(wanted.topic_id)
            name = found.name if found else ""
        parts: list[FetchResponse.PartitionData] = []
        topics.append(
            FetchResponse.FetchableTopicResponse(
                topic=name, topic_id=wanted.topic_id, partitions=parts
            )
        )
        for fp in wanted.partitions:
            if by_id and not name:
                parts.append(_fetch_error(fp.partition, ErrorCode.UNKNOWN_TOPIC_ID))
                errors = True
                continue
            partition, code = check_partition(broker, name, fp.partition, fp.current_leader_epoch)
            if partition is None:
                parts.append(_fetch_error(fp.partition, code))
                errors = True
                continue
            hosted.append(partition)
            data, size, error = _read_partition(
                broker,
                partition,
                fp,
                is_follower,
                replica_id,
                request.isolation_level,
                budget,
                total == 0,
            )
            parts.append(data)
            errors = errors or error
            total += size
            budget = max(budget - size, 0)
    return FetchResponse(session_id=0, responses=topics), total, hosted, errors


def _fetch_error(index: int, code: int) -> FetchResponse.PartitionData:
    return FetchResponse.PartitionData(
        partition_index=index, error_code=code, high_watermark=-1, records=_EMPTY
    )


def _read_partition(
    broker: Broker,
    partition: Partition,
    fp: FetchRequest.FetchPartition,
    is_follower: bool,
    replica_id: int,
    isolation_level: int,
    budget: int,
    first: bool,
) -> tuple[FetchResponse.PartitionData, int, bool]:
    log = partition.log
    if fp.last_fetched_epoch >= 0:
        epoch, end = log.end_offset_for_epoch(fp.last_fetched_epoch)
        if end < 0:
            # No epoch here is that old: the follower's log diverges from where ours starts.
            end = log.log_start_offset
        if epoch < fp.last_fetched_epoch or end < fp.fetch_offset:
            # KIP-595 style divergence: the fetcher truncates to this and fetches again.
            data = FetchResponse.PartitionData(
                partition_index=fp.partition,
                high_watermark=partition.high_watermark,
                last_stable_offset=partition.high_watermark,
                log_start_offset=log.log_start_offset,
                diverging_epoch=FetchResponse.EpochEndOffset(epoch=epoch, end_offset=end),
                records=_EMPTY,
            )
            # Answered at once, like an error (Kafka's DelayedFetch too): waiting for data
            # only delays the truncation the follower needs first.
            return data, 0, True
    upper = None if is_follower else partition.high_watermark
    limit = min(fp.partition_max_bytes, budget)
    try:
        result = log.read(fp.fetch_offset, limit, upper, min_one_batch=first)
    except LogError as e:
        return _fetch_error(fp.partition, e.error_code), 0, True
    if is_follower:
        # Only now does the fetch offset show what the follower holds: a follower that
        # diverges still has a suffix it will truncate (Kafka too ignores such fetches).
        partition.record_follower_fetch(replica_id, fp.fetch_offset)
    hw = partition.high_watermark
    data = FetchResponse.PartitionData(
        partition_index=fp.partition,
        high_watermark=hw,
        last_stable_offset=hw,
        log_start_offset=log.log_start_offset,
        aborted_transactions=[] if isolation_level == READ_COMMITTED else None,
        records=result.records,
    )
    return data, len(result.records), False


async def handle_list_offsets(
    broker: Broker, header: RequestHeader, request: ListOffsetsRequest, conn: Connection
) -> ListOffsetsResponse:
    topics = []
    debug = request.replica_id == -2
    for topic in request.topics:
        parts = []
        for p in topic.partitions:
            partition, code = check_partition(
                broker, topic.name, p.partition_index, p.current_leader_epoch, need_leader=not debug
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
    broker: Broker,
    header: RequestHeader,
    request: OffsetForLeaderEpochRequest,
    conn: Connection,
) -> OffsetForLeaderEpochResponse:
    topics = []
    for topic in request.topics:
        parts = []
        for p in topic.partitions:
            partition, code = check_partition(
                broker, topic.topic, p.partition, p.current_leader_epoch
            )
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
