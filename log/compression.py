"""The compression codecs of RecordBatch v2, selected by attribute bits 0-2.

A compressed batch keeps its 61-byte header in clear; only the records that follow are
compressed, as one payload. Payload formats, as Kafka's clients write them:

    1 gzip    a gzip stream (RFC 1952); readers accept concatenated members.
    2 snappy  Java's clients use xerial's block framing::

                  magic  8  b"\\x82SNAPPY\\x00"
                  version 4, min compatible version 4   (big-endian int32, both 1)
                  then blocks: length 4 (big-endian int32) + raw snappy of <= 32 KiB input

              librdkafka may write raw snappy, so a payload without the magic is raw.
    3 lz4     one standard LZ4 frame (KIP-57) with independent blocks; Java writes
              64 KiB blocks, no content size and no checksums.
    4 zstd    standard zstd frames; librdkafka's streaming encoder omits the content size.

Decoding reports every library failure as `CorruptRecordError`: the payload came from a peer.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from enum import IntEnum
from typing import Final, TypeAlias

import cramjam
import lz4.frame

from kraft.log.errors import CorruptRecordError

Buffer: TypeAlias = bytes | bytearray | memoryview


class CompressionType(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


GZIP_LEVEL: Final = 6  # java.util.zip.Deflater's default, what Kafka's producer uses
ZSTD_LEVEL: Final = 3  # Kafka's default zstd level (KIP-390)

_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")  # magic, version, min compatible version
_XERIAL_BLOCK_LENGTH = struct.Struct(">i")
_XERIAL_BLOCK_SIZE: Final = 32 * 1024  # xerial's SnappyOutputStream default
# A snappy copy element emits at most 64 bytes from 3 input bytes (~21x), so a raw block
# claiming more than this is garbage; checked before the library allocates the claimed size.
_SNAPPY_MAX_EXPANSION: Final = 32


def compress(codec: int, data: Buffer) -> bytes:
    """Compress a batch's records with `codec`; ValueError for an unknown codec (a caller bug)."""
    if codec == CompressionType.NONE:
        return bytes(data)
    if codec == CompressionType.GZIP:
        return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    if codec == CompressionType.SNAPPY:
        return _snappy_xerial_encode(data)
    if codec == CompressionType.LZ4:
        compressed: bytes = lz4.frame.compress(
            data,
            block_size=lz4.frame.BLOCKSIZE_MAX64KB,
            block_linked=False,
            content_checksum=False,
            store_size=False,
        )
        return compressed
    if codec == CompressionType.ZSTD:
        return bytes(cramjam.zstd.compress(data, level=ZSTD_LEVEL))
    raise ValueError(f"unknown compression codec {codec}")


def decompress(codec: int, data: Buffer) -> bytes:
    """Decompress a batch's records payload; CorruptRecordError if it does not decode."""
    try:
        if codec == CompressionType.NONE:
            return bytes(data)
        if codec == CompressionType.GZIP:
            return gzip.decompress(data)
        if codec == CompressionType.SNAPPY:
            return _snappy_decode(data)
        if codec == CompressionType.LZ4:
            return _lz4_decode(data)
        if codec == CompressionType.ZSTD:
            return bytes(cramjam.zstd.decompress(data))
    # gzip: BadGzipFile (an OSError), EOFError, zlib.error; lz4: RuntimeError;
    # cramjam: DecompressionError.
    except (OSError, EOFError, zlib.error, RuntimeError, cramjam.DecompressionError) as exc:
        name = CompressionType(codec).name.lower()
        raise CorruptRecordError(f"{name} records payload does not decompress: {exc}") from exc
    raise CorruptRecordError(f"unknown compression codec {codec}")


def _snappy_xerial_encode(data: Buffer) -> bytes:
    view = memoryview(data)
    parts = [_XERIAL_HEADER.pack(_XERIAL_MAGIC, 1, 1)]
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_SIZE]))
        parts.append(_XERIAL_BLOCK_LENGTH.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decode(data: Buffer) -> bytes:
    view = memoryview(data)
    if view[: len(_XERIAL_MAGIC)] != _XERIAL_MAGIC:
        return _snappy_raw_decode(view)
    # The version fields are ignored: there is one framing, and some writers (Redpanda)
    # are known to encode them little-endian.
    if len(view) < _XERIAL_HEADER.size:
        raise CorruptRecordError("xerial snappy header truncated")
    blocks: list[bytes] = []
    pos = _XERIAL_HEADER.size
    while pos < len(view):
        if len(view) - pos < _XERIAL_BLOCK_LENGTH.size:
            raise CorruptRecordError("xerial snappy block length truncated")
        (length,) = _XERIAL_BLOCK_LENGTH.unpack_from(view, pos)
        pos += _XERIAL_BLOCK_LENGTH.size
        if length < 0 or length > len(view) - pos:
            raise CorruptRecordError(f"xerial snappy block length {length} is out of bounds")
        blocks.append(_snappy_raw_decode(view[pos : pos + length]))
        pos += length
    return b"".join(blocks)


def _snappy_raw_decode(block: memoryview) -> bytes:
    claimed = cramjam.snappy.decompress_raw_len(block)
    if claimed > _SNAPPY_MAX_EXPANSION * len(block):
        raise CorruptRecordError(f"snappy block of {len(block)} bytes claims {claimed} bytes")
    return bytes(cramjam.snappy.decompress_raw(block))


def _lz4_decode(data: Buffer) -> bytes:
    # The streaming decompressor, unlike lz4.frame.decompress, does not preallocate the
    # frame's declared content size, which garbage can set to terabytes.
    decompressor = lz4.frame.LZ4FrameDecompressor()
    out: bytes = decompressor.decompress(data)
    if not decompressor.eof:
        raise CorruptRecordError("lz4 frame is truncated")
    return out
