"""Record codec of RecordBatch v2: round trips, wire compatibility with real clients, fuzzing."""

from __future__ import annotations

import gzip
import struct
from typing import Any

import cramjam
import lz4.frame
import pytest
from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch as KafkaBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KafkaBuilder

from kraft.log.batch import HEADER, HEADER_SIZE, LOG_OVERHEAD, validate_batch
from kraft.log.compression import CompressionType, compress, decompress
from kraft.log.errors import CorruptRecordError, LogError, UnsupportedMagicError
from kraft.log.records import (
    AbsoluteRecord,
    Record,
    build_batch,
    build_simple_batch,
    decode_absolute,
    decode_batch,
    decode_records,
)

CODECS = list(CompressionType)
nullable_bytes = st.none() | st.binary(max_size=40)
headers = st.lists(
    st.tuples(st.text(st.characters(codec="utf-8"), max_size=8), nullable_bytes), max_size=3
).map(tuple)
records = st.builds(
    Record,
    offset_delta=st.integers(0, 2**31 - 1),
    timestamp_delta=st.integers(-(2**40), 2**40),
    key=nullable_bytes,
    value=nullable_bytes,
    headers=headers,
    attributes=st.integers(0, 255),
)


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@given(
    recs=st.lists(records, min_size=1, max_size=20),
    base_offset=st.integers(0, 2**62),
    base_timestamp=st.integers(0, 2**42),
    log_append_time=st.booleans(),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(
    codec: CompressionType,
    recs: list[Record],
    base_offset: int,
    base_timestamp: int,
    log_append_time: bool,
) -> None:
    batch = build_batch(
        recs,
        base_offset=base_offset,
        compression=codec,
        base_timestamp=base_timestamp,
        timestamp_type=int(log_append_time),
        producer_id=7,
        producer_epoch=3,
        base_sequence=11,
        is_transactional=True,
    )
    header = validate_batch(batch, 0, len(batch))  # CRC, lengths, magic
    assert header.compression == codec
    assert header.records_count == len(recs)
    assert header.last_offset_delta == max(r.offset_delta for r in recs)
    max_timestamp = base_timestamp + max(r.timestamp_delta for r in recs)
    assert header.max_timestamp == max_timestamp
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (7, 3, 11)
    assert header.is_transactional and not header.is_control
    assert decode_records(batch) == recs
    assert decode_records(memoryview(batch)) == recs
    assert decode_absolute(batch) == [
        AbsoluteRecord(
            base_offset + r.offset_delta,
            max_timestamp if log_append_time else base_timestamp + r.timestamp_delta,
            r,
        )
        for r in recs
    ]


def test_varint_extremes_round_trip() -> None:
    deltas = [0, -1, 1, 63, -64, 64, -65, 8191, -8192, 2**31 - 1, -(2**31)]
    recs = [Record(d, -d, b"k", b"v") for d in deltas]
    recs.append(Record(0, 2**63 - 1, None, None))
    recs.append(Record(0, -(2**63), b"", b""))
    assert decode_records(build_batch(recs, base_timestamp=0)) == recs


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_codec_round_trip_large_payload(codec: CompressionType) -> None:
    # > 64 KiB crosses lz4 block and xerial snappy block boundaries.
    data = bytes(range(256)) * 1000 + b"\x00" * 100_000
    assert decompress(codec, compress(codec, data)) == data
    assert decompress(codec, memoryview(compress(codec, data))) == data


def test_build_batch_keeps_cleaner_overrides() -> None:
    """The cleaner rewrites a subset with its original offsets, last offset and append time."""
    kept = [Record(2, 5, b"a", b"1"), Record(4, 9, b"b", None)]
    batch = build_batch(
        kept,
        base_offset=100,
        base_timestamp=1_000,
        timestamp_type=1,
        max_timestamp=5_000,
        last_offset_delta=9,
        partition_leader_epoch=4,
        has_delete_horizon=True,
    )
    header = validate_batch(batch, 0, len(batch))
    assert (header.last_offset, header.max_timestamp, header.partition_leader_epoch) == (
        109,
        5_000,
        4,
    )
    assert header.attributes & 0x40
    assert [(r.offset, r.timestamp) for r in decode_absolute(batch)] == [(102, 5_000), (104, 5_000)]


def test_empty_batch_keeps_offset_range_without_payload() -> None:
    batch = build_batch([], base_offset=10, last_offset_delta=4, compression=CompressionType.GZIP)
    header, recs = decode_batch(batch)
    assert recs == [] and len(batch) == HEADER_SIZE
    assert (header.records_count, header.compression, header.next_offset) == (0, 0, 15)
    assert KafkaBatch(batch).validate_crc() and list(KafkaBatch(batch)) == []


def test_build_simple_batch() -> None:
    batch = build_simple_batch(
        [b"x", None, b"z"],
        [b"a", b"b", None],
        timestamp=123,
        base_offset=5,
        producer_id=9,
        producer_epoch=0,
        base_sequence=0,
    )
    header = validate_batch(batch, 0, len(batch))
    assert (header.base_offset, header.last_offset_delta, header.producer_id) == (5, 2, 9)
    assert [
        (r.offset, r.timestamp, r.record.key, r.record.value) for r in decode_absolute(batch)
    ] == [
        (5, 123, b"a", b"x"),
        (6, 123, b"b", None),
        (7, 123, None, b"z"),
    ]
    with pytest.raises(ValueError):
        build_simple_batch([b"x"], [b"a", b"b"])


# --- golden bytes -----------------------------------------------------------------------

GOLDEN_RECORDS = [
    Record(0, 0, b"k", b"v"),
    Record(1, 5, None, b"", (("h", None),)),
]
GOLDEN = bytes.fromhex(
    "0000000000000000"  # base_offset 0
    "00000044"  # batch_length 68 = 80 - 12
    "ffffffff"  # partition_leader_epoch -1
    "02"  # magic
    "13f3c0b7"  # crc32c of the bytes after this field
    "0000"  # attributes: no codec, CreateTime
    "00000001"  # last_offset_delta
    "0000018bcfe56800"  # base_timestamp 1700000000000
    "0000018bcfe56805"  # max_timestamp +5
    "ffffffffffffffff"  # producer_id -1
    "ffff"  # producer_epoch -1
    "ffffffff"  # base_sequence -1
    "00000002"  # records_count
    # length 8, attrs, ts 0, offset 0, key len 1 "k", value len 1 "v", 0 headers
    "10 00 00 00 02 6b 02 76 00"
    # length 9, attrs, ts +5, offset +1, key null, value len 0, 1 header: len 1 "h", null
    "12 00 0a 02 01 00 02 02 68 01"
)


def test_golden_bytes_both_directions() -> None:
    assert build_batch(GOLDEN_RECORDS, base_timestamp=1_700_000_000_000) == GOLDEN
    assert decode_records(GOLDEN) == GOLDEN_RECORDS
    validate_batch(GOLDEN, 0, len(GOLDEN))


# --- wire compatibility with real clients -----------------------------------------------

# Compressible, so the clients' builders (which fall back to no compression when it does
# not pay) keep the codec under test.
CLIENT_RECORDS: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
    (
        b"key-%d" % i if i % 3 else None,
        (b"value-%d " % i) * 20 if i % 5 else None,
        [("trace", b"abc" * i), ("nul", None)] if i % 2 else [],
    )
    for i in range(50)
]
KAFKA_PYTHON_CODECS = [CompressionType.NONE, CompressionType.GZIP, CompressionType.LZ4]


def _client_batch(builder_class: Any, codec: int) -> bytes:
    builder = builder_class(2, codec, 0, 5, 1, 0, 1 << 20)
    for i, (key, value, hdrs) in enumerate(CLIENT_RECORDS):
        builder.append(i, 1_700_000_000_000 + i * 7, key, value, hdrs)
    return bytes(builder.build())


def _check_decodes_client_batch(batch: bytes, codec: int) -> None:
    header = validate_batch(batch, 0, len(batch))
    assert header.compression == codec
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (5, 1, 0)
    assert [
        (r.offset, r.timestamp, r.record.key, r.record.value, list(r.record.headers))
        for r in decode_absolute(batch)
    ] == [
        (i, 1_700_000_000_000 + i * 7, key, value, hdrs)
        for i, (key, value, hdrs) in enumerate(CLIENT_RECORDS)
    ]


def _our_batch(codec: int) -> bytes:
    recs = [
        Record(i, i * 7, key, value, tuple(hdrs))
        for i, (key, value, hdrs) in enumerate(CLIENT_RECORDS)
    ]
    return build_batch(recs, base_offset=1000, compression=codec, base_timestamp=1_700_000_000_000)


def _check_client_reads_ours(batch_class: Any, batch: bytes, codec: int) -> None:
    reader = batch_class(batch)
    assert reader.validate_crc()
    assert reader.compression_type == codec
    assert [
        (r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch_class(batch)
    ] == [
        (1000 + i, 1_700_000_000_000 + i * 7, key, value, hdrs)
        for i, (key, value, hdrs) in enumerate(CLIENT_RECORDS)
    ]


@pytest.mark.parametrize("codec", KAFKA_PYTHON_CODECS, ids=lambda c: c.name)
def test_kafka_python_batches_decode(codec: CompressionType) -> None:
    _check_decodes_client_batch(_client_batch(KafkaBuilder, codec), codec)


@pytest.mark.parametrize("codec", KAFKA_PYTHON_CODECS, ids=lambda c: c.name)
def test_kafka_python_reads_our_batches(codec: CompressionType) -> None:
    _check_client_reads_ours(KafkaBatch, _our_batch(codec), codec)


# aiokafka brings its own snappy (xerial framing) and zstd code, on cramjam.
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_aiokafka_batches_decode(codec: CompressionType) -> None:
    _check_decodes_client_batch(_client_batch(AioBuilder, codec), codec)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_aiokafka_reads_our_batches(codec: CompressionType) -> None:
    _check_client_reads_ours(AioBatch, _our_batch(codec), codec)


# --- codec framings other writers use ---------------------------------------------------

PAYLOAD = b"kraft " * 5000


def test_snappy_writes_xerial_framing() -> None:
    encoded = compress(CompressionType.SNAPPY, PAYLOAD)
    assert encoded[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    (first_block,) = struct.unpack_from(">i", encoded, 16)
    assert bytes(cramjam.snappy.decompress_raw(encoded[20 : 20 + first_block])) == PAYLOAD[:32768]


def test_snappy_reads_raw_and_little_endian_xerial_versions() -> None:
    raw = bytes(cramjam.snappy.compress_raw(PAYLOAD))
    assert decompress(CompressionType.SNAPPY, raw) == PAYLOAD
    redpanda = b"\x82SNAPPY\x00" + struct.pack("<ii", 1, 1) + struct.pack(">i", len(raw)) + raw
    assert decompress(CompressionType.SNAPPY, redpanda) == PAYLOAD


def test_lz4_writes_java_frame_flags() -> None:
    encoded = compress(CompressionType.LZ4, PAYLOAD)
    assert encoded[:4] == b"\x04\x22\x4d\x18"  # frame magic
    # FLG: version 01, independent blocks, no checksums, no content size; BD: 64 KiB blocks.
    assert encoded[4:6] == b"\x60\x40"


def test_lz4_reads_content_size_and_checksums() -> None:
    encoded = lz4.frame.compress(
        PAYLOAD, store_size=True, content_checksum=True, block_checksum=True
    )
    assert decompress(CompressionType.LZ4, encoded) == PAYLOAD


def test_zstd_reads_frames_without_content_size() -> None:
    compressor = cramjam.zstd.Compressor()  # streaming, as librdkafka: no content size
    compressor.compress(PAYLOAD)
    frame = bytes(compressor.finish())
    assert frame[4] & 0xC0 == 0 and not frame[4] & 0x20  # no FCS field, not single-segment
    assert decompress(CompressionType.ZSTD, frame + frame) == PAYLOAD * 2


def test_gzip_reads_concatenated_members() -> None:
    data = gzip.compress(b"ab") + gzip.compress(b"cd")
    assert decompress(CompressionType.GZIP, data) == b"abcd"


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_unknown_codec(codec: int) -> None:
    batch = bytearray(build_simple_batch([b"x"], timestamp=0))
    batch[22] |= codec  # low byte of attributes
    with pytest.raises(CorruptRecordError, match="unknown compression codec"):
        decode_records(bytes(batch))
    with pytest.raises(ValueError):
        compress(codec, b"x")


def test_snappy_block_claiming_gigabytes_is_corrupt() -> None:
    with pytest.raises(CorruptRecordError, match="claims"):
        decompress(CompressionType.SNAPPY, b"\xff\xff\xff\xff\x0f\x00\x00")


@pytest.mark.parametrize("codec", CODECS[1:], ids=lambda c: c.name)
def test_truncated_payload_is_corrupt(codec: CompressionType) -> None:
    encoded = compress(codec, PAYLOAD)
    with pytest.raises(CorruptRecordError):
        decompress(codec, encoded[: len(encoded) // 2])


# --- malformed input --------------------------------------------------------------------


def _with_payload(payload: bytes, count: int, attributes: int = 0, magic: int = 2) -> bytes:
    header = HEADER.pack(
        0,
        HEADER_SIZE - LOG_OVERHEAD + len(payload),
        -1,
        magic,
        0,
        attributes,
        0,
        0,
        0,
        -1,
        -1,
        -1,
        count,
    )
    return header + payload


@pytest.mark.parametrize(
    ("payload", "count", "message"),
    [
        (b"", 1, "truncated inside a varint"),
        (b"\x80\x80\x80\x80\x80\x01", 1, "too long"),
        (b"\x80\x80\x80\x80\x7f", 1, "exceeds int32"),
        (b"\x10\x00\x00\x00\x02k\x02v\x00", 2, "truncated"),
        (b"\x10\x00\x00\x00\x02k\x02v\x00\x00", 1, "1 bytes left"),
        (b"\x10\x00\x00\x00\x02k\x06v\x00", 1, "runs past the record"),
        (b"\x12\x00\x00\x00\x01\x01\x02\x02\xff\x01", 1, "not utf-8"),
        (b"\x0e\x00\x00\x00\x01\x01\x00\x00", 1, "declares 7 bytes but its fields take 6"),
        (b"\x0c\x00\x00\x00\x01\x01\x01", 1, "negative record header count"),
        (b"\x00", 1, "out of bounds"),
    ],
)
def test_malformed_records(payload: bytes, count: int, message: str) -> None:
    with pytest.raises(CorruptRecordError, match=message):
        decode_records(_with_payload(payload, count))


def test_malformed_batch_frame() -> None:
    good = build_simple_batch([b"x"], timestamp=0)
    with pytest.raises(CorruptRecordError, match="shorter than its header"):
        decode_records(good[:60])
    with pytest.raises(CorruptRecordError, match="disagrees"):
        decode_records(good + b"\x00")
    with pytest.raises(UnsupportedMagicError):
        decode_records(_with_payload(b"", 0, magic=1))
    with pytest.raises(CorruptRecordError, match="negative record count"):
        decode_records(_with_payload(b"", -1))


def _decode_or_log_error(batch: bytes) -> None:
    try:
        decode_absolute(batch)
    except LogError:
        pass


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_or_log_error(data)


@given(
    payload=st.binary(max_size=300),
    count=st.integers(-3, 2**31 - 1) | st.integers(0, 4),
    attributes=st.integers(0, 0x7F),
)
def test_fuzz_garbage_payload_under_valid_header(
    payload: bytes, count: int, attributes: int
) -> None:
    _decode_or_log_error(_with_payload(payload, count, attributes))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@given(recs=st.lists(records, min_size=1, max_size=5), data=st.data())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_batches(
    codec: CompressionType, recs: list[Record], data: st.DataObject
) -> None:
    """Truncate a valid payload and flip bytes in it, then fix the batch length to match,
    so the damage reaches the codec and record parsers instead of the length check."""
    payload = bytearray(build_batch(recs, compression=codec, base_timestamp=0)[HEADER_SIZE:])
    payload = payload[: data.draw(st.integers(0, len(payload)))]
    for _ in range(data.draw(st.integers(0, 3))):
        if payload:
            payload[data.draw(st.integers(0, len(payload) - 1))] ^= data.draw(st.integers(1, 255))
    _decode_or_log_error(_with_payload(bytes(payload), len(recs), int(codec)))
