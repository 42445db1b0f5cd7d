"""Unit tests of the codec's rules: headers, tagged fields, nulls, errors, framing, records."""

from __future__ import annotations

import random
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kraft.net.protocol import (
    API_KEYS,
    METADATA_RECORDS,
    ZERO_UUID,
    ApiKey,
    ApiVersionsRequest,
    ApiVersionsResponse,
    DescribeTopicPartitionsRequest,
    EncodeError,
    ErrorCode,
    FetchRequest,
    FetchResponse,
    FrameAssembler,
    FrameReader,
    FrameTooLargeError,
    MetadataRecordType,
    MetadataRequest,
    PartitionRecord,
    ProduceRequest,
    ProtocolError,
    TopicRecord,
    UnsupportedVersionError,
    compile_all,
    decode_message,
    decode_metadata_record,
    decode_metadata_record_with_version,
    decode_request,
    decode_response,
    encode_message,
    encode_metadata_record,
    encode_request,
    encode_response,
    peek_correlation_id,
    read_uvarint,
    read_varint,
    read_varlong,
    request_header_version,
    response_header_version,
    write_uvarint,
    write_varint,
    write_varlong,
)

# ---------------------------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize(
    ("api_key", "version", "request_header", "response_header"),
    [
        (ApiKey.PRODUCE, 8, 1, 0),
        (ApiKey.PRODUCE, 9, 2, 1),
        (ApiKey.FETCH, 11, 1, 0),
        (ApiKey.FETCH, 12, 2, 1),
        (ApiKey.API_VERSIONS, 2, 1, 0),
        (ApiKey.API_VERSIONS, 3, 2, 0),  # ApiVersions responses: always header v0
        (ApiKey.API_VERSIONS, 99, 2, 0),  # versions from the future still parse
        (ApiKey.CONTROLLED_SHUTDOWN, 0, 0, 0),  # Kafka's one request header v0
        (ApiKey.CONTROLLED_SHUTDOWN, 1, 1, 0),
        (ApiKey.CONTROLLED_SHUTDOWN, 3, 2, 1),
    ],
)
def test_header_versions(
    api_key: int, version: int, request_header: int, response_header: int
) -> None:
    assert request_header_version(api_key, version) == request_header
    assert response_header_version(api_key, version) == response_header


def test_unknown_api_key_header_version() -> None:
    with pytest.raises(ProtocolError, match="unknown api key"):
        request_header_version(9999, 0)


def test_client_id_is_never_compact() -> None:
    frame = encode_request(
        ApiVersionsRequest(client_software_name="n", client_software_version="v"), 3, 7, "abc"
    )
    assert bytes(frame[4:]) == (
        struct.pack(">hhi", 18, 3, 7)
        + b"\x00\x03abc"  # client_id: int16 length even in a flexible header
        + b"\x00"  # header tagged fields
        + b"\x02n\x02v\x00"  # compact strings, body tagged fields
    )
    null_client = encode_request(ApiVersionsRequest(), 0, 7, None)
    assert bytes(null_client[4:]) == struct.pack(">hhih", 18, 0, 7, -1)


def test_response_frames() -> None:
    frame = encode_response(FetchResponse(), 12, correlation_id=0x01020304)
    assert frame[:4] == struct.pack(">i", len(frame) - 4)
    assert frame[4:9] == b"\x01\x02\x03\x04\x00"  # correlation id, then header tags (v1)
    assert peek_correlation_id(frame[4:]) == 0x01020304
    old = encode_response(FetchResponse(), 11, correlation_id=5)
    assert old[4:8] == b"\x00\x00\x00\x05" and old[8:12] == b"\x00\x00\x00\x00"


def test_unsupported_api_versions_request_keeps_header() -> None:
    # A client newer than us sends ApiVersions v99 (header v2: client_id, tags).
    frame = struct.pack(">hhi", 18, 99, 42) + b"\x00\x02cl" + b"\x00" + b"\x02x\x02y\x00"
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_request(frame)
    header = caught.value.header
    assert header is not None
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (
        18,
        99,
        42,
        "cl",
    )
    # ... and the answer is a v0 ApiVersions response with UNSUPPORTED_VERSION.
    answer = encode_response(
        ApiVersionsResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION,
            api_keys=[ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)],
        ),
        0,
        header.correlation_id,
    )
    # Our own client reads it as v0 even though it asked for v3.
    _, message = decode_response(answer[4:], 18, 3)
    assert isinstance(message, ApiVersionsResponse)
    assert message.error_code == ErrorCode.UNSUPPORTED_VERSION


def test_unsupported_version_of_other_api() -> None:
    frame = struct.pack(">hhi", ApiKey.PRODUCE, 200, 1) + b"\xff\xff\x00"
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_request(frame)
    assert caught.value.header is not None and caught.value.header.client_id is None


def test_unknown_api_key_is_a_plain_protocol_error() -> None:
    frame = struct.pack(">hhi", 9999, 0, 1) + b"\xff\xff"
    with pytest.raises(ProtocolError) as caught:
        decode_request(frame)
    assert not isinstance(caught.value, UnsupportedVersionError)


def test_short_frames() -> None:
    for frame in (b"", b"\x00\x12", struct.pack(">hhi", 18, 1, 1) + b"\x00"):
        with pytest.raises(ProtocolError):
            decode_request(frame)


# ---------------------------------------------------------------------------------------------
# Tagged fields, defaults, nulls


def test_defaults_follow_kafka() -> None:
    assert ProduceRequest().transactional_id is None
    assert MetadataRequest().allow_auto_topic_creation is True
    partition = FetchResponse.PartitionData()
    assert (partition.last_stable_offset, partition.log_start_offset) == (-1, -1)
    assert partition.preferred_read_replica == -1
    assert partition.diverging_epoch == FetchResponse.EpochEndOffset(epoch=-1, end_offset=-1)
    assert partition.aborted_transactions == [] and partition.records is None
    assert TopicRecord().topic_id == ZERO_UUID
    assert DescribeTopicPartitionsRequest().response_partition_limit == 2000
    assert DescribeTopicPartitionsRequest().cursor is None


def test_default_tagged_fields_stay_off_the_wire() -> None:
    def response(partition: FetchResponse.PartitionData) -> FetchResponse:
        return FetchResponse(
            responses=[FetchResponse.FetchableTopicResponse(topic="t", partitions=[partition])]
        )

    # Every tagged field at its default: the partition's tag section is one zero byte,
    # followed by the topic's and the response's own empty sections.
    plain = encode_message(response(FetchResponse.PartitionData()), 12)
    # preferred_read_replica -1, null records (compact: 0), three empty tag sections.
    assert plain.endswith(b"\xff\xff\xff\xff" + b"\x00" + b"\x00\x00\x00")
    leader = FetchResponse.LeaderIdAndEpoch(leader_id=3, leader_epoch=9)
    tagged = encode_message(response(FetchResponse.PartitionData(current_leader=leader)), 12)
    # One tag (1: CurrentLeader) of 9 bytes: int32 + int32 + an empty tag section.
    assert tagged.endswith(
        b"\x00" + b"\x01\x01\x09" + struct.pack(">ii", 3, 9) + b"\x00" + b"\x00\x00"
    )
    assert len(tagged) == len(plain) + 11
    with pytest.raises(EncodeError, match="not a generated message class"):
        encode_message(leader, 12)  # type: ignore[arg-type]


def test_tagged_string_exact_bytes() -> None:
    request = FetchRequest(
        cluster_id="c", replica_state=FetchRequest.ReplicaState(replica_id=2, replica_epoch=5)
    )
    body = encode_message(request, 15)
    # Tags in ascending order: 0 cluster_id ("c" as compact string), 1 replica_state.
    assert body.endswith(
        b"\x02" + b"\x00\x02\x02c" + b"\x01\x0d" + struct.pack(">iq", 2, 5) + b"\x00"
    )
    assert decode_message(FetchRequest, body, 15) == request


def test_unknown_tags_are_kept_and_merged_in_order() -> None:
    request = FetchRequest(cluster_id="c", unknown_tagged_fields={9: b"\xaa", 7: b""})
    body = encode_message(request, 12)
    assert body.endswith(b"\x03" + b"\x00\x02\x02c" + b"\x07\x00" + b"\x09\x01\xaa")
    decoded = decode_message(FetchRequest, body, 12)
    assert decoded.unknown_tagged_fields == {7: b"", 9: b"\xaa"}
    assert encode_message(decoded, 12) == body


def test_duplicate_known_and_unknown_tag() -> None:
    with pytest.raises(EncodeError):
        encode_message(FetchRequest(cluster_id="c", unknown_tagged_fields={0: b"x"}), 12)


def test_nullable_struct_marker() -> None:
    none = encode_message(DescribeTopicPartitionsRequest(), 0)
    assert none == b"\x01" + struct.pack(">i", 2000) + b"\xff" + b"\x00"
    cursor = DescribeTopicPartitionsRequest.Cursor(topic_name="t", partition_index=4)
    some = encode_message(DescribeTopicPartitionsRequest(cursor=cursor), 0)
    assert (
        some
        == b"\x01" + struct.pack(">i", 2000) + b"\x01\x02t" + struct.pack(">i", 4) + b"\x00\x00"
    )
    assert decode_message(DescribeTopicPartitionsRequest, some, 0).cursor == cursor


def test_null_in_non_nullable_field_on_the_wire() -> None:
    # MetadataRequest v0: the topics array is not nullable; -1 is garbage.
    frame = struct.pack(">hhih", 3, 0, 1, -1) + struct.pack(">i", -1)
    with pytest.raises(ProtocolError, match="non-nullable"):
        decode_request(frame)


def test_long_lengths_use_multibyte_varints() -> None:
    name = "n" * 300
    request = ProduceRequest(
        transactional_id=name,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=name,
                partition_data=[
                    ProduceRequest.PartitionProduceData(index=i, records=b"r" * 200)
                    for i in range(130)
                ],
            )
        ],
    )
    for version in (8, 9):
        body = encode_message(request, version)
        assert decode_message(ProduceRequest, body, version) == request


# ---------------------------------------------------------------------------------------------
# Encoding errors


def test_encode_errors() -> None:
    with pytest.raises(EncodeError, match="topic_data"):
        encode_message(ProduceRequest(topic_data=None), 9)  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encode_message(ProduceRequest(acks=70000), 9)
    with pytest.raises(EncodeError, match="absent from version 2"):
        encode_message(ProduceRequest(transactional_id="t"), 2)
    with pytest.raises(EncodeError, match="no version"):
        encode_message(ProduceRequest(), 99)
    with pytest.raises(EncodeError, match="not a response"):
        encode_response(ProduceRequest(), 9, 1)
    with pytest.raises(EncodeError, match="not a request"):
        encode_request(FetchResponse(), 9, 1)
    with pytest.raises(EncodeError):
        encode_message(TopicRecord(name=None), 0)  # type: ignore[arg-type]


def test_ignorable_fields_are_dropped_silently() -> None:
    # FetchResponse.throttle_time_ms (1+) is ignorable: v0 simply does not carry it.
    body = encode_message(FetchResponse(throttle_time_ms=5), 0)
    assert decode_message(FetchResponse, body, 0).throttle_time_ms == 0


# ---------------------------------------------------------------------------------------------
# Records, metadata records, tables


def test_records_slices_share_the_frame() -> None:
    payload = bytes(range(100))
    request = ProduceRequest(
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="t",
                partition_data=[ProduceRequest.PartitionProduceData(index=0, records=payload)],
            )
        ]
    )
    frame = bytes(encode_request(request, 9, 1, None)[4:])
    _, decoded = decode_request(memoryview(frame))
    assert isinstance(decoded, ProduceRequest)
    records = decoded.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and records.obj is frame and records == payload


def test_metadata_record_framing() -> None:
    topic_id = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
    data = encode_metadata_record(TopicRecord(name="t", topic_id=topic_id), 0)
    # frame version 1, record type 2 (TopicRecord), version 0, then the flexible body.
    assert data == b"\x01\x02\x00" + b"\x02t" + topic_id.bytes + b"\x00"
    assert decode_metadata_record(data) == TopicRecord(name="t", topic_id=topic_id)
    latest = encode_metadata_record(PartitionRecord(partition_id=1, topic_id=topic_id))
    record, version = decode_metadata_record_with_version(latest)
    assert version == METADATA_RECORDS[MetadataRecordType.PARTITION_RECORD].max_version
    assert isinstance(record, PartitionRecord) and record.partition_id == 1
    with pytest.raises(ProtocolError, match="frame version"):
        decode_metadata_record(b"\x02" + data[1:])
    with pytest.raises(ProtocolError, match="record type"):
        decode_metadata_record(b"\x01\x7f\x00")
    with pytest.raises(UnsupportedVersionError):
        decode_metadata_record(b"\x01\x02\x63" + data[3:])
    with pytest.raises(ProtocolError, match="left after"):
        decode_metadata_record(data + b"\x00")
    with pytest.raises(EncodeError, match="not a metadata record"):
        encode_metadata_record(ProduceRequest())


def test_tables() -> None:
    produce = API_KEYS[ApiKey.PRODUCE]
    assert (produce.name, produce.request, produce.min_version) == ("Produce", ProduceRequest, 0)
    assert API_KEYS[ApiKey.API_VERSIONS].response is ApiVersionsResponse
    assert ApiKey.API_VERSIONS == 18 and ApiKey.FETCH == 1
    assert METADATA_RECORDS[MetadataRecordType.TOPIC_RECORD].cls is TopicRecord
    assert "broker" in API_KEYS[ApiKey.FETCH].listeners
    assert compile_all() > 1000


# ---------------------------------------------------------------------------------------------
# Error codes


def test_error_codes() -> None:
    assert ErrorCode.NONE == 0 and ErrorCode.UNKNOWN_SERVER_ERROR == -1
    assert ErrorCode.OFFSET_OUT_OF_RANGE == 1 and ErrorCode.CORRUPT_MESSAGE == 2
    assert ErrorCode.UNKNOWN_TOPIC_OR_PARTITION == 3
    assert ErrorCode.NOT_LEADER_OR_FOLLOWER == 6 and ErrorCode.UNSUPPORTED_VERSION == 35
    assert ErrorCode.NOT_ENOUGH_REPLICAS == 19 and ErrorCode.NOT_CONTROLLER == 41
    assert ErrorCode.INVALID_REGISTRATION == 119 and ErrorCode.TRANSACTION_ABORTABLE == 120
    assert [int(c) for c in ErrorCode] == list(range(-1, max(ErrorCode) + 1))


def test_error_codes_cover_kafka_python() -> None:
    errors = pytest.importorskip("kafka.errors")
    theirs = {
        getattr(cls, "errno", None)
        for cls in vars(errors).values()
        if isinstance(cls, type) and isinstance(getattr(cls, "errno", None), int)
    }
    assert theirs <= {int(c) for c in ErrorCode}


# ---------------------------------------------------------------------------------------------
# Primitives


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (0xFFFFFFFF, b"\xff\xff\xff\xff\x0f"),
    ],
)
def test_uvarint_vectors(value: int, encoded: bytes) -> None:
    out = bytearray()
    write_uvarint(out, value)
    assert bytes(out) == encoded
    assert read_uvarint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"), (64, b"\x80\x01")],
)
def test_zigzag_vectors(value: int, encoded: bytes) -> None:
    out = bytearray()
    write_varint(out, value)
    assert bytes(out) == encoded
    assert read_varint(encoded, 0) == (value, len(encoded))
    assert read_varlong(encoded, 0) == (value, len(encoded))


@given(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-(1 << 63), (1 << 63) - 1))
def test_varint_roundtrip(small: int, big: int) -> None:
    out = bytearray()
    write_varint(out, small)
    write_varlong(out, big)
    value, pos = read_varint(out, 0)
    assert value == small
    assert read_varlong(out, pos) == (big, len(out))


def test_varint_garbage() -> None:
    for bad in (b"", b"\x80", b"\xff\xff\xff\xff\xff\x01"):
        with pytest.raises(ProtocolError):
            read_uvarint(bad, 0)
        with pytest.raises(ProtocolError):
            read_varint(bad, 0)
    with pytest.raises(ProtocolError):
        read_varlong(b"\xff" * 10 + b"\x01", 0)
    for write, value in (
        (write_uvarint, -1),
        (write_uvarint, 1 << 32),
        (write_varint, 1 << 31),
        (write_varlong, 1 << 63),
    ):
        with pytest.raises(EncodeError):
            write(bytearray(), value)


# ---------------------------------------------------------------------------------------------
# Framing


def test_frame_reader() -> None:
    frames = [b"a" * 5, b"", b"b" * 300]
    stream = b"".join(struct.pack(">i", len(f)) + f for f in frames)
    reader = FrameReader()
    got = []
    for i in range(0, len(stream), 7):  # arbitrary chunking
        reader.feed(stream[i : i + 7])
        got += reader.frames()
    assert got == frames and reader.buffered == 0
    assert reader.next_frame() is None


def test_frame_reader_limits() -> None:
    reader = FrameReader(max_frame_bytes=10)
    reader.feed(struct.pack(">i", 11))
    with pytest.raises(FrameTooLargeError):
        reader.next_frame()
    negative = FrameReader()
    negative.feed(struct.pack(">i", -5))
    with pytest.raises(ProtocolError):
        negative.next_frame()


def test_frame_reader_compacts() -> None:
    reader = FrameReader()
    frame = struct.pack(">i", 70000) + b"z" * 70000
    for _ in range(5):
        reader.feed(frame + frame[:2])
        assert reader.next_frame() == b"z" * 70000
        reader.feed(frame[2:])
        assert reader.next_frame() == b"z" * 70000
    assert reader.buffered == 0


def _assemble(assembler: FrameAssembler, stream: bytes, sizes: list[int]) -> list[bytes]:
    """Feed `stream` the way a socket would: into the handed buffer, at most `sizes[i]`
    bytes per receive (cycled)."""
    got: list[bytes] = []
    pos = i = 0
    while pos < len(stream):
        buf = assembler.buffer()
        n = min(len(buf), sizes[i % len(sizes)], len(stream) - pos)
        assert n > 0, "the assembler handed out an empty buffer"
        buf[:n] = stream[pos : pos + n]
        pos += n
        i += 1
        got += [bytes(f) for f in assembler.received(n)]
    return got


@pytest.mark.parametrize("sizes", [[1], [7], [3, 65536, 5], [1 << 20], [4, 4, 100000]])
def test_frame_assembler_gives_the_frames_of_any_chunking(sizes: list[int]) -> None:
    rng = random.Random(len(sizes) * 31 + sizes[0])
    frames = [
        rng.randbytes(rng.choice([0, 1, 10, 5000, 65531, 65532, 70000, 300000])) for _ in range(40)
    ]
    stream = b"".join(struct.pack(">i", len(f)) + f for f in frames)
    assert _assemble(FrameAssembler(staging_bytes=65536), stream, sizes) == frames


def test_frame_assembler_receives_a_large_frame_in_place() -> None:
    assembler = FrameAssembler(staging_bytes=1024)
    body = bytes(range(256)) * 40  # larger than the staging buffer
    stream = struct.pack(">i", len(body)) + body
    buf = assembler.buffer()
    buf[:100] = stream[:100]
    assert assembler.received(100) == []
    target = assembler.buffer()  # the frame's own buffer, past what staging already held
    assert len(target) == len(body) - 96
    target[:] = stream[100:]
    (frame,) = assembler.received(len(target))
    assert isinstance(frame, bytearray) and frame == body


def test_frame_assembler_errors_come_after_the_frames_before_them() -> None:
    assembler = FrameAssembler(max_frame_bytes=10)
    stream = struct.pack(">i", 2) + b"ok" + struct.pack(">i", 11) + struct.pack(">i", 1) + b"x"
    buf = assembler.buffer()
    buf[: len(stream)] = stream
    assert assembler.received(len(stream)) == [b"ok"]
    assert isinstance(assembler.error, FrameTooLargeError) and assembler.error.size == 11
    assert assembler.received(0) == []  # nothing after the bad size is framed
    negative = FrameAssembler()
    negative.buffer()[:4] = struct.pack(">i", -5)
    assert negative.received(4) == []
    assert isinstance(negative.error, ProtocolError)


def test_responses_drop_fields_their_version_lacks_unless_strict() -> None:
    from kraft.net.protocol import ListOffsetsResponse, decode_response

    part = ListOffsetsResponse.ListOffsetsPartitionResponse(
        partition_index=0, offset=7, leader_epoch=5
    )
    response = ListOffsetsResponse(
        topics=[ListOffsetsResponse.ListOffsetsTopicResponse(name="t", partitions=[part])]
    )
    frame = encode_response(response, 3, 11)
    _, decoded = decode_response(frame[4:], 2, 3)
    assert decoded.topics[0].partitions[0].offset == 7
    assert decoded.topics[0].partitions[0].leader_epoch == -1  # v3 cannot carry it
    with pytest.raises(EncodeError, match="absent from version 3"):
        encode_response(response, 3, 11, strict=True)
