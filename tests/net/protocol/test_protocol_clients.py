"""Real clients against a fake broker built on the codec.

A tiny threaded server answers ApiVersions and Metadata with our encoder and records every
request it decodes. kafka-python, aiokafka and confluent-kafka (librdkafka) then bootstrap
against it: their first requests are byte captures we must read, and our responses must be
good enough for them to finish bootstrapping. The raw captures below were recorded the same
way and pin the exact bytes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kraft.net.protocol import (
    API_KEYS,
    ApiKey,
    ApiVersionsRequest,
    ApiVersionsResponse,
    ErrorCode,
    FrameReader,
    Message,
    MetadataRequest,
    MetadataResponse,
    ProtocolError,
    RequestHeader,
    UnsupportedVersionError,
    decode_request,
    encode_request,
    encode_response,
)

# (client, frame without size prefix), recorded from the clients installed with the project.
CAPTURES = {
    "librdkafka-2.16-ApiVersions-v3": (
        "0012000300000001000772646b61666b610017636f6e666c75656e742d6b61666b612d707974686f6e"
        "16322e31362e312d72646b61666b612d322e31362e3000"
    ),
    "librdkafka-2.16-Metadata-v12-brokers-only": ("0003000c00000002000772646b61666b610001000000"),
    "kafka-python-3.0.12-ApiVersions-v4": (
        "001200040000000100136b61666b612d707974686f6e2d332e302e3132000d6b61666b612d707974686f"
        "6e07332e302e313200"
    ),
    "kafka-python-3.0.12-Metadata-v12": (
        "0003000c0000000200136b61666b612d707974686f6e2d332e302e31320001010000"
    ),
    "aiokafka-0.14-ApiVersions-v0": "0012000000000001001361696f6b61666b612d70726f64756365722d31",
    "aiokafka-0.14-Metadata-v5": (
        "0003000500000002001361696f6b61666b612d70726f64756365722d310000000001"
    ),
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_roundtrip(name: str) -> None:
    frame = bytes.fromhex(CAPTURES[name])
    header, message = decode_request(frame, strict=True)
    again = encode_request(message, header.api_version, header.correlation_id, header.client_id)
    assert bytes(again[4:]) == frame


def test_librdkafka_all_topics_metadata_has_stray_bytes() -> None:
    # librdkafka reserves a 4-byte array count and, for "all topics" in flexible versions,
    # leaves the zero placeholder in place: the count (null) is the first byte and three
    # stray bytes follow the message. Kafka ignores trailing bytes, so must we.
    frame = bytes.fromhex("0003000c00000003000772646b61666b610000000000010000")
    with pytest.raises(ProtocolError, match="3 bytes left"):
        decode_request(frame, strict=True)
    header, message = decode_request(frame)
    assert isinstance(message, MetadataRequest)
    assert message.topics is None
    assert header.correlation_id == 3


# ---------------------------------------------------------------------------------------------
# Live clients


class FakeBroker:
    """Answers ApiVersions and Metadata (no topics) on 127.0.0.1; records decoded requests."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self.requests: list[tuple[RequestHeader, Message]] = []
        self.errors: list[Exception] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self.sock.settimeout(0.2)
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self.sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        reader = FrameReader()
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                reader.feed(data)
                try:
                    for frame in reader.frames():
                        conn.sendall(self._answer(frame))
                except (ProtocolError, OSError) as e:
                    self.errors.append(e)
                    return

    def _answer(self, frame: bytes) -> bytes:
        try:
            header, message = decode_request(frame)
        except UnsupportedVersionError as e:
            assert e.header is not None and e.header.api_key == 18
            refusal = ApiVersionsResponse(
                error_code=ErrorCode.UNSUPPORTED_VERSION,
                api_keys=[
                    ApiVersionsResponse.ApiVersion(
                        api_key=18, min_version=0, max_version=API_KEYS[18].max_version
                    )
                ],
            )
            return bytes(encode_response(refusal, 0, e.header.correlation_id))
        self.requests.append((header, message))
        version = header.api_version
        if isinstance(message, ApiVersionsRequest):
            keys = [
                ApiVersionsResponse.ApiVersion(
                    api_key=info.api_key,
                    min_version=info.min_version,
                    max_version=info.max_version,
                )
                for info in API_KEYS.values()
                # Only what we serve: librdkafka would otherwise go on to telemetry.
                if info.api_key in (ApiKey.API_VERSIONS, ApiKey.METADATA)
            ]
            response: Message = ApiVersionsResponse(api_keys=keys)
        elif isinstance(message, MetadataRequest):
            response = MetadataResponse(
                brokers=[
                    MetadataResponse.MetadataResponseBroker(
                        node_id=1, host=self.host, port=self.port
                    )
                ],
                cluster_id="kraft-test" if version >= 2 else None,
                controller_id=1,
                topics=[],
            )
        else:
            raise ProtocolError(f"fake broker does not serve api key {header.api_key}")
        return bytes(encode_response(response, version, header.correlation_id))


@contextmanager
def fake_broker() -> Iterator[FakeBroker]:
    broker = FakeBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def assert_bootstrapped(broker: FakeBroker, client_id_prefix: str) -> None:
    assert not broker.errors, broker.errors
    kinds = [type(m) for _, m in broker.requests]
    assert ApiVersionsRequest in kinds and MetadataRequest in kinds, kinds
    for header, _ in broker.requests:
        assert header.client_id is not None and header.client_id.startswith(client_id_prefix)


@pytest.mark.timeout(30)
def test_kafka_python_bootstraps() -> None:
    kafka = pytest.importorskip("kafka")
    with fake_broker() as broker:
        admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
        try:
            assert list(admin.list_topics()) == []
        finally:
            admin.close()
    assert_bootstrapped(broker, "kafka-python")


@pytest.mark.timeout(30)
def test_aiokafka_bootstraps() -> None:
    aiokafka = pytest.importorskip("aiokafka")

    async def run(bootstrap: str) -> None:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        await producer.start()
        await producer.stop()

    with fake_broker() as broker:
        asyncio.run(run(broker.bootstrap))
    assert_bootstrapped(broker, "aiokafka")


@pytest.mark.timeout(30)
def test_librdkafka_bootstraps() -> None:
    pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient

    with fake_broker() as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        metadata = admin.list_topics(timeout=10)
        assert metadata.topics == {}
        assert metadata.cluster_id == "kraft-test"
    assert_bootstrapped(broker, "rdkafka")
