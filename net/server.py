"""The Kafka listener: one asyncio read loop per connection, a thin shell around the sans-io
framing (`FrameReader`) and codec.

Requests on a connection are handled one at a time, in arrival order, so responses go back in
request order even when a client pipelines (Kafka mutes a channel the same way). A frame larger
than `socket.request.max.bytes` closes the connection, with a log line, before its body is
read. Malformed input closes only that connection, with a log line naming the peer.

With an `ssl_context` the listener speaks TLS: each accepted socket is upgraded with
`loop.start_tls` (a public API, so a failed handshake surfaces here rather than in asyncio's
debug log), within `TLS_HANDSHAKE_TIMEOUT_S`; the peer's certificate gives the connection's
principal (`User:<subject DN>`, `User:ANONYMOUS` without one), as Kafka's default principal
builder does. Lines about failed handshakes (and TLS spoken to a plaintext listener) go
through a `PeerFaultLog`: a flood of them costs a few lines a minute, not one each.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Callable
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
# A peer that has not finished its TLS handshake by then is dropped (asyncio's default is 60 s:
# a silent or plaintext client would hold a connection that long).
TLS_HANDSHAKE_TIMEOUT_S = 10.0
ANONYMOUS = "User:ANONYMOUS"
# The first bytes of a TLS record carrying a handshake (ClientHello), read as a frame size.
_TLS_HANDSHAKE_PREFIX = 0x1603
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
    # Who the peer is, for an authorizer: from its TLS certificate on an SSL listener, or
    # `User:<name>` once SASL authenticated it.
    principal: str = ANONYMOUS


class PeerFaultLog:
    """Warnings about peers' faults, at most `burst` per `window_s`; the rest are counted and
    reported in one line when the window ends (or at the next fault after it)."""

    def __init__(
        self,
        log: Callable[..., None],
        *,
        burst: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._window_start = clock()
        self._logged = 0
        self.suppressed = 0
        self._last_peer = ""

    def warn(self, prefix: str, peer: str, msg: str, *args: object) -> None:
        now = self._clock()
        if now - self._window_start >= self.window_s:
            self.flush(prefix)
            self._window_start = now
            self._logged = 0
        if self._logged < self.burst:
            self._logged += 1
            self._log("%s" + msg, prefix, *args)
            return
        self.suppressed += 1
        self._last_peer = peer

    def flush(self, prefix: str) -> None:
        """The summary line of what was held back, if anything was."""
        if self.suppressed:
            self._log(
                "%s%d more connections closed for their peers' faults in the last %d s "
                "(not logged one by one; the last from %s)",
                prefix,
                self.suppressed,
                round(self.window_s),
                self._last_peer,
            )
            self.suppressed = 0


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
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout_s: float = TLS_HANDSHAKE_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.listener = listener
        self.max_request_bytes = max_request_bytes
        self.log_prefix = log_prefix
        self.ssl_context = ssl_context
        self.handshake_timeout_s = handshake_timeout_s
        self.faults = PeerFaultLog(logger.warning)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._summary: asyncio.Task[None] | None = None

    async def start(self, serving: bool = True) -> None:
        """Bind the port; with `serving` also listen. Without, the port is known (a broker
        registers it) but connections are refused until `start_serving`, as Kafka opens its
        client listeners only once the broker is unfenced."""
        loop = asyncio.get_running_loop()
        factory: Callable[[], asyncio.BaseProtocol] = (
            (lambda: _ConnectionProtocol(self))
            if self.ssl_context is None
            else (lambda: _TlsAcceptor(self))
        )
        self._server = await loop.create_server(
            factory, self.host, self.port, reuse_address=True, start_serving=False
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self._summary = loop.create_task(self._summarise_faults())
        if serving:
            await self.start_serving()

    async def start_serving(self) -> None:
        """Listen and accept connections on the bound port."""
        assert self._server is not None, "start() binds first"
        await self._server.start_serving()
        logger.info(
            "%slistening for Kafka clients on %s %s:%d%s",
            self.log_prefix,
            self.listener,
            self.host,
            self.port,
            " (TLS)" if self.ssl_context is not None else "",
        )

    def peer_fault(self, peer: str, msg: str, *args: object) -> None:
        """A warning about a connection closed for its peer's fault, rate-limited."""
        self.faults.warn(self.log_prefix, peer, msg, *args)

    async def _summarise_faults(self) -> None:
        while True:
            await asyncio.sleep(self.faults.window_s)
            self.faults.flush(self.log_prefix)

    async def stop(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
            self.faults.flush(self.log_prefix)
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
                    if frame.size >> 16 == _TLS_HANDSHAKE_PREFIX:
                        self.peer_fault(
                            conn.peer,
                            "closing connection from %s: a TLS handshake on %s, a plaintext "
                            "listener",
                            conn.peer,
                            self.listener,
                        )
                        return
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


def _peer_of(transport: asyncio.BaseTransport) -> str:
    peername = transport.get_extra_info("peername")
    return f"{peername[0]}:{peername[1]}" if peername else "?"


def principal_of(transport: asyncio.BaseTransport) -> str:
    """`User:<subject DN>` of the peer's certificate (RFC 2253 order, as Kafka's
    X500Principal.getName gives it), ANONYMOUS without one."""
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return ANONYMOUS
    from cryptography import x509

    return "User:" + x509.load_der_x509_certificate(der).subject.rfc4514_string()


class _TlsAcceptor(asyncio.Protocol):
    """An accepted socket of a TLS listener until its handshake is done: then the connection
    is served by a `_ConnectionProtocol` over the TLS transport."""

    def __init__(self, server: KafkaServer) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Nothing may be read before start_tls takes the transport over (the ClientHello).
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._handshake(transport))
        self._server._connections.add(task)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        server = self._server
        assert server.ssl_context is not None
        peer = _peer_of(transport)
        protocol = _ConnectionProtocol(server)
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport,
                protocol,
                server.ssl_context,
                server_side=True,
                ssl_handshake_timeout=server.handshake_timeout_s,
            )
        except (OSError, TimeoutError, EOFError) as e:
            # ssl.SSLError is an OSError: untrusted or expired certificates, plaintext
            # or garbage instead of a ClientHello, a peer gone mid-handshake.
            reason = getattr(e, "reason", None) or str(e) or type(e).__name__
            server.peer_fault(
                peer, "closing connection from %s: TLS handshake failed: %s", peer, reason
            )
            transport.close()
            return
        finally:
            task = asyncio.current_task()
            if task is not None:
                server._connections.discard(task)
        if tls is None:
            transport.close()
            return
        protocol.connection_made(tls)


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
        conn = Connection(_peer_of(transport), self._server.listener)
        if self._server.ssl_context is not None:
            conn.principal = principal_of(transport)
            if self._reading_paused or self._failed:
                # Data came with the end of the handshake, before this call.
                transport.pause_reading()
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
        # No transport yet: TLS data that came with the end of the handshake, before
        # connection_made (which then pauses reading if it is due).
        transport = self._transport
        if assembler.error is not None and not self._failed:
            # After the frames before it; nothing after it is read.
            self._queue.append(assembler.error)
            self._failed = True
            if transport is not None:
                transport.pause_reading()
        elif self._queued_bytes >= _MAX_QUEUED_BYTES and not self._reading_paused:
            if transport is not None:
                transport.pause_reading()
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
