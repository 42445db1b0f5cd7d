"""The server's own life cycle, on the test's event loop: stopping it closes the API, every
listener and live connection (held data included) and leaves no task behind."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from kraft.chaos.toxiproxy import ThreadedToxiproxy, ToxiproxyServer
from tests.chaos.netutil import ours_only
from tests.wait import wait_until_async

pytestmark = ours_only


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_stop_closes_everything_and_leaves_no_task() -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    fds = _open_fds()
    server = ToxiproxyServer(port=0, seed=1)
    await server.start()
    async with aiohttp.ClientSession(server.url) as http:
        created = await http.post(
            "/proxies", json={"name": "p", "upstream": f"127.0.0.1:{echo_port}"}
        )
        assert created.status == 201
        host, _, port = (await created.json())["listen"].rpartition(":")
        timeout = {"type": "timeout", "attributes": {"timeout": 0}}
        assert (await http.post("/proxies/p/toxics", json=timeout)).status == 200
        latency = {"type": "latency", "stream": "upstream", "attributes": {"latency": 50}}
        assert (await http.post("/proxies/p/toxics", json=latency)).status == 200
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"held when the server stops")
    await writer.drain()
    proxy = server.api.proxies["p"]
    await wait_until_async(lambda: proxy.connection_count == 1, "the proxied connection")

    await server.stop()

    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        pass  # aborted with data unread: a reset is a close too
    writer.close()
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("toxiproxy")]
    assert leftover == []
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
    await wait_until_async(lambda: _open_fds() <= fds, f"the server's sockets closed ({fds} fds)")
    echo.close()
    await echo.wait_closed()


def test_threaded_server_reports_a_busy_address() -> None:
    with ThreadedToxiproxy() as first:
        second = ThreadedToxiproxy(port=first.server.port)
        with pytest.raises(OSError):
            second.start()
