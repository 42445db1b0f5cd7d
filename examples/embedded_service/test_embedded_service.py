"""The order service end to end, as its users see it: HTTP in, Kafka through the service's own
embedded broker, the worker's totals out; and nothing left running once the app stops."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from embedded_service import NODE, PROCESSED, TOPIC, TOTALS, create_app

# In-process: the broker runs in the test's own event loop.
pytestmark = pytest.mark.unit

DEADLINE_S = 20.0


async def wait_for_totals(
    client: TestClient[web.Request, web.Application], expected: dict[str, float]
) -> None:
    """Until the worker has processed every order (it notifies on each one)."""
    app = client.app
    assert app is not None
    async with asyncio.timeout(DEADLINE_S), app[PROCESSED]:
        await app[PROCESSED].wait_for(
            lambda: all(app[TOTALS].get(c) == t for c, t in expected.items())
        )
    for customer, total in expected.items():
        response = await client.get(f"/totals/{customer}")
        assert await response.json() == {"customer": customer, "total": total}


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_orders_are_published_and_totalled_through_the_embedded_broker() -> None:
    threads = set(threading.enumerate())
    async with TestClient(TestServer(create_app(), host="127.0.0.1")) as client:
        orders = [("ann", 10.0), ("bob", 2.5), ("ann", 5.0), ("cy", 1.0)]
        for customer, amount in orders:
            response = await client.post(f"/orders/{customer}", json={"amount": amount})
            assert response.status == 201, await response.text()
        bad = await client.post("/orders/ann", json={"amount": "lots"})
        assert bad.status == 400
        await wait_for_totals(client, {"ann": 15.0, "bob": 2.5, "cy": 1.0})

        # The broker is a real one: any Kafka client can read what the service published.
        kafka = await (await client.get("/kafka")).json()
        consumer = AIOKafkaConsumer(
            TOPIC, bootstrap_servers=kafka["bootstrap_servers"], auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            seen: list[bytes] = []
            async with asyncio.timeout(DEADLINE_S):
                while len(seen) < len(orders):
                    batches = await consumer.getmany(timeout_ms=200)
                    seen += [r.key or b"" for rs in batches.values() for r in rs]
        finally:
            await consumer.stop()
        assert sorted(seen) == [b"ann", b"ann", b"bob", b"cy"]
        assert client.app is not None
        port = client.app[NODE].port
    assert port is not None and port_is_free(port)
    left = [
        t
        for t in set(threading.enumerate()) - threads
        if t.is_alive() and not t.name.startswith("asyncio_")
    ]
    assert not left
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


async def test_orders_survive_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "kafka")
    async with TestClient(TestServer(create_app(data_dir), host="127.0.0.1")) as client:
        for amount in (1.0, 2.0):
            response = await client.post("/orders/dee", json={"amount": amount})
            assert response.status == 201
        await wait_for_totals(client, {"dee": 3.0})
    async with TestClient(TestServer(create_app(data_dir), host="127.0.0.1")) as client:
        response = await client.post("/orders/dee", json={"amount": 4.0})
        assert response.status == 201
        # The group's committed offsets came back too: earlier orders are not counted again
        # (a fresh in-memory total only sees the new one).
        await wait_for_totals(client, {"dee": 4.0})
