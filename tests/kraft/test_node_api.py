"""The node façade against a real single node on this loop, driven by a real client
(aiokafka: it shares the loop, so the node keeps serving while the test awaits it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kraft.controller.config_describe import DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG
from kraft.node import Node
from kraft.node_api import NodeApi
from tests.inprocess import running_node

HOST = "127.0.0.1"
DEADLINE_S = 20.0
T = TypeVar("T")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(
        tmp_path, **{"offsets.topic.num.partitions": "2", "group.initial.rebalance.delay.ms": "0"}
    ) as n:
        yield n


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str) -> T:
    """Poll `probe` until `ok` holds, failing with the last value after a deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = await probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r}")
        await asyncio.sleep(0.02)


async def test_reads_describe_the_node_and_cluster(node: Node) -> None:
    api = NodeApi(node)
    health = api.health()
    assert health.ready and health.reasons == []
    assert health.roles == ["broker", "controller"]
    cluster = api.cluster()
    assert cluster.cluster_id == node.cluster_id
    assert cluster.controller_id == 1
    assert [b.node_id for b in cluster.brokers] == [1]
    assert not cluster.brokers[0].fenced
    assert cluster.brokers[0].endpoints["PLAINTEXT"] == node.bootstrap_servers
    assert api.quorum() is None  # a single node keeps its metadata in a local log
    broker_keys = {e.name: e for e in api.broker_configs()}
    assert broker_keys["node.id"].value == "1"
    assert broker_keys["log.retention.ms"].read_only


async def test_topic_lifecycle_configs_and_partitions(node: Node) -> None:
    api = NodeApi(node)
    created = await api.create_topic("orders", 2, 1, {"retention.ms": "60000"})
    assert created.ok, created
    again = await api.create_topic("orders", 2, 1)
    assert again.error == "TOPIC_ALREADY_EXISTS"
    bad = await api.create_topic("bad", 1, 1, {"no.such.config": "1"})
    assert bad.error == "INVALID_CONFIG" and bad.message

    detail = api.topic("orders")
    assert detail is not None
    assert detail.topic.partitions == 2 and detail.topic.replication_factor == 1
    assert detail.topic.configs == {"retention.ms": "60000"}
    p0 = detail.partitions[0]
    assert (p0.leader, p0.replicas, p0.isr, p0.offline) == (1, [1], [1], False)
    assert p0.hosted_here and p0.high_watermark == 0 and p0.log_end_offset == 0

    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait("orders", f"m{i}".encode(), partition=0)
    finally:
        await producer.stop()
    p0_after = api.partition("orders", 0)
    assert p0_after is not None
    assert (p0_after.log_end_offset, p0_after.high_watermark) == (5, 5)

    configs = {e.name: e for e in api.topic_configs("orders") or []}
    assert (configs["retention.ms"].value, configs["retention.ms"].source) == (
        "60000",
        DYNAMIC_TOPIC_CONFIG,
    )
    assert configs["segment.bytes"].source == DEFAULT_CONFIG
    assert configs["segment.bytes"].synonyms[0].name == "log.segment.bytes"

    changed = await api.alter_topic_configs(
        "orders", {"cleanup.policy": "compact"}, ["retention.ms"]
    )
    assert changed.ok, changed
    overrides = await eventually(
        lambda: _async(lambda: api.topic("orders")),
        lambda d: d is not None and d.topic.configs == {"cleanup.policy": "compact"},
        "topic overrides after the change",
    )
    assert overrides is not None

    grown = await api.create_partitions("orders", 3)
    assert grown.ok, grown
    await eventually(
        lambda: _async(lambda: api.topic("orders")),
        lambda d: d is not None and d.topic.partitions == 3,
        "three partitions",
    )
    shrink = await api.create_partitions("orders", 1)
    assert shrink.error == "INVALID_PARTITIONS"

    elected = await api.elect_leaders([("orders", 0)])
    assert [r.error for r in elected] == ["ELECTION_NOT_NEEDED"]

    deleted = await api.delete_topic("orders")
    assert deleted.ok, deleted
    await eventually(
        lambda: _async(lambda: [t.name for t in api.topics()]),
        lambda names: "orders" not in names,
        "the topic gone",
    )
    assert (await api.delete_topic("orders")).error == "UNKNOWN_TOPIC_OR_PARTITION"


async def test_groups_offsets_lag_reset_and_delete(node: Node) -> None:
    api = NodeApi(node)
    assert (await api.create_topic("events", 1, 1)).ok
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap_servers)
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait("events", f"e{i}".encode())
        consumer = AIOKafkaConsumer(
            "events",
            bootstrap_servers=node.bootstrap_servers,
            group_id="billing",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(DEADLINE_S):
                while len(got) < 4:
                    batch = await consumer.getmany(timeout_ms=200)
                    got += [m.value for msgs in batch.values() for m in msgs if m.value]
            await consumer.commit()
            live = await api.group("billing")
            assert live is not None and live.state == "Stable", live
            assert [m.assignment for m in live.members] == [[("events", 0)]]
        finally:
            await consumer.stop()
        await producer.send_and_wait("events", b"e4")
        await producer.send_and_wait("events", b"e5")
    finally:
        await producer.stop()

    detail = await eventually(
        lambda: api.group("billing"),
        lambda d: d is not None and d.state == "Empty",
        "the group empty after its member left",
    )
    assert detail is not None and detail.group_type == "classic"
    (offset,) = detail.offsets
    assert (offset.topic, offset.partition, offset.committed) == ("events", 0, 4)
    assert (offset.log_end_offset, offset.lag, detail.total_lag) == (6, 2, 2)
    listed = await api.list_groups()
    assert [g.group_id for g in listed.groups] == ["billing"] and listed.unreachable == {}

    reset = await api.alter_group_offsets("billing", {("events", 0): 1})
    assert [r.ok for r in reset] == [True], reset
    after = await api.group("billing")
    assert after is not None and (after.offsets[0].committed, after.total_lag) == (1, 5)

    assert (await api.delete_group("billing")).ok
    assert await api.group("billing") is None
    assert (await api.delete_group("billing")).error == "GROUP_ID_NOT_FOUND"


async def _async(fn: Callable[[], T]) -> T:
    return fn()
