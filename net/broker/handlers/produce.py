"""Produce (acks 0, 1, all) and InitProducerId for idempotent producers."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from kraft.controller.controller import INTERNAL_TOPICS
from kraft.log.batch import COMPRESSION_MASK, HEADER_SIZE, LOG_OVERHEAD, MAGIC_OFFSET, OFFSET_LENGTH
from kraft.log.errors import LogError
from kraft.net.broker.partition import Partition
from kraft.net.protocol import (
    ErrorCode,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ProduceRequest,
    ProduceResponse,
    RequestHeader,
)
from kraft.net.server import Connection

if TYPE_CHECKING:
    from kraft.net.broker.broker import Broker

logger = logging.getLogger(__name__)

PartitionResponse = ProduceResponse.PartitionProduceResponse
MAX_EPOCH = 32767
ZSTD = 4
# Kafka lets only this client id write to internal topics (AdminUtils.AdminClientId); any
# other client gets INVALID_TOPIC_EXCEPTION, so no one can forge group offsets or metadata.
ADMIN_CLIENT_ID = "__admin_client"


def _error(index: int, code: int, message: str | None = None) -> PartitionResponse:
    return PartitionResponse(index=index, error_code=code, base_offset=-1, error_message=message)


async def handle_produce(
    broker: Broker, header: RequestHeader, request: ProduceRequest, conn: Connection
) -> ProduceResponse | None:
    acks = request.acks
    responses: list[ProduceResponse.TopicProduceResponse] = []
    # acks=all: (partition, offset the high watermark must pass, response to fill in)
    pending: list[tuple[Partition, int, PartitionResponse]] = []
    for topic_data in request.topic_data:
        out: list[PartitionResponse] = []
        responses.append(
            ProduceResponse.TopicProduceResponse(name=topic_data.name, partition_responses=out)
        )
        for data in topic_data.partition_data:
            if acks not in (0, 1, -1):
                out.append(_error(data.index, ErrorCode.INVALID_REQUIRED_ACKS))
                continue
            if request.transactional_id is not None:
                out.append(
                    _error(
                        data.index,
                        ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        "transactions are not supported by this broker",
                    )
                )
                continue
            if (
                topic_data.name in INTERNAL_TOPICS
                and topic_data.name in broker.image.topics
                and header.client_id != ADMIN_CLIENT_ID
            ):
                out.append(
                    _error(
                        data.index,
                        ErrorCode.INVALID_TOPIC_EXCEPTION,
                        f"Cannot append to internal topic {topic_data.name}",
                    )
                )
                continue
            result = _append(
                broker, topic_data.name, data.index, data.records, acks, header.api_version
            )
            out.append(result[0])
            if result[1] is not None:
                pending.append((result[1], result[2], result[0]))
    if pending:
        await _wait_for_replication(pending, request.timeout_ms)
    if acks == 0:
        return None
    return ProduceResponse(responses=responses)


def _check_request_records(records: bytes | bytearray | memoryview, version: int) -> str | None:
    """Kafka's rules for the records of Produce v3+: exactly one batch, magic 2, and zstd only
    from v7 (the first version clients may send it in)."""
    if version < 3 or len(records) < LOG_OVERHEAD + MAGIC_OFFSET + 1:
        return None
    if records[MAGIC_OFFSET] != 2:
        return f"Produce v{version} records must use message format v2 (magic 2)"
    _, batch_length = OFFSET_LENGTH.unpack_from(records, 0)
    # A length that cannot even hold a header is corruption, which the log reports.
    if batch_length >= HEADER_SIZE - LOG_OVERHEAD and LOG_OVERHEAD + batch_length < len(records):
        return f"Produce v{version} carries exactly one record batch per partition"
    return None


def _append(
    broker: Broker, topic: str, index: int, records: object, acks: int, version: int
) -> tuple[PartitionResponse, Partition | None, int]:
    partition = broker.partitions.get((topic, index))
    if partition is None:
        if topic in broker.image.topics:
            return _error(index, ErrorCode.NOT_LEADER_OR_FOLLOWER), None, 0
        return _error(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), None, 0
    if not partition.is_leader:
        return _error(index, ErrorCode.NOT_LEADER_OR_FOLLOWER), None, 0
    if records is None or not isinstance(records, bytes | bytearray | memoryview):
        return _error(index, ErrorCode.CORRUPT_MESSAGE, "no records"), None, 0
    problem = _check_request_records(records, version)
    if problem is not None:
        return _error(index, ErrorCode.INVALID_RECORD, problem), None, 0
    # The codec bits are the low byte of the big-endian int16 attributes at offset 21.
    if version < 7 and len(records) >= HEADER_SIZE and (records[22] & COMPRESSION_MASK) == ZSTD:
        return (
            _error(index, ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs Produce v7+"),
            None,
            0,
        )
    if acks == -1 and len(partition.isr) < partition.min_insync_replicas:
        return (
            _error(
                index,
                ErrorCode.NOT_ENOUGH_REPLICAS,
                f"ISR {partition.isr} is smaller than min.insync.replicas "
                f"{partition.min_insync_replicas}",
            ),
            None,
            0,
        )
    try:
        result = partition.log.append_as_leader(records, partition.leader_epoch)
    except LogError as e:
        # DEBUG: a client sending bad batches must not flood the log; it sees the error code.
        logger.debug("%sproduce to %s-%d refused: %s", broker.tag, topic, index, e)
        return _error(index, e.error_code, str(e)), None, 0
    if not result.duplicate:
        partition.maybe_advance_high_watermark()
        partition.notify()
    response = PartitionResponse(
        index=index,
        error_code=0,
        base_offset=result.first_offset,
        log_append_time_ms=result.log_append_time,
        log_start_offset=partition.log.log_start_offset,
    )
    if acks == -1 and partition.high_watermark <= result.last_offset:
        return response, partition, result.last_offset + 1
    return response, None, 0


async def _wait_for_replication(
    pending: list[tuple[Partition, int, PartitionResponse]], timeout_ms: int
) -> None:
    """The delayed produce: wait, woken by high-watermark changes, until every partition's
    high watermark passes its batch, or the request timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout_ms, 0) / 1000
    waiting = list(pending)
    while True:
        still = []
        for p, offset, r in waiting:
            if not p.is_leader:
                r.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elif p.high_watermark < offset:
                still.append((p, offset, r))
        waiting = still
        if not waiting:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            for p, _, r in waiting:
                short = len(p.isr) < p.min_insync_replicas
                r.error_code = (
                    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
                    if short
                    else ErrorCode.REQUEST_TIMED_OUT
                )
            return
        fut: asyncio.Future[None] = loop.create_future()
        for p, _, _ in waiting:
            p.add_waiter(fut)
        try:
            await asyncio.wait_for(fut, remaining)
        except TimeoutError:
            pass
        finally:
            for p, _, _ in waiting:
                p.remove_waiter(fut)


async def handle_init_producer_id(
    broker: Broker, header: RequestHeader, request: InitProducerIdRequest, conn: Connection
) -> InitProducerIdResponse:
    if request.transactional_id is not None:
        return InitProducerIdResponse(
            error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            producer_id=-1,
            producer_epoch=-1,
        )
    if request.producer_id >= 0 and 0 <= request.producer_epoch < MAX_EPOCH - 1:
        # KIP-360: an idempotent producer bumps its epoch to reset its sequences.
        return InitProducerIdResponse(
            producer_id=request.producer_id, producer_epoch=request.producer_epoch + 1
        )
    pid = await broker.next_producer_id()
    return InitProducerIdResponse(producer_id=pid, producer_epoch=0)
