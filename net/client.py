"""A small asyncio Kafka client connection: the node's own outbound requests (readiness checks,
broker-to-controller RPCs, replica fetchers).

One connection, requests pipelined, responses matched to requests by correlation id.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from kraft.net.protocol import (
    API_KEYS,
    ApiVersionsRequest,
    ApiVersionsResponse,
    FrameReader,
    FrameTooLargeError,
    Message,
    ProtocolError,
    decode_response,
    encode_request,
    peek_correlation_id,
)

logger = logging.getLogger(__name__)

_READ_BYTES = 1 << 20


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
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.max_response_bytes = max_response_bytes
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, tuple[int, int, asyncio.Future[Any]]] = {}
        self._ids = itertools.count(1)
        self._read_task: asyncio.Task[None] | None = None
        self.versions: dict[int, tuple[int, int]] = {}

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        """Connect and learn the peer's API versions (bound it with `asyncio.timeout`)."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._read_task = asyncio.create_task(self._read_loop())
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
        if self._writer is None:
            raise ConnectionClosed(f"not connected to {self.host}:{self.port}")
        api_key = type(message).API_KEY
        assert api_key is not None
        correlation_id = next(self._ids) & 0x7FFFFFFF
        frame = encode_request(message, version, correlation_id, self.client_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (api_key, version, future)
        self._writer.write(frame)
        try:
            result: Message = await future
            return result
        finally:
            self._pending.pop(correlation_id, None)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        error: BaseException = ConnectionClosed(f"connection to {self.host}:{self.port} closed")
        try:
            frames = FrameReader(self.max_response_bytes)
            while True:
                try:
                    frame = frames.next_frame()
                except FrameTooLargeError as e:
                    raise ProtocolError(
                        f"response of {e.size} bytes from {self.host}:{self.port}"
                    ) from e
                if frame is None:
                    data = await self._reader.read(_READ_BYTES)
                    if not data:
                        raise ConnectionClosed("end of stream")
                    frames.feed(data)
                    continue
                correlation_id = peek_correlation_id(frame)
                entry = self._pending.get(correlation_id)
                if entry is None:
                    logger.warning("response with unknown correlation id %d", correlation_id)
                    continue
                api_key, version, future = entry
                _, message = decode_response(frame, api_key, version)
                if not future.done():
                    future.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            error = ConnectionClosed(f"connection to {self.host}:{self.port} closed: {e}")
        except ProtocolError as e:
            error = e
        finally:
            for _, _, future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            if self._writer is not None:
                self._writer.close()
            self._writer = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except ConnectionError:
                pass
            self._writer = None
        if self._read_task is not None:
            self._read_task.cancel()
            try:
                await self._read_task
            except asyncio.CancelledError:
                pass
            self._read_task = None
