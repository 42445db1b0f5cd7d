"""The Kafka listener: one asyncio read loop per connection, a thin shell around the sans-io
framing (`FrameReader`) and codec.

Requests on a connection are handled one at a time, in arrival order, so responses go back in
request order even when a client pipelines (Kafka mutes a channel the same way). A frame larger
than `socket.request.max.bytes` closes the connection, with a log line, before its body is
read. Malformed input closes only that connection, with a log line naming the peer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from kraft.net.protocol import (
    ApiVersionsResponse,
    EncodeError,
    ErrorCode,
    FrameReader,
    FrameTooLargeError,
    Message,
    ProtocolError,
    RequestHeader,
    UnsupportedVersionError,
    decode_request,
    encode_response,
)

logger = logging.getLogger(__name__)

API_VERSIONS_KEY = 18
# How much one read takes from the socket at most; the StreamReader's buffer limit.
_READ_BYTES = 1 << 20


class CloseConnection(Exception):
    """Raised by a handler for a request that cannot be answered at all; the server logs
    the reason and closes the connection."""


@dataclass(slots=True)
class Connection:
    """What a handler may know of the connection a request came on."""

    peer: str
    listener: str
    state: dict[str, Any] = field(default_factory=dict)


class RequestHandler(Protocol):
    async def handle(
        self, header: RequestHeader, request: Message, conn: Connection
    ) -> Message | None:
        """The response, or None for requests that get none (Produce with acks=0)."""

    def api_versions_range(self) -> tuple[int, int]: ...


class KafkaServer:
    def __init__(
        self,
        handler: RequestHandler,
        host: str,
        port: int,
        *,
        listener: str = "PLAINTEXT",
        max_request_bytes: int = 100 * 1024 * 1024,
        log_prefix: str = "",
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.listener = listener
        self.max_request_bytes = max_request_bytes
        self.log_prefix = log_prefix
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=_READ_BYTES, reuse_address=True
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        logger.info("%slistening for Kafka clients on %s:%d", self.log_prefix, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        conn = Connection(peer, self.listener)
        try:
            await self._loop(reader, writer, conn)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the peer went away; nothing to answer
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def _loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        frames = FrameReader(self.max_request_bytes)
        while True:
            try:
                frame = frames.next_frame()
            except FrameTooLargeError as e:
                logger.warning(
                    "%sclosing connection from %s: request of %d bytes exceeds "
                    "socket.request.max.bytes (%d)",
                    self.log_prefix,
                    conn.peer,
                    e.size,
                    e.limit,
                )
                return
            except ProtocolError as e:
                logger.warning("%sclosing connection from %s: %s", self.log_prefix, conn.peer, e)
                return
            if frame is None:
                data = await reader.read(_READ_BYTES)
                if not data:
                    return  # the peer closed (mid-frame or between frames)
                frames.feed(data)
                continue
            response, close = await self._dispatch(frame, conn)
            if response is not None:
                writer.write(response)
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
            if close:
                await writer.drain()
                return

    async def _dispatch(self, frame: bytes, conn: Connection) -> tuple[bytearray | None, bool]:
        """(response frame or None, whether to close the connection)."""
        try:
            header, request = decode_request(frame)
        except UnsupportedVersionError as e:
            bad = e.header
            if bad is not None and bad.api_key == API_VERSIONS_KEY:
                # KIP-511: answer in v0 with our own range so the client can step down.
                lo, hi = self.handler.api_versions_range()
                refusal = ApiVersionsResponse(
                    error_code=ErrorCode.UNSUPPORTED_VERSION,
                    api_keys=[
                        ApiVersionsResponse.ApiVersion(
                            api_key=API_VERSIONS_KEY, min_version=lo, max_version=hi
                        )
                    ],
                )
                return encode_response(refusal, 0, bad.correlation_id), False
            logger.warning("%sclosing connection from %s: %s", self.log_prefix, conn.peer, e)
            return None, True
        except ProtocolError as e:
            logger.warning(
                "%sclosing connection from %s: malformed request: %s", self.log_prefix, conn.peer, e
            )
            return None, True
        try:
            response = await self.handler.handle(header, request, conn)
        except CloseConnection as e:
            logger.warning("%sclosing connection from %s: %s", self.log_prefix, conn.peer, e)
            return None, True
        except Exception:
            # A bug of ours, not the peer's: log it loudly; the connection cannot continue
            # because the client waits for this response.
            logger.exception(
                "%sclosing connection from %s: handler for api key %d v%d failed",
                self.log_prefix,
                conn.peer,
                header.api_key,
                header.api_version,
            )
            return None, True
        if response is None:
            return None, False
        try:
            return encode_response(response, header.api_version, header.correlation_id), False
        except EncodeError:
            logger.exception(
                "%sclosing connection from %s: cannot encode the response to api key %d v%d",
                self.log_prefix,
                conn.peer,
                header.api_key,
                header.api_version,
            )
            return None, True
