"""Plain-socket tools for measuring what a proxy does: an echo upstream and deadline reads."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time

import pytest

DEADLINE_S = 10.0


class _Echo(socketserver.BaseRequestHandler):
    server: _EchoTCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        received = bytearray()
        self.server.received.append(received)
        try:
            while data := sock.recv(65536):
                received += data
                sock.sendall(data)
        except OSError:
            pass  # reset by the proxy: what some tests do on purpose


class _EchoTCPServer(socketserver.ThreadingTCPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.received: list[bytearray] = []


class EchoServer:
    """Echoes every connection's bytes back on 127.0.0.1 (a thread per connection), and keeps
    what each connection sent in `received`, in the order they were accepted."""

    def __init__(self) -> None:
        self._server = _EchoTCPServer()
        self.received = self._server.received
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def connect(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int, deadline_s: float = DEADLINE_S) -> bytes:
    """`n` bytes, or AssertionError saying how many came before the deadline or the close."""
    data = b""
    end = time.monotonic() + deadline_s
    while len(data) < n:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(n - len(data))
        except TimeoutError:
            raise AssertionError(f"{len(data)} of {n} bytes within {deadline_s} s") from None
        if not chunk:
            raise AssertionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def round_trip(sock: socket.socket, payload: bytes) -> float:
    """Seconds to send `payload` and read its echo."""
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def nothing_arrives(sock: socket.socket, wait_s: float) -> bool:
    """True when no byte (and no close) arrives within `wait_s`."""
    sock.settimeout(wait_s)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    return False


def closed_how(sock: socket.socket, deadline_s: float = DEADLINE_S) -> str:
    """`eof` or `reset` once the peer closes (data before it is discarded); AssertionError
    when it is still open at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            if not sock.recv(65536):
                return "eof"
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            raise AssertionError(f"still open after {deadline_s} s") from None


# Set when the suite drives a real Toxiproxy (`TOXIPROXY_URL`): kraft's own choices are then
# not checked (where they differ, the test says why).
REAL_TOXIPROXY = bool(os.environ.get("TOXIPROXY_URL"))
ours_only = pytest.mark.skipif(REAL_TOXIPROXY, reason="checks kraft's server, not Toxiproxy")
