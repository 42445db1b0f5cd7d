"""Prometheus metrics of a real single node on this loop, scraped over HTTP at `/metrics`
(the node serves it on `kraft.admin.listener`), after traffic from a real client (aiokafka:
it shares the loop, so the node keeps serving while the test awaits it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from kraft.metrics import NodeMetrics
from kraft.node import Node
from kraft.node_api import NodeApi
from tests.inprocess import running_node

HOST = "127.0.0.1"
DEADLINE_S = 20.0
RECORDS = 20
VALUE = b"v" * 100
# One record per batch (each send awaited): the 61-byte v2 batch header, then the record:
# length varint (2), attributes (1), timestamp delta (1), offset delta (1), key length -1 (1),
# value length varint (2), the 100-byte value, header count (1) = 109 bytes.
BATCH_BYTES = 61 + 109

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    extra = {
        "offsets.topic.num.partitions": "2",
        "group.initial.rebalance.delay.ms": "0",
        "log.flush.interval.messages": "1",
        "kraft.admin.listener": f"{HOST}:0",
    }
    async with running_node(tmp_path, **extra) as n:
        yield n


async def scrape(node: Node) -> tuple[str, Samples]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{HOST}:{node.admin_port}/metrics") as response,
    ):
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_counters_move_by_the_traffic_and_gauges_follow_the_state(node: Node) -> None:
    api = NodeApi(node)
    assert (await api.create_topic("metered", 1, 1)).ok
    content_type, before = await scrape(node)
    assert content_type.startswith("text/plain; version=0.0.4")
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap_servers, linger_ms=0)
    await producer.start()
    try:
        for _ in range(RECORDS):
            await producer.send_and_wait("metered", VALUE, partition=0)
    finally:
        await producer.stop()
    _, after = await scrape(node)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("kafka_network_requestmetrics_requests_total", request="Produce") == RECORDS
    assert moved("kafka_network_requestmetrics_totaltimems_count", request="Produce") == RECORDS
    assert moved("kafka_server_brokertopicmetrics_messagesin_total", topic="metered") == RECORDS
    assert (
        moved("kafka_server_brokertopicmetrics_bytesin_total", topic="metered")
        == RECORDS * BATCH_BYTES
    )
    # The log holds exactly the bytes counted in.
    assert value(after, "kafka_log_log_size", topic="metered", partition="0") == (
        RECORDS * BATCH_BYTES
    )
    assert value(after, "kafka_log_log_numlogsegments", topic="metered", partition="0") == 1
    # flush.messages=1: every append was flushed and timed.
    assert moved("kafka_log_logflushstats_logflushrateandtimems_count") >= RECORDS
    assert value(after, "kafka_server_replicamanager_partitioncount") >= 1
    assert value(after, "kafka_server_replicamanager_leadercount") == value(
        after, "kafka_server_replicamanager_partitioncount"
    )
    assert value(after, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert value(after, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    assert value(after, "kafka_controller_kafkacontroller_globaltopiccount") == 1
    assert value(after, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
    assert value(after, "kafka_controller_controllerstats_uncleanleaderelections_total") == 0

    # A consumer group reads everything, commits 5: its lag is the backlog behind it.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=node.bootstrap_servers,
        group_id="lagging",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tp = TopicPartition("metered", 0)
        consumer.assign([tp])
        got = 0
        deadline = time.monotonic() + DEADLINE_S
        while got < RECORDS and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            got += sum(len(records) for records in batch.values())
        assert got == RECORDS
        await consumer.commit({tp: 5})
    finally:
        await consumer.stop()
    _, scraped = await scrape(node)
    # Each batch went to the consumer once.
    assert value(scraped, "kafka_server_brokertopicmetrics_bytesout_total", topic="metered") == (
        RECORDS * BATCH_BYTES
    )
    lag = value(
        scraped, "kafka_consumergroup_lag", consumergroup="lagging", topic="metered", partition="0"
    )
    assert lag == RECORDS - 5
    assert value(scraped, "kafka_network_requestmetrics_requests_total", request="OffsetCommit")

    # A deleted topic's series go.
    assert (await api.delete_topic("metered")).ok
    deadline = time.monotonic() + DEADLINE_S
    while "metered" in node.metrics.topics():
        assert time.monotonic() < deadline, "the deleted topic's series stayed"
        await asyncio.sleep(0.02)
    _, gone = await scrape(node)
    assert not any(dict(labels).get("topic") == "metered" for _, labels in gone)


def test_every_node_has_its_own_registry() -> None:
    one, two = NodeMetrics(), NodeMetrics()
    one.produced("t", 3, 100)
    assert (
        one.registry.get_sample_value(
            "kafka_server_brokertopicmetrics_messagesin_total", {"topic": "t"}
        )
        == 3
    )
    assert (
        two.registry.get_sample_value(
            "kafka_server_brokertopicmetrics_messagesin_total", {"topic": "t"}
        )
        is None
    )
