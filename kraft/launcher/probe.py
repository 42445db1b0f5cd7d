"""Blocking Kafka requests and polls for readiness checks: plain sockets, no event loop."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import TypeVar

from kraft.net.protocol import (
    API_KEYS,
    ApiVersionsRequest,
    ApiVersionsResponse,
    DescribeQuorumRequest,
    Message,
    ProtocolError,
    decode_response,
    encode_request,
)

T = TypeVar("T")

REQUEST_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.02
METADATA_TOPIC = "__cluster_metadata"
# Errors a readiness poll treats as "not yet": the node is down, starting, or hung up.
TRANSIENT = (OSError, ConnectionError, TimeoutError, EOFError, ProtocolError)


def request(
    port: int, message: Message, timeout: float = REQUEST_TIMEOUT_S, host: str = "127.0.0.1"
) -> Message:
    """One request on a fresh blocking connection, at the highest version both sides know
    (from ApiVersions v0), bounded by `timeout` seconds."""
    api_key = type(message).API_KEY
    assert api_key is not None
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        versions = _exchange(sock, ApiVersionsRequest(), 0, 1, deadline)
        assert isinstance(versions, ApiVersionsResponse)
        if versions.error_code:
            raise ProtocolError(f"ApiVersions error {versions.error_code} from port {port}")
        theirs = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
        ours = API_KEYS[api_key]
        lo, hi = theirs.get(api_key, (ours.min_version, ours.max_version))
        version = min(hi, ours.max_version)
        if version < max(lo, ours.min_version):
            raise ProtocolError(f"no common version of api key {api_key} with port {port}")
        return _exchange(sock, message, version, 2, deadline)


def _exchange(
    sock: socket.socket, message: Message, version: int, correlation_id: int, deadline: float
) -> Message:
    api_key = type(message).API_KEY
    assert api_key is not None
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    sock.sendall(encode_request(message, version, correlation_id, "kraft-launcher"))
    (size,) = struct.unpack(">i", _read_exactly(sock, 4, deadline))
    if not 0 <= size <= 64 << 20:
        raise ProtocolError(f"response of {size} bytes")
    _, response = decode_response(_read_exactly(sock, size, deadline), api_key, version)
    return response


def _read_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    parts = []
    while n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError("connection closed")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def describe_quorum_request() -> DescribeQuorumRequest:
    return DescribeQuorumRequest(
        topics=[
            DescribeQuorumRequest.TopicData(
                topic_name=METADATA_TOPIC,
                partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)],
            )
        ]
    )


def poll_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL_S,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """The first truthy result of `probe`, polled until `timeout` seconds; transient network
    errors count as "not yet". Raises AssertionError on timeout (a test's failure)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except TRANSIENT as e:
            last = e
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.1f} s waiting for {what}: {last!r}\n{extra}"
            )
        time.sleep(interval)
