"""`kraft chaos toxiproxy` as a process: it prints its bound address, serves the real client,
and stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy

from tests.chaos.netutil import EchoServer, connect, ours_only, round_trip

pytestmark = ours_only
DEADLINE_S = 30


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kraft.cli", "chaos", "toxiproxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def client() -> Iterator[Toxiproxy]:
    # The client keeps its address on a class: restore it for the other tests.
    from toxiproxy.api import APIConsumer

    saved = APIConsumer.host, APIConsumer.port
    yield Toxiproxy()
    APIConsumer.host, APIConsumer.port = saved


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_serves_then_stops_on_a_signal(
    client: Toxiproxy, echo: EchoServer, stop_signal: signal.Signals
) -> None:
    proc = _start("--listen", "127.0.0.1:0")
    try:
        assert proc.stdout is not None
        # The first line is printed once the API listens (readline blocks until then).
        line = proc.stdout.readline()
        assert line.startswith("toxiproxy API listening on 127.0.0.1:"), line
        host, _, port = line.split()[-1].rpartition(":")
        client.update_api_consumer(host, int(port))
        proxy = client.create(upstream=echo.address, name="cli")
        proxy.add_toxic(type="latency", attributes={"latency": 100})
        live = connect(proxy.listen)
        assert round_trip(live, b"through the process") >= 0.1
        proc.send_signal(stop_signal)
        assert proc.wait(DEADLINE_S) == 0
        assert live.recv(1) == b""  # the live connection was closed, not left hanging
        live.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


def test_bad_listen_is_a_usage_error() -> None:
    proc = _start("--listen", "nonsense")
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 2, err
    assert "HOST:PORT" in err


def test_busy_address_exits_1(echo: EchoServer) -> None:
    proc = _start("--listen", echo.address)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 1, err
    assert "address already in use" in err
