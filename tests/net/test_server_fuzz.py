"""The Kafka listener under hostile input: one real node in-process, raw asyncio sockets.

Every probe opens its own connection, sends one bad frame followed by a *sentinel* (an
ApiVersions v0 request with its own correlation id), and reads until the sentinel's response
or the end of the stream, within `PROBE_TIMEOUT_S`. So each probe ends in one of:

* closed: the server dropped the connection (it must also have logged a WARNING naming the
  peer, since the peer broke the protocol);
* answered: zero or one response to the bad frame (well-formed, same correlation id), then
  the sentinel's response, proving the server consumed exactly the frame it was sent;
* hung: the bounded wait expired; always a failure.

A server-side ERROR record (an exception in a handler or the encoder) is a bug of ours, never
the peer's, and fails the run.

The other tests: a frame announcing 200 MiB is refused before its body is read; pipelined
requests are answered in request order, even behind a long-polling Fetch; ApiVersions newer
than ours is answered in v0 with UNSUPPORTED_VERSION; corrupt record batches are refused per
partition and never reach a segment; 20k bad frames leave memory flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kraft.log.batch import CRC_START, HEADER, HEADER_SIZE, LOG_OVERHEAD, validate_batch
from kraft.log.compression import CompressionType
from kraft.log.errors import LogError
from kraft.log.records import build_simple_batch, crc32c
from kraft.net.protocol import (
    API_KEYS,
    ZERO_UUID,
    ApiVersionsRequest,
    ApiVersionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DescribeClusterRequest,
    ErrorCode,
    FetchRequest,
    FieldSpec,
    ListOffsetsRequest,
    Message,
    MessageSpec,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    ProduceResponse,
    ProtocolError,
    decode_response,
    encode_request,
    peek_correlation_id,
    request_header_version,
    spec_of,
)
from kraft.node import Node
from tests.inprocess import running_node
from tests.net.protocol.test_protocol_fuzz import sample_struct
from tests.wait import wait_until_async

HOST = "127.0.0.1"
PROBE_TIMEOUT_S = 5.0
CONCURRENCY = 16
SENTINEL_ID = 0x5E5E5E5E
PROBE_ID = 0x0C0FFEE0
_SIZE = struct.Struct(">i")
SENTINEL = bytes(encode_request(ApiVersionsRequest(), 0, SENTINEL_ID, "sentinel"))
_PEER = re.compile(r"from (\d+\.\d+\.\d+\.\d+:\d+)")


# --------------------------------------------------------------------------- node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path) as n:
        yield n


def port_of(node: Node) -> int:
    return node.servers[0].port


# --------------------------------------------------------------------------- raw client


def frame_of(body: bytes) -> bytes:
    return _SIZE.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _SIZE.unpack(await reader.readexactly(4))
    return await reader.readexactly(size)


class RawClient:
    """One connection speaking the codec directly, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._next_id = 1

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, message: Message, version: int) -> Any:
        self._next_id += 1
        self.writer.write(encode_request(message, version, self._next_id, "raw"))
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            frame = await read_frame(self.reader)
        api_key = spec_of(type(message)).api_key
        assert api_key is not None
        header, response = decode_response(frame, api_key, version)
        assert header.correlation_id == self._next_id
        return response

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def create_topic(port: int, name: str, partitions: int) -> None:
    client = await RawClient.connect(port)
    try:
        topic = CreateTopicsRequest.CreatableTopic(
            name=name, num_partitions=partitions, replication_factor=1
        )
        response: CreateTopicsResponse = await client.request(
            CreateTopicsRequest(topics=[topic], timeout_ms=5000), 5
        )
        assert [t.error_code for t in response.topics] == [0]
    finally:
        await client.close()


# --------------------------------------------------------------------------- probes


@dataclass(slots=True)
class Probe:
    label: str
    data: bytes  # everything sent before the sentinel, size prefixes included
    must_close: bool
    # The request header, when the frame carries a readable one (to check an answer).
    api_key: int | None = None
    api_version: int | None = None
    # Send `data` then half-close instead of the sentinel: the stream ends inside a frame.
    cut_stream: bool = False
    answers: int = 1  # responses expected before the sentinel's if not closed (at most)
    must_answer: bool = False  # a valid request of an advertised version


@dataclass(slots=True)
class Outcome:
    peer: str
    responses: list[bytes]
    closed: bool
    elapsed: float


async def send_probe(port: int, probe: Probe) -> Outcome:
    """Send the probe; raises TimeoutError if the server neither answers nor closes."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    local = writer.get_extra_info("sockname")
    peer = f"{local[0]}:{local[1]}"
    responses: list[bytes] = []
    try:
        if probe.cut_stream:
            writer.write(probe.data)
            writer.write_eof()
        else:
            writer.write(probe.data + SENTINEL)
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            while True:
                try:
                    frame = await read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return Outcome(peer, responses, True, time.perf_counter() - start)
                if peek_correlation_id(frame) == SENTINEL_ID:
                    return Outcome(peer, responses, False, time.perf_counter() - start)
                responses.append(frame)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def check_answer(probe: Probe, frame: bytes) -> str | None:
    """None if `frame` is a well-formed response to the probe's request."""
    if probe.api_key is None or probe.api_version is None:
        return "answered a frame with no readable request header"
    versions = [probe.api_version]
    if probe.api_key == 18:
        versions.append(0)  # an unsupported ApiVersions request is answered in v0
    for version in versions:
        if (
            not API_KEYS[probe.api_key].min_version
            <= version
            <= API_KEYS[probe.api_key].max_version
        ):
            continue
        try:
            header, _ = decode_response(frame, probe.api_key, version)
        except ProtocolError:
            continue
        if header.correlation_id != PROBE_ID:
            return f"response carries correlation id {header.correlation_id}, not {PROBE_ID}"
        return None
    return f"response of {len(frame)} bytes does not decode"


def judge(probe: Probe, outcome: Outcome) -> str | None:
    """None if the outcome is acceptable for the probe."""
    if outcome.closed:
        if probe.must_answer:
            return "closed on a valid request of an advertised version"
        for frame in outcome.responses:
            problem = check_answer(probe, frame)
            if problem:
                return problem
        return None
    if probe.cut_stream:
        return "the stream ended inside a frame, yet the connection was not closed"
    if probe.must_close:
        return f"not closed; {len(outcome.responses)} response(s) to an undecodable frame"
    if probe.must_answer and len(outcome.responses) != probe.answers:
        return f"{len(outcome.responses)} responses to {probe.answers} valid request(s)"
    if len(outcome.responses) > probe.answers:
        return f"{len(outcome.responses)} responses to {probe.answers} request(s)"
    for frame in outcome.responses:
        problem = check_answer(probe, frame)
        if problem:
            return problem
    return None


@dataclass
class Report:
    probes: int = 0
    closed: int = 0
    answered: int = 0
    slowest: float = 0.0
    failures: list[str] = field(default_factory=list)
    # Peers whose connection the server closed on a complete frame: each needs a WARNING.
    closed_peers: set[str] = field(default_factory=set)

    def add(self, probe: Probe, outcome: Outcome | None) -> None:
        self.probes += 1
        if outcome is None:
            self.failures.append(f"{probe.label}: hung (no answer, no close)")
            return
        self.slowest = max(self.slowest, outcome.elapsed)
        if outcome.closed:
            self.closed += 1
            if not probe.cut_stream:
                self.closed_peers.add(outcome.peer)
        else:
            self.answered += 1
        problem = judge(probe, outcome)
        if problem:
            self.failures.append(f"{probe.label}: {problem}")

    def summary(self) -> str:
        head = "\n".join(self.failures[:25])
        return f"{len(self.failures)} of {self.probes} probes failed:\n{head}"


async def run_probes(port: int, probes: Iterable[Probe], report: Report) -> None:
    """Send every probe, `CONCURRENCY` connections at a time."""
    source = iter(probes)

    async def worker() -> None:
        for probe in source:
            try:
                outcome: Outcome | None = await send_probe(port, probe)
            except TimeoutError:
                outcome = None
            report.add(probe, outcome)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def request_header(api_key: int, version: int, correlation_id: int = PROBE_ID) -> bytes:
    out = struct.pack(">hhi", api_key, version, correlation_id)
    header_version = request_header_version(api_key, version)
    if header_version >= 1:
        out += b"\x00\x04fuzz"
    if header_version >= 2:
        out += b"\x00"
    return out


_PRIMITIVE_DEFAULTS: dict[str, Any] = {
    "bool": False,
    "int8": 0,
    "int16": 0,
    "uint16": 0,
    "int32": 0,
    "uint32": 0,
    "int64": 0,
    "float64": 0.0,
    "uuid": ZERO_UUID,
    "string": "",
}


def _lengths_one_and_two(f: FieldSpec) -> tuple[Any, Any] | None:
    if f.array:
        if f.type == "struct":
            assert f.struct is not None
            cls = f.struct.cls
            return [cls()], [cls(), cls()]
        element = _PRIMITIVE_DEFAULTS.get(f.type)
        return None if element is None else ([element], [element, element])
    if f.type == "string":
        return "x", "xy"
    if f.type in ("bytes", "records"):
        return b"x", b"xy"
    return None


def hostile_length_frames(spec: MessageSpec, version: int) -> Iterator[tuple[str, bytes]]:
    """For each top-level length or count field: a valid request with that length replaced
    by a hostile one (2^31-1, 32767, a uvarint near 2^32 or one that never ends, and -2 where
    the field is not nullable: like Kafka's readers, a nullable field reads any negative
    length as null).

    The field's position is found by encoding the request with the field at length 1 and at
    length 2: every byte before its length prefix is identical, and for a big-endian prefix
    (or a one-byte uvarint) the first differing byte is the prefix's last.
    """
    flexible = spec.is_flexible(version)
    for f in spec.fields:
        if not f.present_in(version) or f.tagged_in(version):
            continue
        values = _lengths_one_and_two(f)
        if values is None:
            continue
        one = bytes(encode_request(spec.cls(**{f.name: values[0]}), version, PROBE_ID, "fuzz"))[4:]
        two = bytes(encode_request(spec.cls(**{f.name: values[1]}), version, PROBE_ID, "fuzz"))[4:]
        at = next(i for i, (a, b) in enumerate(zip(one, two, strict=False)) if a != b)
        if flexible:
            width = 1
            hostile = [b"\xff\xff\xff\xff\x0f", b"\xff" * 8]
        else:
            width = 2 if f.type == "string" and not f.array else 4
            hostile = [b"\x7f\xff"] if width == 2 else [b"\x7f\xff\xff\xff"]
            if not f.nullable_in(version):
                hostile.append(b"\xff\xfe" if width == 2 else b"\xff\xff\xff\xfe")
        start = at - width + 1
        expected = 2 if flexible else 1  # compact lengths are N+1
        assert int.from_bytes(one[start : start + width], "big") == expected, (spec.name, f.name)
        for value in hostile:
            body = one[:start] + value + one[start + width :]
            yield f"{f.name}={value.hex()}", frame_of(body)


def probes_for(api_key: int, version: int, advertised: bool, rng: random.Random) -> Iterator[Probe]:
    info = API_KEYS[api_key]
    spec = spec_of(info.request)
    name = f"{info.name} v{version}"
    message = sample_struct(spec, version, spec.is_flexible(version))
    body = bytes(encode_request(message, version, PROBE_ID, "fuzz"))[4:]
    # Every strict prefix of a valid request, framed as a complete (short) frame.
    for cut in range(len(body)):
        yield Probe(f"{name} prefix {cut}/{len(body)}", frame_of(body[:cut]), must_close=True)
    # The stream ends halfway through a frame announced at its full size.
    yield Probe(f"{name} stream cut", frame_of(body)[: 4 + len(body) // 2], True, cut_stream=True)
    header = request_header(api_key, version)
    for i in range(6):
        tail = rng.randbytes(rng.choice((1, 2, 4, 8, 16, 32, 64)))
        yield Probe(
            f"{name} random body {i} {tail.hex()}", frame_of(header + tail), False, api_key, version
        )
    for label, frame in hostile_length_frames(spec, version):
        yield Probe(f"{name} hostile {label}", frame, must_close=True)
    # The whole valid request plus trailing garbage, which Kafka ignores: answered if the
    # version is advertised, else the connection is closed.
    trailing = frame_of(body + rng.randbytes(9))
    yield Probe(
        f"{name} trailing bytes",
        trailing,
        not advertised,
        api_key,
        version,
        must_answer=advertised,
    )
    # Valid requests with one to three bytes of the body changed: odd values reach handlers.
    start = len(request_header(api_key, version))
    for i in range(8):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            if len(mutated) > start:
                at = rng.randrange(start, len(mutated))
                mutated[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        yield Probe(f"{name} mutated {i}", frame_of(bytes(mutated)), False, api_key, version)


def global_probes() -> Iterator[Probe]:
    """Frames whose size prefix or header is itself the problem."""
    yield Probe("size 0", _SIZE.pack(0), True)
    yield Probe("size -1", _SIZE.pack(-1), True)
    yield Probe("size -2^31", _SIZE.pack(-(2**31)), True)
    yield Probe("size 2^31-1", _SIZE.pack(2**31 - 1) + b"\x00" * 64, True)
    yield Probe("7-byte header", frame_of(b"\x00\x12\x00\x00\x00\x00\x01"), True)
    for key in (-1, 9999, 32767, 100):
        yield Probe(
            f"unknown api key {key}", frame_of(struct.pack(">hhi", key, 0, 1) + b"\xff\xff"), True
        )
    for version in (-1, -32768, 32767, 99):
        yield Probe(f"Produce v{version}", frame_of(struct.pack(">hhih", 0, version, 1, -1)), True)
    # client_id claiming 32767 bytes; then invalid UTF-8.
    yield Probe("client_id 32767", frame_of(struct.pack(">hhih", 3, 1, 1, 0x7FFF) + b"abc"), True)
    yield Probe("client_id utf-8", frame_of(struct.pack(">hhih", 3, 1, 1, 2) + b"\xc3\x28"), True)
    # Header v2 with a tagged-field section claiming 2^28 fields.
    yield Probe(
        "header tags 2^28",
        frame_of(struct.pack(">hhih", 3, 12, 1, -1) + b"\xff\xff\xff\x7f"),
        True,
    )
    # ApiVersions the codec does not know: answered (v0, UNSUPPORTED_VERSION), kept open.
    for version in (5, 99, 32767, -1):
        yield Probe(
            f"ApiVersions v{version}", frame_of(request_header(18, version)), False, 18, version
        )


def all_probes(advertised: dict[int, tuple[int, int]]) -> Iterator[Probe]:
    yield from global_probes()
    for api_key in sorted(API_KEYS):
        info = API_KEYS[api_key]
        lo, hi = advertised.get(api_key, (0, -1))
        for version in range(info.min_version, info.max_version + 1):
            rng = random.Random(f"{api_key}-{version}")
            yield from probes_for(api_key, version, lo <= version <= hi, rng)


# --------------------------------------------------------------------------- real client


def kafka_python_round_trip(bootstrap: str, topic: str, count: int = 20) -> list[bytes]:
    """Create `topic`, produce `count` values with acks=all, read them back (blocking)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_block_ms=10_000)
    try:
        for i in range(count):
            producer.send(topic, f"value-{i}".encode()).get(timeout=10)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        consumer.assign([TopicPartition(topic, 0)])
        values: list[bytes] = []
        for message in consumer:
            values.append(message.value)
            if len(values) == count:
                break
        return values
    finally:
        consumer.close()


async def assert_server_healthy(node: Node) -> None:
    client = await RawClient.connect(port_of(node))
    try:
        response: ApiVersionsResponse = await client.request(ApiVersionsRequest(), 3)
        assert response.error_code == 0
        assert {k.api_key for k in response.api_keys} >= {0, 1, 3, 18}
    finally:
        await client.close()
    values = await asyncio.to_thread(kafka_python_round_trip, node.bootstrap_servers, "after-fuzz")
    assert values == [f"value-{i}".encode() for i in range(20)]


def server_errors(records: Sequence[logging.LogRecord]) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("net", "kraft", "log")
    ]


# --------------------------------------------------------------------------- tests


async def test_port_zero_listener_registers_the_bound_port(tmp_path: Path) -> None:
    for extra in ({}, {"advertised.listeners": "PLAINTEXT://localhost:0"}):
        async with running_node(tmp_path / str(len(extra)), **extra) as n:
            port = port_of(n)
            assert port != 0
            assert n.bootstrap_servers == f"{HOST}:{port}"
            assert n.broker is not None
            host, registered = n.broker.image.brokers[1].endpoints["PLAINTEXT"]
            assert registered == port
            client = await RawClient.connect(port)
            try:
                metadata: MetadataResponse = await client.request(MetadataRequest(topics=[]), 12)
            finally:
                await client.close()
            assert [(b.host, b.port) for b in metadata.brokers] == [(host, port)]


async def test_every_api_survives_truncated_random_and_hostile_frames(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    report = Report()
    assert node.broker is not None
    await run_probes(port_of(node), all_probes(node.broker.supported_versions), report)
    assert not report.failures, report.summary()
    assert report.slowest < PROBE_TIMEOUT_S
    # Each connection closed on a complete frame was logged with its peer.
    warned = {
        m.group(1)
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "kraft.net.server"
        for m in [_PEER.search(r.getMessage())]
        if m
    }
    unlogged = report.closed_peers - warned
    assert not unlogged, f"{len(unlogged)} closes without a WARNING naming the peer"
    assert not server_errors(caplog.records), server_errors(caplog.records)[:10]
    # No connection task left behind.
    await wait_until_async(
        lambda: not node.servers[0]._connections, "every connection task to end", 5
    )
    await assert_server_healthy(node)


async def test_huge_frame_is_refused_before_its_body_is_read(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kraft.net.server")
    before = rss_bytes()
    reader, writer = await asyncio.open_connection(HOST, port_of(node))
    local = writer.get_extra_info("sockname")
    peer = f"{local[0]}:{local[1]}"
    start = time.perf_counter()
    # Announce 200 MiB and send only 64 KiB: a server that waited for (or preallocated) the
    # body would keep the connection open, or show the allocation in its RSS.
    writer.write(_SIZE.pack(200 << 20) + b"\x00" * 65536)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            rest = await reader.read()
    except ConnectionError:
        rest = b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert rest == b""
    assert time.perf_counter() - start < 2.0
    assert rss_bytes() - before < 50 << 20
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(peer in line and "socket.request.max.bytes" in line for line in lines), lines


async def test_socket_request_max_bytes_boundary(tmp_path: Path) -> None:
    async with running_node(tmp_path, **{"socket.request.max.bytes": "1024"}) as n:
        body = request_header(18, 0, 7)
        padded = body + b"\x00" * (1024 - len(body))  # bytes after a request are ignored
        answered = await send_probe(port_of(n), Probe("1024", frame_of(padded), False, 18, 0))
        assert not answered.closed and len(answered.responses) == 1
        refused = await send_probe(port_of(n), Probe("1025", frame_of(padded + b"\x00"), True))
        assert refused.closed and not refused.responses


async def test_pipelined_requests_are_answered_in_request_order(node: Node) -> None:
    port = port_of(node)
    await create_topic(port, "pipelined", 1)
    record = build_simple_batch([b"v"])

    def produce(acks: int) -> ProduceRequest:
        data = ProduceRequest.PartitionProduceData(index=0, records=record)
        topic = ProduceRequest.TopicProduceData(name="pipelined", partition_data=[data])
        return ProduceRequest(acks=acks, timeout_ms=5000, topic_data=[topic])

    fetch_partition = FetchRequest.FetchPartition(
        partition=0, fetch_offset=2, partition_max_bytes=1 << 20
    )
    long_poll = FetchRequest(
        max_wait_ms=300,
        min_bytes=1 << 20,
        topics=[FetchRequest.FetchTopic(topic="pipelined", partitions=[fetch_partition])],
    )
    latest = ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)
    list_offsets = ListOffsetsRequest(
        replica_id=-1,
        topics=[ListOffsetsRequest.ListOffsetsTopic(name="pipelined", partitions=[latest])],
    )
    create = CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(name="p2", num_partitions=2, replication_factor=1)
        ]
    )
    plan: list[tuple[Message, int, bool]] = []  # (request, version, answered)
    plan += [(ApiVersionsRequest(), v, True) for v in range(5)]
    plan += [(MetadataRequest(topics=None if v >= 1 else []), v, True) for v in range(13)]
    plan += [(produce(1), 9, True), (produce(0), 9, False), (long_poll, 12, True)]
    plan += [(create, 5, True), (list_offsets, 7, True), (DescribeClusterRequest(), 1, True)]
    plan += [(MetadataRequest(topics=None), 12, True), (produce(-1), 3, True)]
    plan += [(ApiVersionsRequest(), v, True) for v in range(5)] * 4
    ids = random.Random(7).sample(range(1, 2**31 - 1), len(plan))
    reader, writer = await asyncio.open_connection(HOST, port)
    start = time.perf_counter()
    writer.write(
        b"".join(encode_request(m, v, i, "pipe") for (m, v, _), i in zip(plan, ids, strict=True))
    )
    expected = [(m, v, i) for (m, v, answered), i in zip(plan, ids, strict=True) if answered]
    got: list[int] = []
    try:
        async with asyncio.timeout(10):
            for message, version, correlation_id in expected:
                frame = await read_frame(reader)
                got.append(peek_correlation_id(frame))
                if got[-1] != correlation_id:
                    break
                api_key = spec_of(type(message)).api_key
                assert api_key is not None
                _, response = decode_response(frame, api_key, version)
                if isinstance(response, ProduceResponse):
                    codes = [
                        p.error_code for t in response.responses for p in t.partition_responses
                    ]
                    assert codes == [0]
    finally:
        writer.close()
    assert got == [i for _, _, i in expected]
    # The long poll held up everything behind it: requests are not reordered around it.
    assert time.perf_counter() - start >= 0.25


async def test_api_versions_too_new_is_answered_in_v0(node: Node) -> None:
    """KIP-511: the client learns our range from a v0 answer and steps down on the same
    connection."""
    assert node.broker is not None
    lo, hi = node.broker.api_versions_range()
    assert (lo, hi) == (0, 4)
    reader, writer = await asyncio.open_connection(HOST, port_of(node))
    try:
        for version in (hi + 1, 99, 0x7FFF):
            # A newer client's body is unknown to us: it must not matter.
            writer.write(frame_of(request_header(18, version, 4242) + b"\x03\x01x\x01y\x00"))
            writer.write(encode_request(ApiVersionsRequest(), hi, 4243, "after"))
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                refusal = await read_frame(reader)
                after = await read_frame(reader)
            header, response = decode_response(refusal, 18, 0, strict=True)
            assert isinstance(response, ApiVersionsResponse)
            assert header.correlation_id == 4242
            assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
            ranges = [(k.api_key, k.min_version, k.max_version) for k in response.api_keys]
            assert ranges == [(18, lo, hi)]
            header, answer = decode_response(after, 18, hi)
            assert isinstance(answer, ApiVersionsResponse)
            assert header.correlation_id == 4243 and answer.error_code == 0
    finally:
        writer.close()


# ------------------------------------------------------------------- corrupt batches


def _with_crc(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, 17, crc32c(memoryview(batch)[CRC_START:]))
    return bytes(batch)


def legacy_message_v1(value: bytes) -> bytes:
    """A message-format v1 message set of one message (magic 1, CRC32 over magic..end)."""
    body = struct.pack(">bbqi", 1, 0, 0, -1) + struct.pack(">i", len(value)) + value
    message = struct.pack(">I", zlib.crc32(body)) + body
    return struct.pack(">qi", 0, len(message)) + message


CORRUPT = ErrorCode.CORRUPT_MESSAGE
INVALID = ErrorCode.INVALID_RECORD
OLD_FORMAT = ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


def corrupt_batches() -> dict[str, tuple[bytes, frozenset[int]]]:
    """Named payloads, each with the error codes a Produce of it may get.

    Where two codes are allowed, kraft answers the first and Kafka the second: Kafka's
    ProduceRequest.validateRecords answers INVALID_RECORD (v3+) for a batch of magic < 2 and
    for records holding no whole batch (its batch iterator stops at a truncated one).
    """
    good = build_simple_batch([b"a", b"bb", b"ccc"], [b"k1", b"k2", b"k3"])
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    magic1 = bytearray(good)
    magic1[16] = 1
    magic0 = bytearray(good)
    magic0[16] = 0
    longer = bytearray(good)
    struct.pack_into(">i", longer, 8, len(good) - LOG_OVERHEAD + 10)
    shorter = bytearray(good)
    struct.pack_into(">i", shorter, 8, 20)
    fields = list(HEADER.unpack_from(good))
    fields[12] = 7  # records_count no longer matches last_offset_delta + 1
    miscounted = bytearray(good)
    HEADER.pack_into(miscounted, 0, *fields)
    fields = list(HEADER.unpack_from(good))
    fields[6] = -1  # last_offset_delta
    negative_delta = bytearray(good)
    HEADER.pack_into(negative_delta, 0, *fields)
    return {
        "bad crc": (bytes(flipped), frozenset({CORRUPT})),
        "magic 1": (bytes(magic1), frozenset({OLD_FORMAT, INVALID})),
        "magic 0": (bytes(magic0), frozenset({OLD_FORMAT, INVALID})),
        "legacy v1 message set": (legacy_message_v1(b"old"), frozenset({OLD_FORMAT, INVALID})),
        "truncated": (good[:-5], frozenset({CORRUPT, INVALID})),
        "header only": (good[: HEADER_SIZE - 1], frozenset({CORRUPT, INVALID})),
        "length too long": (bytes(longer), frozenset({CORRUPT, INVALID})),
        "length too short": (bytes(shorter), frozenset({CORRUPT})),
        "record count": (_with_crc(miscounted), frozenset({INVALID})),
        "negative offset delta": (_with_crc(negative_delta), frozenset({INVALID})),
        "good then bad crc": (good + bytes(flipped), frozenset({CORRUPT, INVALID})),
        "good then trailing bytes": (good + b"\x00" * 7, frozenset({CORRUPT, INVALID})),
        "empty": (b"", frozenset({INVALID})),
    }


def scan_log_files(root: Path) -> dict[str, int]:
    """Batches per `.log` file; fails if any file holds anything but whole valid batches."""
    out: dict[str, int] = {}
    for path in sorted(root.rglob("*.log")):
        data = path.read_bytes()
        pos = count = 0
        while pos < len(data):
            try:
                header = validate_batch(data, pos, len(data))
            except LogError as e:
                raise AssertionError(f"{path} at byte {pos}: {e}") from None
            pos += LOG_OVERHEAD + header.batch_length
            count += 1
        out[str(path.relative_to(root))] = count
    return out


@pytest.mark.parametrize("version", [3, 7, 9, 11])
async def test_corrupt_batches_are_refused_per_partition_and_never_written(
    tmp_path: Path, version: int
) -> None:
    cases = corrupt_batches()
    names = list(cases)
    async with running_node(tmp_path) as n:
        port = port_of(n)
        await create_topic(port, "corrupt", len(names) + 1)
        assert n.broker is not None
        partitions = n.broker.partitions
        valid = len(names)  # the last partition gets a valid batch in the same request
        data = [
            ProduceRequest.PartitionProduceData(index=i, records=cases[name][0])
            for i, name in enumerate(names)
        ]
        data.append(
            ProduceRequest.PartitionProduceData(index=valid, records=build_simple_batch([b"ok"]))
        )
        request = ProduceRequest(
            acks=-1,
            timeout_ms=5000,
            topic_data=[ProduceRequest.TopicProduceData(name="corrupt", partition_data=data)],
        )
        client = await RawClient.connect(port)
        try:
            response: ProduceResponse = await client.request(request, version)
            # The connection is still usable after the refusals.
            await client.request(ApiVersionsRequest(), 0)
        finally:
            await client.close()
        codes = {p.index: p.error_code for t in response.responses for p in t.partition_responses}
        assert sorted(codes) == list(range(valid + 1))
        wrong = {name: codes[i] for i, name in enumerate(names) if codes[i] not in cases[name][1]}
        assert not wrong, wrong
        assert codes[valid] == 0
        for i in range(valid):
            assert partitions[("corrupt", i)].log.log_end_offset == 0, names[i]
        assert partitions[("corrupt", valid)].log.log_end_offset == 1
    # After a clean stop (an active segment may carry preallocated space until then): every
    # segment of every partition holds only whole, valid batches.
    counts = scan_log_files(tmp_path / "logs")
    written = {k.split(os.sep)[0]: v for k, v in counts.items() if v}
    assert written.get(f"corrupt-{valid}") == 1
    assert not any(k.startswith("corrupt-") and k != f"corrupt-{valid}" for k in written)
    assert "__cluster_metadata-0" in written


@pytest.mark.parametrize(
    ("version", "payload", "kafka_code"),
    [
        pytest.param(
            9,
            "magic 1",
            INVALID,
            id="magic-1-v9",
        ),
        pytest.param(
            9,
            "two batches",
            INVALID,
            id="two-batches-v9",
        ),
        pytest.param(
            6,
            "zstd",
            ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
            id="zstd-v6",
        ),
        pytest.param(7, "zstd", 0, id="zstd-v7"),
        pytest.param(9, "one batch", 0, id="one-batch-v9"),
    ],
)
async def test_produce_record_rules_match_kafka(
    tmp_path: Path, version: int, payload: str, kafka_code: int
) -> None:
    payloads = {
        "magic 1": corrupt_batches()["magic 1"][0],
        "two batches": build_simple_batch([b"a"]) + build_simple_batch([b"b"]),
        "zstd": build_simple_batch([b"z" * 100], compression=CompressionType.ZSTD),
        "one batch": build_simple_batch([b"a"]),
    }
    async with running_node(tmp_path) as n:
        await create_topic(port_of(n), "rules", 1)
        data = ProduceRequest.PartitionProduceData(index=0, records=payloads[payload])
        request = ProduceRequest(
            acks=1,
            timeout_ms=5000,
            topic_data=[ProduceRequest.TopicProduceData(name="rules", partition_data=[data])],
        )
        client = await RawClient.connect(port_of(n))
        try:
            response: ProduceResponse = await client.request(request, version)
        finally:
            await client.close()
        assert n.broker is not None
        log_end = n.broker.partitions[("rules", 0)].log.log_end_offset
    codes = [p.error_code for t in response.responses for p in t.partition_responses]
    assert codes == [kafka_code]
    assert (log_end == 0) == (kafka_code != 0)


# ------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """VmRSS of this process (the node, the probing client and pytest together)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class _CountAndDrop(logging.Filter):
    """Counts the server's close warnings and drops them: pytest keeps every captured record,
    which would otherwise show up as growth in the measurement."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "closing connection" in record.msg:
            self.closes += 1
            return False
        return True


def memory_probes(count: int, seed: int) -> Iterator[Probe]:
    """`count` bad frames: ~3/5 close their connection, the rest are answered on pipelined
    connections (ApiVersions v99; Produce of a corrupt batch)."""
    rng = random.Random(seed)
    produce = bytes(encode_request(ProduceRequest(acks=1, timeout_ms=1000), 9, 1, "x"))[4:]
    closers: list[Callable[[], bytes]] = [
        lambda: frame_of(produce[: rng.randrange(len(produce))]),
        lambda: frame_of(struct.pack(">hhi", rng.randrange(100, 30000), 0, 1) + rng.randbytes(16)),
        lambda: _SIZE.pack(rng.randrange(101 << 20, 2**31)) + rng.randbytes(32),
        lambda: _SIZE.pack(-rng.randrange(1, 2**31)),
        lambda: frame_of(request_header(3, 12) + b"\xff\xff\xff\xff\x0f"),
    ]
    bad = corrupt_batches()["bad crc"][0]
    corrupt = ProduceRequest(
        acks=1,
        timeout_ms=1000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="memory", partition_data=[ProduceRequest.PartitionProduceData(records=bad)]
            )
        ],
    )
    corrupt_frame = bytes(encode_request(corrupt, 9, PROBE_ID, "x"))
    v99 = frame_of(request_header(18, 99))
    sent = 0
    step = 0
    while sent < count:
        step += 1
        if step % 31:  # 30 closers, then 20 answered frames on one connection
            sent += 1
            yield Probe("closer", rng.choice(closers)(), True)
        else:
            k = min(20, count - sent)
            sent += k
            if rng.random() < 0.5:
                yield Probe(f"v99 x{k}", v99 * k, False, 18, 99, answers=k)
            else:
                yield Probe(f"corrupt produce x{k}", corrupt_frame * k, False, 0, 9, answers=k)


async def test_memory_stays_flat_under_bad_frames(node: Node) -> None:
    """What is measured: VmRSS of the whole test process (node + client + pytest) and the
    number of gc-tracked objects, each after a warm-up of the same mix and a gc.collect().
    RSS is coarse: it catches a per-connection leak of a buffer or a task (20k frames x even
    2 KiB = 40 MiB > 30 MiB) but not one of a few bytes; the object count catches any leak of
    a Python object per frame or per connection.

    Log records would be kept by pytest's capture and counted as growth: the server's close
    warnings are counted and dropped, and INFO lines (a refused produce logs one) are off
    whatever --log-level the run uses."""
    port = port_of(node)
    await create_topic(port, "memory", 1)
    server_log = logging.getLogger("kraft.net.server")
    counter = _CountAndDrop()
    server_log.addFilter(counter)
    logging.disable(logging.INFO)
    try:
        warm = Report()
        await run_probes(port, memory_probes(4000, 1), warm)
        assert not warm.failures, warm.summary()
        gc.collect()
        rss_before, objects_before = rss_bytes(), len(gc.get_objects())
        closes_before = counter.closes
        report = Report()
        await run_probes(port, memory_probes(20_000, 2), report)
        await wait_until_async(
            lambda: not node.servers[0]._connections, "every connection task to end", 5
        )
        gc.collect()
        rss_after, objects_after = rss_bytes(), len(gc.get_objects())
    finally:
        logging.disable(logging.NOTSET)
        server_log.removeFilter(counter)
    assert not report.failures, report.summary()
    assert counter.closes - closes_before == report.closed  # one WARNING per close
    assert not node.servers[0]._connections
    grown = rss_after - rss_before
    assert grown < 30 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 20k bad frames"
    assert objects_after - objects_before < 2000, (objects_before, objects_after)
    partition = node.broker.partitions[("memory", 0)] if node.broker else None
    assert partition is not None and partition.log.log_end_offset == 0
