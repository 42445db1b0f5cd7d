"""A small asyncio Kafka client connection: the node's own outbound requests (readiness checks,
broker-to-controller RPCs, replica fetchers).

One connection, requests pipelined, responses matched to requests by correlation id; over TLS
when given an `ssl` context (the host dialled is the name its certificate is checked against,
when the context checks host names).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl as _ssl
from typing import Any

from kraft.net.protocol import (
    API_KEYS,
    ApiVersionsRequest,
    ApiVersionsResponse,
    FrameAssembler,
    FrameTooLargeError,
    Message,
    ProtocolError,
    decode_response,
    encode_request,
    peek_correlation_id,
)

logger = logging.getLogger(__name__)


class ConnectionClosed(ConnectionError):
    pass


class KafkaConnection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "kraft",
        max_response_bytes: int = 256 * 1024 * 1024,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.client_id = client_id
        self.max_response_bytes = max_response_bytes
        self._transport: asyncio.Transport | None = None
        self._protocol: _ResponseReader | None = None
        self._pending: dict[int, tuple[int, int, asyncio.Future[Any]]] = {}
        self._ids = itertools.count(1)
        self.versions: dict[int, tuple[int, int]] = {}

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def connect(self) -> None:
        """Connect and learn the peer's API versions (bound it with `asyncio.timeout`)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(
            lambda: _ResponseReader(self),
            self.host,
            self.port,
            ssl=self.ssl,
            server_hostname=self.host if self.ssl is not None else None,
        )
        self._transport, self._protocol = transport, protocol
        response = await self.send(ApiVersionsRequest(), 0)
        assert isinstance(response, ApiVersionsResponse)
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}

    def version_for(self, api_key: int) -> int:
        """The highest version both sides support."""
        ours = API_KEYS[api_key]
        lo, hi = self.versions.get(api_key, (ours.min_version, ours.max_version))
        version = min(hi, ours.max_version)
        if version < max(lo, ours.min_version):
            raise ProtocolError(f"no common version for api key {api_key}")
        return version

    async def request(self, message: Message) -> Message:
        """Send at the highest common version; bound it with `asyncio.timeout`."""
        spec_key = type(message).API_KEY
        assert spec_key is not None
        return await self.send(message, self.version_for(spec_key))

    async def send(self, message: Message, version: int) -> Message:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionClosed(f"not connected to {self.host}:{self.port}")
        api_key = type(message).API_KEY
        assert api_key is not None
        correlation_id = next(self._ids) & 0x7FFFFFFF
        frame = encode_request(message, version, correlation_id, self.client_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (api_key, version, future)
        transport.write(frame)
        try:
            result: Message = await future
            return result
        finally:
            self._pending.pop(correlation_id, None)

    def _deliver(self, frame: bytes | bytearray) -> None:
        correlation_id = peek_correlation_id(frame)
        entry = self._pending.get(correlation_id)
        if entry is None:
            logger.warning("response with unknown correlation id %d", correlation_id)
            return
        api_key, version, future = entry
        _, message = decode_response(frame, api_key, version)
        if not future.done():
            future.set_result(message)

    def _fail(self, error: BaseException) -> None:
        """The connection is over: every waiting request gets `error`."""
        for _, _, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    async def close(self) -> None:
        transport, protocol = self._transport, self._protocol
        self._transport = None
        if transport is not None:
            transport.close()
        if protocol is not None:
            await protocol.closed


class _ResponseReader(asyncio.BufferedProtocol):
    """Responses are read straight into the frame assembler's buffers (a large fetch
    response lands in a buffer of its exact size) and handed to their requests' futures."""

    def __init__(self, conn: KafkaConnection) -> None:
        self._conn = conn
        self._frames = FrameAssembler(conn.max_response_bytes)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        conn = self._conn
        try:
            for frame in self._frames.received(nbytes):
                conn._deliver(frame)
        except ProtocolError as e:
            conn._fail(e)
            return
        error = self._frames.error
        if error is not None:
            where = f"{conn.host}:{conn.port}"
            if isinstance(error, FrameTooLargeError):
                conn._fail(ProtocolError(f"response of {error.size} bytes from {where}"))
            else:
                conn._fail(ProtocolError(f"{error} from {where}"))

    def eof_received(self) -> bool:
        return False  # close: connection_lost answers what is still waiting

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self._conn
        detail = f": {exc}" if exc is not None else ""
        conn._fail(ConnectionClosed(f"connection to {conn.host}:{conn.port} closed{detail}"))
        if not self.closed.done():
            self.closed.set_result(None)
