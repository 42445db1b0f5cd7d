"""The Kafka listener: one asyncio read loop per connection, a thin shell around the sans-io
framing (`FrameReader`) and codec.

Requests on a connection are handled one at a time, in arrival order, so responses go back in
request order even when a client pipelines (Kafka mutes a channel the same way). A frame larger
than `socket.request.max.bytes` closes the connection, with a log line, before its body is
read. Malformed input closes only that connection, with a log line naming the peer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from kraft.net.protocol import (
    ApiVersionsResponse,
    EncodeError,
    ErrorCode,
    FrameAssembler,
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
# Reading pauses while this much of a connection's requests waits for its turn (pipelining).
_MAX_QUEUED_BYTES = 1 << 20
ANONYMOUS = "User:ANONYMOUS"
# How long a connection closed after a last answer waits for its peer to close first.
LINGER_S = 1.0


class CloseConnection(Exception):
    """Raised by a handler for a request that cannot be answered at all; the server logs
    the reason (unless the handler `logged` it already) and closes the connection, after
    sending `response` when there is one (a refused SASL authentication's answer)."""

    def __init__(self, reason: str, response: Message | None = None, *, logged: bool = False):
        super().__init__(reason)
        self.response = response
        self.logged = logged


@dataclass(slots=True)
class Connection:
    """What a handler may know of the connection a request came on."""

    peer: str
    listener: str
    state: dict[str, Any] = field(default_factory=dict)
    # Who the peer is, for an authorizer: `User:<name>` once SASL authenticated it.
    principal: str = ANONYMOUS


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
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ConnectionProtocol(self), self.host, self.port, reuse_address=True
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

    async def _serve(self, stream: _ConnectionProtocol, conn: Connection) -> None:
        """Answer the connection's requests one at a time, in arrival order."""
        try:
            while True:
                frame = await stream.next_frame()
                if frame is None:
                    return  # the peer closed (mid-frame or between frames)
                if isinstance(frame, FrameTooLargeError):
                    logger.warning(
                        "%sclosing connection from %s: request of %d bytes exceeds "
                        "socket.request.max.bytes (%d)",
                        self.log_prefix,
                        conn.peer,
                        frame.size,
                        frame.limit,
                    )
                    return
                if isinstance(frame, ProtocolError):
                    logger.warning(
                        "%sclosing connection from %s: %s", self.log_prefix, conn.peer, frame
                    )
                    return
                response, close = await self._dispatch(frame, conn)
                if response is not None:
                    await stream.write(response)
                if close:
                    if response is not None:
                        await stream.linger()
                    return
        except ConnectionError:
            pass  # the peer went away; nothing to answer
        except asyncio.CancelledError:
            pass
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._connections.discard(task)
            stream.close()

    async def _dispatch(
        self, frame: bytes | bytearray, conn: Connection
    ) -> tuple[bytearray | None, bool]:
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
            if not e.logged:
                logger.warning("%sclosing connection from %s: %s", self.log_prefix, conn.peer, e)
            if e.response is None:
                return None, True
            response = e.response
            try:
                encoded = encode_response(response, header.api_version, header.correlation_id)
            except EncodeError:
                return None, True
            return encoded, True
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


_Item = bytes | bytearray | ProtocolError


class _ConnectionProtocol(asyncio.BufferedProtocol):
    """One client connection: the socket reads straight into the frame assembler's buffers
    (a large request lands in a buffer of its own exact size: one copy from the kernel, no
    growing and trimming of intermediate buffers, which cost the leader of an RF=3 topic
    ~200 page faults per MB produced), and `_serve` takes complete frames in order."""

    def __init__(self, server: KafkaServer) -> None:
        self._server = server
        self._frames = FrameAssembler(server.max_request_bytes)
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_bytes = 0
        self._failed = False
        self._eof = False
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._transport: asyncio.Transport | None = None

    # --------------------------------------------------------------- transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peername = transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        conn = Connection(peer, self._server.listener)
        task = asyncio.get_running_loop().create_task(self._server._serve(self, conn))
        self._server._connections.add(task)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        assembler = self._frames
        frames = assembler.received(nbytes)
        for frame in frames:
            self._queue.append(frame)
            self._queued_bytes += len(frame)
        assert self._transport is not None
        if assembler.error is not None and not self._failed:
            # After the frames before it; nothing after it is read.
            self._queue.append(assembler.error)
            self._failed = True
            self._transport.pause_reading()
        elif self._queued_bytes >= _MAX_QUEUED_BYTES and not self._reading_paused:
            self._transport.pause_reading()
            self._reading_paused = True
        if frames or self._failed:
            self._wake()

    def eof_received(self) -> bool:
        # Keep the transport open for writing: requests already received are answered.
        self._eof = True
        self._wake()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ serve side

    async def next_frame(self) -> _Item | None:
        """The next request frame (or the framing error that ends the stream), None at the
        end of the stream."""
        while not self._queue:
            if self._eof or self._failed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item = self._queue.popleft()
        if not isinstance(item, ProtocolError):
            self._queued_bytes -= len(item)
            if (
                self._reading_paused
                and not self._failed
                and self._queued_bytes < _MAX_QUEUED_BYTES // 2
            ):
                self._reading_paused = False
                if self._transport is not None and not self._transport.is_closing():
                    self._transport.resume_reading()
        return item

    async def write(self, data: bytes | bytearray) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        if self._writing_paused:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    async def linger(self) -> None:
        """After a last answer (a refused SASL login): drop what the peer still sends until it
        closes (clients close on such an answer), within LINGER_S. Closing at once, with its
        requests unread, would reset the connection and the peer could lose the answer (and
        a client that reads the end of the stream before the data loses it too)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        try:
            async with asyncio.timeout(LINGER_S):
                while await self.next_frame() is not None:
                    pass
        except TimeoutError:
            pass

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
