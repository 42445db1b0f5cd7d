"""The events service against a real kraft cluster: events posted to the API reach the worker,
and an acknowledged event survives the death of its partition's leader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from events_service.settings import Settings
from events_service.worker import Event, EventWorker

import kraft

TIMEOUT_S = 60.0  # generous: the machine running the suite may be busy
Client = TestClient[web.Request, web.Application]


class Processed:
    """What the worker's handler saw, by event id: a stand-in for the service's database."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.deliveries = 0
        self._changed = asyncio.Condition()

    async def handle(self, event: Event) -> None:
        async with self._changed:
            self.events[event["id"]] = event  # idempotent: a redelivered event overwrites
            self.deliveries += 1
            self._changed.notify_all()

    async def wait_for(self, ids: set[str]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: ids <= self.events.keys())

    async def assert_processed(self, ids: set[str]) -> None:
        """Every event in `ids` is handled within TIMEOUT_S."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT_S):
                await self.wait_for(ids)
        missing = ids - self.events.keys()
        assert not missing, f"{len(missing)} of {len(ids)} events not processed: {missing}"


@pytest.fixture
async def processed(settings: Settings) -> AsyncIterator[Processed]:
    """A worker running for the test, recording what it handles."""
    processed = Processed()
    worker = EventWorker(settings, processed.handle)
    task = asyncio.create_task(worker.run())
    yield processed
    worker.stop()
    await task


async def test_published_events_are_processed(
    client: Client,
    processed: Processed,
) -> None:
    published = {}
    for n in range(20):
        response = await client.post("/events", json={"type": "order.created", "data": {"n": n}})
        assert response.status == 201, await response.text()
        published[(await response.json())["id"]] = n
    await processed.assert_processed(set(published))
    assert {i: processed.events[i]["data"]["n"] for i in published} == published


async def test_an_invalid_event_is_refused(client: Client) -> None:
    assert (await client.post("/events", data=b"{not json")).status == 400
    assert (await client.post("/events", json={"data": {}})).status == 400
    assert (await client.post("/events", json=["order.created"])).status == 400


class Publishers:
    """`count` clients posting events until stopped, recording what the API acknowledged."""

    def __init__(self, client: Client, count: int) -> None:
        self.client = client
        self.acked: set[str] = set()
        self.refused = 0  # 503s: not acknowledged, so not promised
        self._stop = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tasks = [asyncio.create_task(self._publish(i)) for i in range(count)]

    async def _publish(self, publisher: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            event = {"type": "payment.made", "data": {"publisher": publisher, "n": n}}
            response = await self.client.post("/events", json=event)
            async with self._changed:
                if response.status == 201:
                    self.acked.add((await response.json())["id"])
                else:
                    assert response.status == 503, await response.text()
                    self.refused += 1
                self._changed.notify_all()

    async def wait_acked(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.acked) >= count)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def partition_leader(admin_url: str, topic: str) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{admin_url}/v1/topics/{topic}") as response:
            assert response.status == 200, await response.text()
            description: dict[str, Any] = await response.json()
    return int(description["partitions"][0]["leader"])


async def new_leader(admin_url: str, topic: str, old: int) -> int:
    """The partition's leader once it is another than `old`, as the node at `admin_url` sees."""
    while True:
        leader = await partition_leader(admin_url, topic)
        if leader not in (old, -1):
            return leader
        await asyncio.sleep(0.05)  # polling the admin API: there is nothing to wait on


# Fast failure detection, so the dead leader is fenced and replaced within seconds.
FAST_FAILOVER = {"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 500}


@pytest.mark.kraft(nodes=3, config=FAST_FAILOVER)
@pytest.mark.kraft_topic(partitions=1, replication_factor=3, config={"min.insync.replicas": 2})
async def test_no_acknowledged_event_is_lost_when_the_leader_dies(
    kraft_cluster: kraft.Cluster,
    kraft_topic: str,
    client: Client,
    processed: Processed,
) -> None:
    publishers = Publishers(client, count=4)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await publishers.wait_acked(50)
        leader = await partition_leader(kraft_cluster.admin_urls[0], kraft_topic)
        before = len(publishers.acked)
        kraft_cluster.node(leader).kill()  # SIGKILL, with requests in flight
        survivor = next(n for n in kraft_cluster.nodes if n.alive)
        async with asyncio.timeout(TIMEOUT_S):
            elected = await new_leader(survivor.admin_url, kraft_topic, leader)
            await publishers.wait_acked(before + 50)  # publishing resumed
    finally:
        await publishers.stop()
    await processed.assert_processed(publishers.acked)
    print(
        f"leader {leader} killed, {elected} took over; {len(publishers.acked)} events "
        f"acknowledged ({publishers.refused} refused), {processed.deliveries} deliveries"
    )
