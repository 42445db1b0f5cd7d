"""What each toxic does to the bytes, measured with plain sockets through a proxy to an echo
server. Timings are lower bounds only (a toxic never makes things faster), with deadlines for
what must happen, so a busy machine slows the tests but does not fail them."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.proxy import Proxy

from tests.chaos.netutil import (
    DEADLINE_S,
    REAL_TOXIPROXY,
    EchoServer,
    closed_how,
    connect,
    nothing_arrives,
    ours_only,
    recv_exactly,
    round_trip,
)
from tests.wait import wait_until


@pytest.fixture
def proxy(toxi: Toxiproxy, echo: EchoServer) -> Proxy:
    return toxi.create(upstream=echo.address, name="echo")


@pytest.fixture
def sock(proxy: Proxy) -> Iterator[socket.socket]:
    """A live connection through the proxy, already carrying data before any toxic."""
    with connect(proxy.listen) as s:
        round_trip(s, b"warm")
        yield s


def test_latency_on_a_live_connection_and_new_ones(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="latency", attributes={"latency": 300})
    assert round_trip(sock, b"late") >= 0.3
    with connect(proxy.listen) as fresh:
        assert round_trip(fresh, b"late too") >= 0.3


def test_latency_with_jitter_and_upstream(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="latency", attributes={"latency": 300, "jitter": 100})
    for _ in range(3):
        assert round_trip(sock, b"jittery") >= 0.2
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 200})
    assert round_trip(sock, b"both ways") >= 0.4


def test_latency_pipelines_rather_than_queues(proxy: Proxy, sock: socket.socket) -> None:
    # 30 writes 10 ms apart each leave 300 ms after their own arrival: about 0.6 s in all,
    # where delaying each after the one before would take 9 s.
    proxy.add_toxic(type="latency", attributes={"latency": 300})
    messages = [b"%02d;" % i for i in range(30)]
    start = time.monotonic()
    for message in messages:
        sock.sendall(message)
        time.sleep(0.01)  # pacing, so the proxy reads separate chunks
    assert recv_exactly(sock, len(b"".join(messages))) == b"".join(messages)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 5.0


def test_updated_toxic_changes_live_connections(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="latency", name="lag", attributes={"latency": 0})
    round_trip(sock, b"no lag yet")
    # Not the last toxic of the chain: an update restarts it in place.
    proxy.add_toxic(type="slicer", attributes={"average_size": 0})
    APIConsumer.post("/proxies/echo/toxics/lag", json={"attributes": {"latency": 300}})
    assert round_trip(sock, b"now late") >= 0.3


def test_bandwidth_bounds_the_rate(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="bandwidth", attributes={"rate": 20})  # 20 KB/s
    payload = bytes(range(256)) * 120  # 30 720 bytes: 1.5 s at 20 KB/s
    assert round_trip(sock, payload) >= 1.0


def test_timeout_zero_holds_until_removed(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="timeout", name="partition", attributes={"timeout": 0})
    sock.sendall(b"across the partition")
    assert nothing_arrives(sock, 0.5)
    proxy.destroy_toxic("partition")
    if REAL_TOXIPROXY:
        # Toxiproxy dropped the data and closes the connection on removal.
        assert closed_how(sock) in ("eof", "reset")
        return
    assert recv_exactly(sock, 20) == b"across the partition"
    round_trip(sock, b"healed")


@ours_only
def test_partition_upstream_backpressure_then_heal(proxy: Proxy, sock: socket.socket) -> None:
    """Held data stays bounded: the sender's writes block (TCP pushes back) instead of the proxy
    buffering without limit; on removal everything arrives, in order."""
    proxy.add_toxic(type="timeout", name="partition", stream="upstream", attributes={"timeout": 0})
    block = bytes(range(256)) * 256  # 64 KiB
    sent = bytearray()
    limit = 64 * 1024 * 1024
    sock.setblocking(False)
    deadline = time.monotonic() + DEADLINE_S
    while len(sent) < limit and time.monotonic() < deadline:
        try:
            n = sock.send(block)
        except BlockingIOError:
            # Full: the proxy stopped reading, unless it is only slow to (then it drains).
            _, writable, _ = select.select([], [sock], [], 0.5)
            if not writable:
                break
            continue
        sent += block[:n]
    sock.setblocking(True)
    assert len(sent) < limit, "the proxy took 64 MiB into a partition without pushing back"
    proxy.destroy_toxic("partition")
    assert recv_exactly(sock, len(sent), deadline_s=30) == bytes(sent)


def test_timeout_closes_after_its_timeout(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 300})
    start = time.monotonic()
    sock.sendall(b"never answered")
    assert closed_how(sock) in ("eof", "reset")
    assert time.monotonic() - start >= 0.25


def test_reset_peer_resets(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 0})
    sock.sendall(b"reset me")
    assert closed_how(sock) == "reset"


def test_reset_peer_after_timeout(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 300})
    start = time.monotonic()
    sock.sendall(b"reset me later")
    assert closed_how(sock) == "reset"
    assert time.monotonic() - start >= 0.25


def test_limit_data_closes_after_n_bytes(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="limit_data", attributes={"bytes": 10})
    sock.sendall(b"0123456789abcdefghij")
    assert recv_exactly(sock, 10) == b"0123456789"
    assert closed_how(sock) in ("eof", "reset")


def test_limit_data_upstream(proxy: Proxy, echo: EchoServer) -> None:
    proxy.add_toxic(type="limit_data", stream="upstream", attributes={"bytes": 5})
    with connect(proxy.listen) as s:
        s.sendall(b"hello world")
        # The upstream gets 5 bytes and a close; closing it closes the client too.
        assert closed_how(s) in ("eof", "reset")
    wait_until(lambda: [bytes(r) for r in echo.received] == [b"hello"], "5 bytes upstream")


def test_slicer_splits_writes(proxy: Proxy, sock: socket.socket) -> None:
    # 1000 bytes in pieces of about 100, 20 ms apart: several reads, over at least 0.15 s.
    proxy.add_toxic(
        type="slicer", attributes={"average_size": 100, "size_variation": 20, "delay": 20_000}
    )
    payload = bytes(range(250)) * 4
    start = time.monotonic()
    sock.sendall(payload)
    reads = []
    sock.settimeout(DEADLINE_S)
    while sum(map(len, reads)) < len(payload):
        reads.append(sock.recv(len(payload)))
        assert reads[-1], "closed before the whole payload arrived"
    assert b"".join(reads) == payload
    assert len(reads) >= 2
    assert time.monotonic() - start >= 0.15


def test_slow_close_delays_the_close(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="slow_close", attributes={"delay": 500})
    round_trip(sock, b"data passes")
    start = time.monotonic()
    sock.shutdown(socket.SHUT_WR)
    assert closed_how(sock) == "eof"
    assert time.monotonic() - start >= 0.45


def test_toxicity_zero_never_applies(proxy: Proxy) -> None:
    proxy.add_toxic(type="timeout", toxicity=0.0, attributes={"timeout": 0})
    proxy.add_toxic(type="limit_data", stream="upstream", toxicity=0.0, attributes={"bytes": 1})
    for i in range(5):
        with connect(proxy.listen) as s:
            round_trip(s, b"untouched %d" % i)


def test_toxicity_one_always_applies(proxy: Proxy) -> None:
    proxy.add_toxic(type="limit_data", toxicity=1.0, attributes={"bytes": 3})
    for _ in range(5):
        with connect(proxy.listen) as s:
            s.sendall(b"abcdef")
            assert recv_exactly(s, 3) == b"abc"
            assert closed_how(s) in ("eof", "reset")


def test_disable_closes_live_connections(proxy: Proxy, sock: socket.socket) -> None:
    proxy.disable()
    assert closed_how(sock) in ("eof", "reset")
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen)
    proxy.enable()
    with connect(proxy.listen) as s:
        round_trip(s, b"enabled again")


def test_delete_closes_live_connections(proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    sock.sendall(b"held when deleted")
    proxy.destroy()
    assert closed_how(sock) in ("eof", "reset")


@ours_only
def test_reset_releases_held_data(toxi: Toxiproxy, proxy: Proxy, sock: socket.socket) -> None:
    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
    proxy.add_toxic(type="latency", attributes={"latency": 100})
    sock.sendall(b"held until reset")
    assert nothing_arrives(sock, 0.3)
    toxi.reset()
    assert recv_exactly(sock, 16) == b"held until reset"
    assert round_trip(sock, b"no latency") < DEADLINE_S


def test_upstream_unreachable_closes_the_client(toxi: Toxiproxy) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    dead = toxi.create(upstream=f"127.0.0.1:{free}", name="dead")
    with connect(dead.listen) as s:
        assert closed_how(s) in ("eof", "reset")


def test_removing_a_toxic_mid_transfer_keeps_every_byte_in_order(
    proxy: Proxy, sock: socket.socket
) -> None:
    proxy.add_toxic(type="bandwidth", name="slow", attributes={"rate": 10})
    proxy.add_toxic(type="slicer", attributes={"average_size": 500, "size_variation": 100})
    payload = bytes(i % 251 for i in range(200_000))
    sock.sendall(payload)
    head = recv_exactly(sock, 1000)
    proxy.destroy_toxic("slow")
    assert head + recv_exactly(sock, len(payload) - 1000) == payload
