"""Produce (acks 0, 1, all) and InitProducerId for idempotent producers."""

from __future__ import annotations

import logging

from kraft.controller.controller import INTERNAL_TOPICS
from kraft.log.batch import COMPRESSION_MASK, HEADER_SIZE, LOG_OVERHEAD, MAGIC_OFFSET, OFFSET_LENGTH
from kraft.net.broker.replica_manager import AppendOrigin
from kraft.net.protocol import (
    ErrorCode,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ProduceRequest,
    ProduceResponse,
    RequestHeader,
)
from kraft.net.server import Connection

from .context import ProduceContext

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
    ctx: ProduceContext, header: RequestHeader, request: ProduceRequest, conn: Connection
) -> ProduceResponse | None:
    acks = request.acks
    responses: list[ProduceResponse.TopicProduceResponse] = []
    # Filled in where they stand once the replica manager answers.
    slots: dict[tuple[str, int], tuple[list[PartitionResponse], int]] = {}
    entries: dict[tuple[str, int], bytes | bytearray | memoryview] = {}
    for topic_data in request.topic_data:
        out: list[PartitionResponse] = []
        responses.append(
            ProduceResponse.TopicProduceResponse(name=topic_data.name, partition_responses=out)
        )
        for data in topic_data.partition_data:
            refused = _refusal(ctx, header, request, topic_data.name, data.index, data.records)
            key = (topic_data.name, data.index)
            if refused is not None or key in entries:
                out.append(
                    refused or _error(data.index, ErrorCode.INVALID_RECORD, "partition given twice")
                )
                continue
            assert isinstance(data.records, bytes | bytearray | memoryview)
            entries[key] = data.records
            slots[key] = (out, len(out))
            out.append(_error(data.index, ErrorCode.UNKNOWN_SERVER_ERROR))
    if entries:
        results = await ctx.replica_manager.append_records_async(
            entries, acks, request.timeout_ms, AppendOrigin.CLIENT
        )
        for key, result in results.items():
            out, position = slots[key]
            out[position] = PartitionResponse(
                index=key[1],
                error_code=result.error_code,
                error_message=result.error_message,
                # A delayed error (timeout, lost leadership) keeps the offset appended at.
                base_offset=result.base_offset,
                log_append_time_ms=result.log_append_time,
                log_start_offset=result.log_start_offset,
            )
    if acks == 0:
        return None
    return ProduceResponse(responses=responses)


def _refusal(
    ctx: ProduceContext,
    header: RequestHeader,
    request: ProduceRequest,
    topic: str,
    index: int,
    records: object,
) -> PartitionResponse | None:
    """Why this partition's data is refused before reaching the replica manager, if it is."""
    version = header.api_version
    if request.acks not in (0, 1, -1):
        return _error(index, ErrorCode.INVALID_REQUIRED_ACKS)
    if request.transactional_id is not None:
        return _error(
            index,
            ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "transactions are not supported by this broker",
        )
    if (
        topic in INTERNAL_TOPICS
        and topic in ctx.image.topics
        and header.client_id != ADMIN_CLIENT_ID
    ):
        return _error(
            index, ErrorCode.INVALID_TOPIC_EXCEPTION, f"Cannot append to internal topic {topic}"
        )
    partition, code = ctx.replica_manager.get_partition_or_error(topic, index)
    if partition is None:
        return _error(index, code)
    if records is None or not isinstance(records, bytes | bytearray | memoryview):
        return _error(index, ErrorCode.CORRUPT_MESSAGE, "no records")
    problem = _check_request_records(records, version)
    if problem is not None:
        return _error(index, ErrorCode.INVALID_RECORD, problem)
    # The codec bits are the low byte of the big-endian int16 attributes at offset 21.
    if version < 7 and len(records) >= HEADER_SIZE and (records[22] & COMPRESSION_MASK) == ZSTD:
        return _error(index, ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs Produce v7+")
    return None


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


async def handle_init_producer_id(
    ctx: ProduceContext, header: RequestHeader, request: InitProducerIdRequest, conn: Connection
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
    pid = await ctx.next_producer_id()
    return InitProducerIdResponse(producer_id=pid, producer_epoch=0)
