"""Toxics coming and going on a live connection while data flows both ways: whatever the
churn, every byte arrives once, in order (the hand-over of held data on removal, the
re-routing on addition, restarts on update). Seeded, in-process, on the test's loop."""

from __future__ import annotations

import asyncio
from random import Random
from typing import Any

import pytest

from kraft.chaos.toxiproxy import ToxiproxyServer
from kraft.chaos.toxiproxy.proxy import Proxy
from tests.chaos.netutil import ours_only

pytestmark = ours_only
PAYLOAD_BYTES = 1_500_000


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def _random_toxic(rng: Random, name: str) -> dict[str, Any]:
    stream = rng.choice(["upstream", "downstream"])
    kind, attributes = rng.choice(
        [
            ("latency", {"latency": rng.randint(0, 20), "jitter": rng.randint(0, 5)}),
            ("bandwidth", {"rate": rng.randint(2000, 20000)}),
            ("slicer", {"average_size": rng.randint(50, 4000), "size_variation": 40}),
            ("slicer", {"average_size": 1000, "delay": rng.randint(0, 200)}),
            ("timeout", {"timeout": 0}),  # held until removed
            ("slow_close", {"delay": 10}),
        ]
    )
    toxicity = rng.choice([1.0, 1.0, 0.5])
    return {
        "name": name,
        "type": kind,
        "stream": stream,
        "toxicity": toxicity,
        "attributes": attributes,
    }


async def _churn(proxy: Proxy, rng: Random, stop: asyncio.Event) -> int:
    changes = 0
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.001, 0.03))
        names = list(proxy.toxics)
        action = rng.random()
        if action < 0.45 or not names:
            proxy.add_toxic(_random_toxic(rng, f"t{changes}"))
        elif action < 0.85:
            proxy.remove_toxic(rng.choice(names))
        else:
            toxic = proxy.toxics[rng.choice(names)]
            proxy.update_toxic(toxic.name, {"toxicity": rng.choice([0.0, 1.0])})
        changes += 1
    return changes


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_byte_arrives_in_order_under_toxic_churn(seed: int) -> None:
    rng = Random(seed)
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    server = ToxiproxyServer(port=0, seed=seed)
    await server.start()
    try:
        upstream = f"127.0.0.1:{echo.sockets[0].getsockname()[1]}"
        proxy = Proxy("churn", "127.0.0.1:0", upstream, Random(seed))
        server.api.proxies["churn"] = proxy
        await proxy.start()
        host, _, port = proxy.listen.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        payload = rng.randbytes(PAYLOAD_BYTES)
        stop = asyncio.Event()
        churn = asyncio.create_task(_churn(proxy, rng, stop))

        async def send() -> None:
            sent = 0
            while sent < len(payload):
                size = rng.randint(1, 64 * 1024)
                writer.write(payload[sent : sent + size])
                await writer.drain()
                sent += size
                # Paced over about the churn's half second, so toxics change mid-stream.
                await asyncio.sleep(rng.uniform(0, 0.02))

        received = bytearray()

        async def receive() -> bytes:
            while len(received) < len(payload):
                data = await reader.read(65536)
                assert data, f"closed after {len(received)} of {len(payload)} bytes"
                received.extend(data)
            return bytes(received)

        sender = asyncio.create_task(send())
        receiver = asyncio.create_task(receive())
        await asyncio.sleep(0.5)
        stop.set()
        changes = await churn
        proxy.remove_all_toxics()  # heal: anything held now flows
        try:
            await asyncio.wait_for(asyncio.gather(sender, receiver), 30)
        except TimeoutError:
            raise AssertionError(
                f"{len(received)} of {len(payload)} bytes back 30 s after the heal"
            ) from None
        assert changes > 5
        assert receiver.result() == payload
        writer.close()
    finally:
        await server.stop()
        echo.close()
        await echo.wait_closed()
