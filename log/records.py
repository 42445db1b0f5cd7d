"""The records inside a RecordBatch v2: decoding and building whole batches.

Off the hot path: the log cleaner, timestamp lookups, key checks of compacted topics,
tests and benchmarks. The append path only ever reads the header (log/batch.py).

The records follow the 61-byte header, compressed as one payload if the batch's codec
(log/compression.py) says so. Each record, every varint zigzag-encoded and signed::

    length           varint   bytes of the record after this field
    attributes       int8     unused, 0
    timestamp_delta  varlong  from the batch's base_timestamp
    offset_delta     varint   from the batch's base_offset
    key_length       varint   -1: null key
    key              bytes
    value_length     varint   -1: null value
    value            bytes
    header_count     varint
    headers          header_count times:
        key_length   varint   never null
        key          utf-8
        value_length varint   -1: null value
        value        bytes

A varint holds an int32 in at most 5 bytes, a varlong an int64 in at most 10.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from kraft.log.batch import (
    CONTROL_FLAG,
    CRC_START,
    DELETE_HORIZON_FLAG,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_FLAG,
    BatchHeader,
    crc32c,
    parse_header,
)
from kraft.log.compression import Buffer, CompressionType, compress, decompress
from kraft.log.errors import CorruptRecordError, UnsupportedMagicError

_CRC = struct.Struct(">I")
_CRC_OFFSET: Final = MAGIC_OFFSET + 1
LOG_APPEND_TIME: Final = 1  # timestamp_type; 0 is CreateTime


@dataclass(slots=True)
class Record:
    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    attributes: int = 0


class AbsoluteRecord(NamedTuple):
    """A record with its batch's base offset and timestamp applied."""

    offset: int
    timestamp: int
    record: Record


# --- decoding ---------------------------------------------------------------------------


def decode_batch(batch: Buffer) -> tuple[BatchHeader, list[Record]]:
    """Header and records of exactly one batch; checks structure, not the CRC.

    Raises CorruptRecordError for anything truncated or malformed, UnsupportedMagicError
    for magic 0/1.
    """
    if len(batch) < HEADER_SIZE:
        raise CorruptRecordError(f"batch of {len(batch)} bytes is shorter than its header")
    header = parse_header(batch)
    if header.magic != 2:
        raise UnsupportedMagicError(f"record batch magic {header.magic} is not supported")
    if header.size != len(batch):
        raise CorruptRecordError(
            f"batch length {header.batch_length} disagrees with the {len(batch)} bytes given"
        )
    if header.records_count < 0:
        raise CorruptRecordError(f"negative record count {header.records_count}")
    # As Java's reader: an empty batch (kept by the cleaner for producer state) may carry a
    # codec but no payload at all.
    if header.records_count == 0:
        return header, []
    payload = memoryview(batch)[HEADER_SIZE:]
    data = decompress(header.compression, payload)
    return header, _decode_records(data, header.records_count)


def decode_records(batch: Buffer) -> list[Record]:
    """The records of exactly one batch (see decode_batch)."""
    return decode_batch(batch)[1]


def decode_absolute(batch: Buffer) -> list[AbsoluteRecord]:
    """The records of one batch with absolute offsets and timestamps.

    Under LogAppendTime the broker stamped the batch's max_timestamp on every record.
    """
    header, records = decode_batch(batch)
    base_offset = header.base_offset
    if header.timestamp_type == LOG_APPEND_TIME:
        return [
            AbsoluteRecord(base_offset + r.offset_delta, header.max_timestamp, r) for r in records
        ]
    base_timestamp = header.base_timestamp
    return [
        AbsoluteRecord(base_offset + r.offset_delta, base_timestamp + r.timestamp_delta, r)
        for r in records
    ]


def _decode_records(data: bytes, count: int) -> list[Record]:
    records: list[Record] = []
    pos = 0
    end = len(data)
    for _ in range(count):
        length, pos = _read_varint(data, pos, end)
        if length < 1 or length > end - pos:
            raise CorruptRecordError(f"record length {length} is out of bounds")
        record_end = pos + length
        attributes = data[pos]
        timestamp_delta, pos = _read_varint(data, pos + 1, record_end, 64)
        offset_delta, pos = _read_varint(data, pos, record_end)
        key, pos = _read_nullable_bytes(data, pos, record_end)
        value, pos = _read_nullable_bytes(data, pos, record_end)
        header_count, pos = _read_varint(data, pos, record_end)
        if header_count < 0:
            raise CorruptRecordError(f"negative record header count {header_count}")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            key_length, pos = _read_varint(data, pos, record_end)
            if key_length < 0 or key_length > record_end - pos:
                raise CorruptRecordError(f"record header key length {key_length} is out of bounds")
            try:
                header_key = data[pos : pos + key_length].decode()
            except UnicodeDecodeError as exc:
                raise CorruptRecordError(f"record header key is not utf-8: {exc}") from exc
            header_value, pos = _read_nullable_bytes(data, pos + key_length, record_end)
            headers.append((header_key, header_value))
        if pos != record_end:
            raise CorruptRecordError(
                f"record declares {length} bytes but its fields take {length - (record_end - pos)}"
            )
        records.append(
            Record(offset_delta, timestamp_delta, key, value, tuple(headers), attributes)
        )
    if pos != end:
        raise CorruptRecordError(f"{end - pos} bytes left after the batch's {count} records")
    return records


def _read_varint(data: bytes, pos: int, end: int, bits: int = 32) -> tuple[int, int]:
    """The zigzag varint at `pos` as (value, next position); `bits` is 32 or 64 (varlong)."""
    raw = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            # Zigzag maps the signed range onto [0, 2**bits), so this bounds the value too.
            if raw >> bits:
                raise CorruptRecordError(f"varint exceeds int{bits}")
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > bits:  # more bytes than an int32 (5) or int64 (10) ever needs
            raise CorruptRecordError(f"varint for int{bits} is too long")
    raise CorruptRecordError("record truncated inside a varint")


def _read_nullable_bytes(data: bytes, pos: int, end: int) -> tuple[bytes | None, int]:
    length, pos = _read_varint(data, pos, end)
    if length < 0:  # Java reads every negative length as null
        return None, pos
    if length > end - pos:
        raise CorruptRecordError(f"field length {length} runs past the record")
    return data[pos : pos + length], pos + length


# --- building ---------------------------------------------------------------------------


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    compression: int = CompressionType.NONE,
    partition_leader_epoch: int = -1,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    timestamp_type: int = 0,
    has_delete_horizon: bool = False,
    base_timestamp: int | None = None,
    max_timestamp: int | None = None,
    last_offset_delta: int | None = None,
) -> bytes:
    """A complete batch with a correct CRC32C, records in the order given.

    Defaults: base_timestamp is now (ms); max_timestamp is the records' largest timestamp,
    or base_timestamp if there are none (pass the original for LogAppendTime batches);
    last_offset_delta is the largest offset delta, or 0. The cleaner overrides the last two
    to keep a rewritten batch's offset range and append time. With no records the payload
    is empty and the codec bits are cleared, as Java's empty-batch header does.
    Raises ValueError for an unknown codec and struct.error for fields out of range.
    """
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    if max_timestamp is None:
        max_timestamp = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    if last_offset_delta is None:
        last_offset_delta = max((r.offset_delta for r in records), default=0)
    if records:
        payload = compress(compression, _encode_records(records))
    else:
        payload = b""
        compression = CompressionType.NONE
    attributes = (
        compression
        | (TIMESTAMP_TYPE_MASK if timestamp_type == LOG_APPEND_TIME else 0)
        | (TRANSACTIONAL_FLAG if is_transactional else 0)
        | (CONTROL_FLAG if is_control else 0)
        | (DELETE_HORIZON_FLAG if has_delete_horizon else 0)
    )
    out = bytearray(HEADER_SIZE)
    HEADER.pack_into(
        out,
        0,
        base_offset,
        HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch,
        2,  # magic
        0,  # crc, once the bytes it covers are in place
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    out += payload
    _CRC.pack_into(out, _CRC_OFFSET, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def build_simple_batch(
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None] | None = None,
    *,
    timestamp: int | None = None,
    compression: int = CompressionType.NONE,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
) -> bytes:
    """A producer-style batch: one record per value, consecutive offsets, one timestamp."""
    if keys is not None and len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys for {len(values)} values")
    records = [
        Record(i, 0, None if keys is None else keys[i], value) for i, value in enumerate(values)
    ]
    return build_batch(
        records,
        base_offset=base_offset,
        compression=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=is_transactional,
        base_timestamp=timestamp,
    )


def _encode_records(records: Iterable[Record]) -> bytes:
    out = bytearray()
    body = bytearray()
    for record in records:
        body.clear()
        body.append(record.attributes & 0xFF)
        _write_varint(body, record.timestamp_delta)
        _write_varint(body, record.offset_delta)
        _write_nullable_bytes(body, record.key)
        _write_nullable_bytes(body, record.value)
        _write_varint(body, len(record.headers))
        for header_key, header_value in record.headers:
            _write_nullable_bytes(body, header_key.encode())
            _write_nullable_bytes(body, header_value)
        _write_varint(out, len(body))
        out += body
    return bytes(out)


def _write_varint(out: bytearray, value: int) -> None:
    zigzag = (value << 1) ^ (value >> 63)
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def _write_nullable_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out.append(1)  # zigzag(-1)
    else:
        _write_varint(out, len(value))
        out += value
