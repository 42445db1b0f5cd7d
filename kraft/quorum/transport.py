"""pysyncobj's Raft transport, replaced: authenticated links, no pickle, bounded frames.

pysyncobj's own `TCPTransport` binds 0.0.0.0, unpickles whatever arrives on its port and, with
its `password` option, needs the `cryptography` package (see the package docstring for why
that is not enough). This transport plugs into pysyncobj's documented extension point (the
`transportClass` argument of `SyncObj`, the `Transport` interface) and runs inside pysyncobj's
tick thread on pysyncobj's poller, so the Raft code above it is unchanged.

Links. Every voter dials every other voter and sends its Raft messages on that outbound link
only; what it receives arrives on the links the others dialled to it. A peer counts as
connected for pysyncobj while the outbound link to it is up. Each side pings a link it has not
written to for `ping_interval`, and closes a link it has not read from for `link_timeout`, so a
silent partition is noticed and an idle link never goes stale.

Handshake (all integers big-endian; `secret` is the cluster secret, HMAC is HMAC-SHA256)::

    dialer   -> acceptor  HELLO      b"KRQ1" | from_id u32 | to_id u32 | nonce_d [16]
    acceptor -> dialer    CHALLENGE  b"KRQ1" | from_id u32 | nonce_a [16] | mac_a [32]
    dialer   -> acceptor  PROOF      mac_d [32]

    T      = HELLO | CHALLENGE[:24]
    mac_a  = HMAC(secret, b"kraft-quorum accept\\0" | T)
    mac_d  = HMAC(secret, b"kraft-quorum dial\\0" | T)
    key    = HMAC(secret, b"kraft-quorum session\\0" | T)

The acceptor answers only a HELLO addressed to itself from a configured voter; the dialer
checks mac_a (it reached the voter it meant, and that voter holds the secret), the acceptor
checks mac_d. Fresh nonces on both sides make every session key new, so nothing recorded from
another connection can be replayed. Then, in both directions, frames::

    length u32 | mac [16] | payload [length]
    mac     = HMAC(key, direction u8 | sequence u64 | payload)[:16]
    payload = kind u8 (0 = Raft message, codec-encoded; 1 = ping) | body

`direction` is 0 from dialer to acceptor and 1 back, `sequence` counts frames per direction
from 0, so a frame cannot be replayed, reordered, dropped or reflected unnoticed. Nothing is
decoded before its MAC checks out, a length over `max_frame_bytes` closes the link before
anything is buffered for it, and a connection that has not authenticated within
`handshake_timeout` is closed. The traffic is authenticated, not encrypted: metadata records
are not secret from whoever can read the controllers' network, but they cannot be forged.

With `tls` (the controller listener's contexts, when its security protocol is SSL) every link
is TLS first: the bytes above (handshake and frames) travel inside it, through an
`ssl.SSLObject` over memory BIOs so the non-blocking poller loop stays as it is. The dialer
checks the voter's certificate (and host name, as the controller listener's client context
says); the acceptor asks for the dialer's as `ssl.client.auth` says.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.node import Node
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.transport import Transport, TransportNotReadyError

from kraft.quorum import codec

logger = logging.getLogger(__name__)

MAGIC = b"KRQ1"
_HELLO = struct.Struct(">4sII16s")
_CHALLENGE_HEAD = struct.Struct(">4sI16s")
_MAC_SIZE = 32
_FRAME_MAC_SIZE = 16
_FRAME_HEAD = struct.Struct(">I16s")
_SEQ = struct.Struct(">BQ")

_KIND_MESSAGE = 0
_KIND_PING = 1
_MAX_INBOUND_PER_PEER = 4
_TO_ACCEPTOR = 0
_TO_DIALER = 1

# The messages pysyncobj's Raft core exchanges when membership changes, command forwarding and
# leadership transfer are off (the quorum turns them off). Anything else from a peer is a
# protocol error: in particular pysyncobj's chunked-entry and full-dump variants of
# append_entries, which it would unpickle. The quorum's own snapshot transfer rides on
# append_entries and next_node_idx under keys of its own (plain values, checked by RaftNode).
ALLOWED_MESSAGES = frozenset({"append_entries", "next_node_idx", "request_vote", "response_vote"})
_FORBIDDEN_KEYS = frozenset({"transmission", "serialized"})

_CONNECTING, _HANDSHAKE, _READY, _CLOSED = range(4)
_READ = POLL_EVENT_TYPE.READ
_WRITE = POLL_EVENT_TYPE.WRITE
_ERROR = POLL_EVENT_TYPE.ERROR


@dataclass(frozen=True)
class TransportSettings:
    ping_interval: float = 0.25
    link_timeout: float = 2.0
    handshake_timeout: float = 2.0
    reconnect_interval: float = 0.1
    max_frame_bytes: int = 8 << 20
    max_write_buffer_bytes: int = 64 << 20
    max_pending_handshakes: int = 16


@dataclass(frozen=True)
class LinkTls:
    """TLS contexts of the Raft links: `server` for links accepted, `client` for links
    dialled."""

    server: ssl.SSLContext
    client: ssl.SSLContext


class ProtocolError(Exception):
    """The peer broke the link protocol (bad handshake, MAC, frame or message)."""


def _mac(secret: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.digest(secret, label + transcript, "sha256")


def _resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    # Blocking for a host name (instant for an IP literal): voters are best given as IPs.
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, address


class _Link:
    """One TCP connection: handshake state, buffers and frame sequence numbers."""

    def __init__(self, sock: socket.socket, dialer: bool, peer: str | None, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.dialer = dialer
        self.peer = peer  # known up front when dialling, after HELLO when accepting
        self.state = _CONNECTING if dialer else _HANDSHAKE
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.opened = now
        self.last_read = now
        self.last_write = now
        self.nonce = os.urandom(16)
        self.hello = b""
        self.transcript = b""
        self.key = b""
        self.send_seq = 0
        self.recv_seq = 0
        self.want_write = False
        # With TLS: wbuf holds plaintext until `tls` encrypts it into raw_out, the bytes
        # the socket sends; rbuf receives what `tls` decrypts.
        self.tls: ssl.SSLObject | None = None
        self.tls_in = ssl.MemoryBIO()
        self.tls_out = ssl.MemoryBIO()
        self.tls_done = False
        self.raw_out = bytearray()

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self.tls = context.wrap_bio(
            self.tls_in,
            self.tls_out,
            server_side=server_hostname is None,
            server_hostname=server_hostname,
        )


class AuthenticatedTransport(Transport):  # pysyncobj is untyped (Any)
    """pysyncobj `Transport` over authenticated TCP links (protocol in the module docstring).

    `self_node` and `other_nodes` are pysyncobj `Node`s whose id is the voter id as a string
    and which carry `host` and `port` attributes: the address this node binds (self) or dials
    (others). `barrier` runs before any message other than append_entries is sent, i.e. before
    acknowledgements and votes: the quorum makes its journal durable there.
    """

    def __init__(
        self,
        syncobj: Any,
        self_node: Node,
        other_nodes: Any,
        *,
        secret: bytes,
        barrier: Callable[[], None] = lambda: None,
        settings: TransportSettings | None = None,
        tag: str = "",
        tls: LinkTls | None = None,
    ) -> None:
        super().__init__(syncobj, self_node, other_nodes)
        self._tls = tls
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self._syncobj = syncobj
        self._poller = syncobj._poller
        self._self_node = self_node
        self._secret = secret
        self._barrier = barrier
        self._settings = settings or TransportSettings()
        self._tag = tag
        self._nodes: dict[str, Node] = {}
        self._outbound: dict[str, _Link] = {}
        # Authenticated links dialled by each peer. A peer normally has one; a second one
        # appears when it reconnects before the old one is noticed dead.
        self._inbound: dict[str, set[_Link]] = {}
        self._pending: dict[int, _Link] = {}  # accepted, not yet authenticated (by fd)
        self._next_dial: dict[str, float] = {}
        self._was_connected: set[str] = set()
        self._links_by_fd: dict[int, _Link] = {}
        self._server: socket.socket | None = None
        self._ready = False
        self.bind_error: OSError | None = None
        self.rejected_connections = 0
        for node in other_nodes:
            self.addNode(node)
        syncobj.addOnTickCallback(self._on_tick)

    # -- pysyncobj's Transport interface -----------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    def tryGetReady(self) -> None:
        if self._ready:
            return
        host, port = self._self_node.host, self._self_node.port
        try:
            family, address = _resolve(host, port)
            server = socket.socket(family, socket.SOCK_STREAM)
            try:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(address)
                server.listen(32)
                server.setblocking(False)
            except OSError:
                server.close()
                raise
        except OSError as e:
            self.bind_error = e
            raise TransportNotReadyError(f"cannot bind {host}:{port}: {e}") from e
        self._server = server
        self._poller.subscribe(server.fileno(), self._on_server_event, _READ | _ERROR)
        self._ready = True
        logger.info("%sraft transport listening on %s", self._tag, server.getsockname()[:2])

    def waitReady(self) -> None:
        if not self._ready:
            raise TransportNotReadyError

    def addNode(self, node: Node) -> None:
        self._nodes[node.id] = node
        self._next_dial[node.id] = 0.0

    def dropNode(self, node: Node) -> None:
        self._nodes.pop(node.id, None)
        self._next_dial.pop(node.id, None)
        links = set(self._inbound.get(node.id, ()))
        if node.id in self._outbound:
            links.add(self._outbound[node.id])
        for link in links:
            self._close(link, "voter removed")

    def send(self, node: Node, message: Any) -> bool:
        link = self._outbound.get(node.id)
        if link is None or link.state != _READY:
            return False
        if message.get("type") != "append_entries":
            # Acknowledgements and votes: nothing a crash could take back may leave the node.
            self._barrier()
        payload = bytes((_KIND_MESSAGE,)) + codec.encode(message)
        if len(payload) > self._settings.max_frame_bytes:
            logger.error(
                "%sdropping a %d-byte %s message to voter %s: over the frame limit",
                self._tag,
                len(payload),
                message.get("type"),
                node.id,
            )
            return False
        self._send_frame(link, payload)
        return link.state == _READY

    def destroy(self) -> None:
        self.setOnMessageReceivedCallback(None)
        self.setOnNodeConnectedCallback(None)
        self.setOnNodeDisconnectedCallback(None)
        for link in list(self._links_by_fd.values()):
            self._close(link, "shutting down")
        if self._server is not None:
            self._poller.unsubscribe(self._server.fileno())
            self._server.close()
            self._server = None
        self._ready = False

    # -- introspection --------------------------------------------------------------------------

    @property
    def listen_address(self) -> tuple[Any, ...] | None:
        return None if self._server is None else self._server.getsockname()

    def last_heard(self, peer: str) -> float | None:
        """Monotonic time of the last byte read from `peer` on any authenticated link."""
        links = set(self._inbound.get(peer, ()))
        if peer in self._outbound:
            links.add(self._outbound[peer])
        times = [link.last_read for link in links if link.state == _READY]
        return max(times) if times else None

    def is_connected(self, peer: str) -> bool:
        link = self._outbound.get(peer)
        return link is not None and link.state == _READY

    # -- timers -------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        if not self._ready:
            return
        now = time.monotonic()
        settings = self._settings
        for link in list(self._links_by_fd.values()):
            if link.state == _READY:
                if now - link.last_read > settings.link_timeout:
                    self._close(link, f"nothing heard for {now - link.last_read:.1f}s")
                elif now - link.last_write >= settings.ping_interval:
                    self._send_frame(link, bytes((_KIND_PING,)))
            elif now - link.opened > settings.handshake_timeout:
                self._close(link, "handshake timed out")
        for peer, node in self._nodes.items():
            if peer not in self._outbound and now >= self._next_dial[peer]:
                self._dial(node, now)

    # -- outbound -----------------------------------------------------------------------------

    def _dial(self, node: Node, now: float) -> None:
        self._next_dial[node.id] = now + self._settings.reconnect_interval
        try:
            family, address = _resolve(node.host, node.port)
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            logger.debug("%scannot dial voter %s: %s", self._tag, node.id, e)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            logger.debug("%scannot dial voter %s: %s", self._tag, node.id, os.strerror(err))
            return
        link = _Link(sock, True, node.id, now)
        if self._tls is not None:
            link.start_tls(self._tls.client, node.host)
        self._outbound[node.id] = link
        self._links_by_fd[link.fd] = link
        self._poller.subscribe(link.fd, self._on_link_event, _READ | _WRITE | _ERROR)
        link.want_write = True

    def _on_connected(self, link: _Link) -> None:
        err = link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._close(link, os.strerror(err))
            return
        link.state = _HANDSHAKE
        assert link.peer is not None
        link.hello = _HELLO.pack(MAGIC, int(self._self_node.id), int(link.peer), link.nonce)
        self._write(link, link.hello)

    # -- inbound ------------------------------------------------------------------------------

    def _on_server_event(self, fd: int, event: int) -> None:
        server = self._server
        if server is None or fd != server.fileno():
            return
        while True:
            try:
                sock, _ = server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                logger.warning("%saccept failed: %s", self._tag, e)
                return
            if len(self._pending) >= self._settings.max_pending_handshakes:
                self.rejected_connections += 1
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(sock, False, None, time.monotonic())
            if self._tls is not None:
                link.start_tls(self._tls.server, None)
            self._pending[link.fd] = link
            self._links_by_fd[link.fd] = link
            self._poller.subscribe(link.fd, self._on_link_event, _READ | _ERROR)

    # -- events -------------------------------------------------------------------------------

    def _on_link_event(self, fd: int, event: int) -> None:
        link = self._links_by_fd.get(fd)
        if link is None or link.state == _CLOSED:
            self._poller.unsubscribe(fd)
            return
        if link.state == _CONNECTING:
            if event & (_WRITE | _ERROR | _READ):
                self._on_connected(link)
            return
        if event & _WRITE:
            self._flush(link)
        if link.state != _CLOSED and event & (_READ | _ERROR):
            self._read(link)

    def _read(self, link: _Link) -> None:
        limit = self._settings.max_frame_bytes + _FRAME_HEAD.size + 2 * _MAC_SIZE
        while True:
            try:
                chunk = link.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._close(link, str(e))
                return
            if not chunk:
                self._close(link, "closed by peer")
                return
            link.last_read = time.monotonic()
            if link.tls is not None:
                try:
                    if not self._decrypt(link, chunk):
                        return
                except ssl.SSLError as e:
                    self._reject(link, f"TLS: {e.reason or e}")
                    return
            else:
                link.rbuf += chunk
            try:
                self._process(link)
            except ProtocolError as e:
                self._reject(link, str(e))
                return
            except codec.CodecError as e:
                self._reject(link, f"undecodable message: {e}")
                return
            if link.state == _CLOSED:
                return
            if len(link.rbuf) > limit:
                self._reject(link, "read buffer over the frame limit")
                return

    def _decrypt(self, link: _Link, chunk: bytes) -> bool:
        """Feeds TLS bytes in, and what they decrypt to into rbuf; False once closed."""
        tls = link.tls
        assert tls is not None
        link.tls_in.write(chunk)
        if not link.tls_done:
            try:
                tls.do_handshake()
                link.tls_done = True
            except ssl.SSLWantReadError:
                pass
        while link.tls_done:
            try:
                data = tls.read(1 << 16)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._close(link, "closed by peer")
                return False
            if not data:
                break
            link.rbuf += data
        # Handshake answers, and the plaintext that waited for the handshake to end.
        self._flush(link)
        return link.state != _CLOSED

    def _process(self, link: _Link) -> None:
        while link.state != _CLOSED:
            if link.state == _HANDSHAKE:
                if not self._process_handshake(link):
                    return
            elif not self._process_frame(link):
                return

    def _process_handshake(self, link: _Link) -> bool:
        if link.dialer:
            size = _CHALLENGE_HEAD.size + _MAC_SIZE
            if len(link.rbuf) < size:
                return False
            head = bytes(link.rbuf[: _CHALLENGE_HEAD.size])
            mac_a = bytes(link.rbuf[_CHALLENGE_HEAD.size : size])
            del link.rbuf[:size]
            magic, from_id, _ = _CHALLENGE_HEAD.unpack(head)
            if magic != MAGIC or str(from_id) != link.peer:
                raise ProtocolError(f"unexpected challenge from voter {from_id}")
            transcript = link.hello + head
            if not hmac.compare_digest(
                mac_a, _mac(self._secret, b"kraft-quorum accept\0", transcript)
            ):
                raise ProtocolError("the acceptor does not hold the cluster secret")
            self._write(link, _mac(self._secret, b"kraft-quorum dial\0", transcript))
            self._established(link, transcript)
            return True
        if not link.hello:
            if len(link.rbuf) < _HELLO.size:
                return False
            hello = bytes(link.rbuf[: _HELLO.size])
            del link.rbuf[: _HELLO.size]
            magic, from_id, to_id, _ = _HELLO.unpack(hello)
            if magic != MAGIC:
                raise ProtocolError("not a kraft quorum handshake")
            if str(to_id) != self._self_node.id or str(from_id) not in self._nodes:
                raise ProtocolError(f"HELLO from {from_id} to {to_id}: not a link of this voter")
            link.hello = hello
            link.peer = str(from_id)
            head = _CHALLENGE_HEAD.pack(MAGIC, int(self._self_node.id), link.nonce)
            link.transcript = hello + head
            self._write(link, head + _mac(self._secret, b"kraft-quorum accept\0", link.transcript))
            return True
        if len(link.rbuf) < _MAC_SIZE:
            return False
        mac_d = bytes(link.rbuf[:_MAC_SIZE])
        del link.rbuf[:_MAC_SIZE]
        if not hmac.compare_digest(
            mac_d, _mac(self._secret, b"kraft-quorum dial\0", link.transcript)
        ):
            raise ProtocolError(f"voter {link.peer} does not hold the cluster secret")
        self._established(link, link.transcript)
        return True

    def _established(self, link: _Link, transcript: bytes) -> None:
        link.key = _mac(self._secret, b"kraft-quorum session\0", transcript)
        link.state = _READY
        assert link.peer is not None
        peer = link.peer
        if link.dialer:
            if peer not in self._was_connected:
                logger.info("%sconnected to voter %s", self._tag, peer)
            self._was_connected.add(peer)
            self._onNodeConnected(self._nodes[peer])
            return
        self._pending.pop(link.fd, None)
        links = self._inbound.setdefault(peer, set())
        if len(links) >= _MAX_INBOUND_PER_PEER:
            self._close(min(links, key=lambda old: old.last_read), "too many links from the peer")
        links.add(link)

    def _process_frame(self, link: _Link) -> bool:
        if len(link.rbuf) < _FRAME_HEAD.size:
            return False
        length, mac = _FRAME_HEAD.unpack_from(link.rbuf)
        if length > self._settings.max_frame_bytes or length == 0:
            raise ProtocolError(f"frame of {length} bytes")
        end = _FRAME_HEAD.size + length
        if len(link.rbuf) < end:
            return False
        payload = bytes(link.rbuf[_FRAME_HEAD.size : end])
        del link.rbuf[:end]
        direction = _TO_DIALER if link.dialer else _TO_ACCEPTOR
        expected = hmac.digest(link.key, _SEQ.pack(direction, link.recv_seq) + payload, "sha256")
        if not hmac.compare_digest(mac, expected[:_FRAME_MAC_SIZE]):
            raise ProtocolError("frame MAC mismatch")
        link.recv_seq += 1
        kind = payload[0]
        if kind == _KIND_PING:
            return True
        if kind != _KIND_MESSAGE or link.dialer:
            raise ProtocolError(f"unexpected frame kind {kind}")
        message = codec.decode(payload[1:])
        if (
            not isinstance(message, dict)
            or message.get("type") not in ALLOWED_MESSAGES
            or not _FORBIDDEN_KEYS.isdisjoint(message)
        ):
            raise ProtocolError(f"message not allowed: {str(message)[:80]}")
        assert link.peer is not None
        self._onMessageReceived(self._nodes[link.peer], message)
        return True

    # -- writing ------------------------------------------------------------------------------

    def _send_frame(self, link: _Link, payload: bytes) -> None:
        direction = _TO_ACCEPTOR if link.dialer else _TO_DIALER
        mac = hmac.digest(link.key, _SEQ.pack(direction, link.send_seq) + payload, "sha256")
        link.send_seq += 1
        self._write(link, _FRAME_HEAD.pack(len(payload), mac[:_FRAME_MAC_SIZE]) + payload)

    def _write(self, link: _Link, data: bytes) -> None:
        link.wbuf += data
        if len(link.wbuf) + len(link.raw_out) > self._settings.max_write_buffer_bytes:
            self._close(link, "write buffer full (peer not reading)")
            return
        self._flush(link)

    def _flush(self, link: _Link) -> None:
        if link.state == _CLOSED:
            return
        out = link.wbuf
        if link.tls is not None:
            out = link.raw_out
            try:
                if not link.tls_done:
                    # Starts the dialer's handshake (its ClientHello) on the first flush.
                    with contextlib.suppress(ssl.SSLWantReadError):
                        link.tls.do_handshake()
                        link.tls_done = True
                if link.tls_done and link.wbuf:
                    written = link.tls.write(link.wbuf)
                    del link.wbuf[:written]
            except ssl.SSLError as e:
                self._reject(link, f"TLS: {e.reason or e}")
                return
            out += link.tls_out.read()
        while out:
            try:
                sent = link.sock.send(out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._close(link, str(e))
                return
            del out[:sent]
            link.last_write = time.monotonic()
        want_write = bool(out)
        if want_write != link.want_write:
            link.want_write = want_write
            mask = _READ | _ERROR | (_WRITE if want_write else 0)
            self._poller.subscribe(link.fd, self._on_link_event, mask)

    # -- closing ------------------------------------------------------------------------------

    def _reject(self, link: _Link, reason: str) -> None:
        if link.state != _READY:
            self.rejected_connections += 1
        logger.warning("%sclosing raft link %s: %s", self._tag, self._describe(link), reason)
        self._close(link, reason, quiet=True)

    def _close(self, link: _Link, reason: str, quiet: bool = False) -> None:
        if link.state == _CLOSED:
            return
        was_ready = link.state == _READY
        link.state = _CLOSED
        self._poller.unsubscribe(link.fd)
        self._links_by_fd.pop(link.fd, None)
        self._pending.pop(link.fd, None)
        link.sock.close()
        peer = link.peer
        if peer is None:
            return
        if link.dialer:
            if self._outbound.get(peer) is link:
                del self._outbound[peer]
            if was_ready:
                if not quiet:
                    logger.info("%slost link to voter %s: %s", self._tag, peer, reason)
                self._was_connected.discard(peer)
                node = self._nodes.get(peer)
                if node is not None:
                    self._onNodeDisconnected(node)
        else:
            self._inbound.get(peer, set()).discard(link)

    def _describe(self, link: _Link) -> str:
        direction = "to" if link.dialer else "from"
        try:
            address = link.sock.getpeername()
        except OSError:
            address = "?"
        return f"{direction} voter {link.peer or '?'} ({address})"
