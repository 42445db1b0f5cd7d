"""The RecordBatch v2 (magic 2) header: the only part of a batch the hot path parses.

Byte layout (big-endian), 61 bytes, as Kafka defines it::

    offset  size  field
         0     8  base_offset              rewritten by the leader on append
         8     4  batch_length             bytes after this field (total = 12 + batch_length)
        12     4  partition_leader_epoch   rewritten by the leader on append
        16     1  magic                    2
        17     4  crc                      CRC32C of bytes [21, end)
        21     2  attributes               bits 0-2 codec, 3 timestamp type, 4 transactional,
                                           5 control, 6 delete horizon set
        23     4  last_offset_delta
        27     8  base_timestamp
        35     8  max_timestamp
        43     8  producer_id
        51     2  producer_epoch
        53     4  base_sequence
        57     4  records_count
        61        records (possibly compressed)

Because the CRC starts at `attributes`, the broker may rewrite `base_offset` and
`partition_leader_epoch` without recomputing it.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import crc32c as _crc32c

from kraft.log.errors import CorruptRecordError, InvalidRecordError, UnsupportedMagicError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE: Final = HEADER.size  # 61
# base_offset, batch_length: enough to walk from one batch to the next.
OFFSET_LENGTH = struct.Struct(">qi")
LOG_OVERHEAD: Final = OFFSET_LENGTH.size  # 12
# base_offset .. magic: the bytes rewritten in place by the leader.
PREFIX = struct.Struct(">qiib")
PREFIX_SIZE: Final = PREFIX.size  # 17
CRC_START: Final = 21
MAGIC_OFFSET: Final = 16
LAST_OFFSET_DELTA = struct.Struct(">i")
LAST_OFFSET_DELTA_OFFSET: Final = 23
MAX_TIMESTAMP = struct.Struct(">q")
MAX_TIMESTAMP_OFFSET: Final = 35

COMPRESSION_MASK: Final = 0x07
TIMESTAMP_TYPE_MASK: Final = 0x08
TRANSACTIONAL_FLAG: Final = 0x10
CONTROL_FLAG: Final = 0x20
DELETE_HORIZON_FLAG: Final = 0x40


def crc32c(data: bytes | bytearray | memoryview) -> int:
    return _crc32c.crc32c(data)


class BatchHeader(NamedTuple):
    """The 61 header bytes, unpacked. A NamedTuple: built straight from `HEADER.unpack_from`
    on the hot path, at a fraction of a dataclass's cost."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        return LOG_OVERHEAD + self.batch_length

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def timestamp_type(self) -> int:
        return 1 if self.attributes & TIMESTAMP_TYPE_MASK else 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF

    def pack(self) -> bytes:
        return HEADER.pack(*self)


_make_header = BatchHeader._make


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the 61-byte header at `pos`; no validation beyond the struct size."""
    return _make_header(HEADER.unpack_from(buf, pos))


def validate_batch(buf: bytes | bytearray | memoryview, pos: int, end: int) -> BatchHeader:
    """Check the batch at `buf[pos:end]`: size, magic, length fields and CRC32C.

    `end` bounds the batch (the caller's buffer end); the batch must fit before it.
    Raises CorruptRecordError / UnsupportedMagicError / InvalidRecordError.
    """
    available = end - pos
    if available < HEADER_SIZE:
        if available >= MAGIC_OFFSET + 1 and buf[pos + MAGIC_OFFSET] != 2:
            raise UnsupportedMagicError(
                f"record batch magic {buf[pos + MAGIC_OFFSET]} is not supported (only 2)"
            )
        raise CorruptRecordError(f"batch header truncated: {available} bytes left")
    fields = HEADER.unpack_from(buf, pos)
    batch_length = fields[1]
    if fields[3] != 2:
        raise UnsupportedMagicError(f"record batch magic {fields[3]} is not supported (only 2)")
    if batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {batch_length} is smaller than the header")
    if batch_length > available - LOG_OVERHEAD:
        raise CorruptRecordError(
            f"batch length {batch_length} exceeds the {available - LOG_OVERHEAD} bytes left"
        )
    actual = _crc32c.crc32c(memoryview(buf)[pos + CRC_START : pos + LOG_OVERHEAD + batch_length])
    if actual != fields[4]:
        raise CorruptRecordError(f"CRC mismatch: stored {fields[4]:#010x}, computed {actual:#010x}")
    if fields[6] < 0:
        raise InvalidRecordError(f"negative last offset delta {fields[6]}")
    if fields[12] < 0:
        raise InvalidRecordError(f"negative record count {fields[12]}")
    return _make_header(fields)


def iter_headers(
    buf: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> list[tuple[int, BatchHeader]]:
    """Headers of the whole batches in buf[start:end] as (position, header); stops at a partial."""
    stop = len(buf) if end is None else end
    out: list[tuple[int, BatchHeader]] = []
    pos = start
    while pos + HEADER_SIZE <= stop:
        header = parse_header(buf, pos)
        size = LOG_OVERHEAD + header.batch_length
        if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + size > stop:
            break
        out.append((pos, header))
        pos += size
    return out
