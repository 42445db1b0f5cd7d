"""The order publisher cut off from Kafka, with `kraft.chaos`: a one-node cluster whose client
link goes through a Toxiproxy proxy (ours in a thread, or `$TOXIPROXY_URL`); `CutClients`
partitions the service from the broker while the broker itself stays up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from orders import OrderPublisher

from kraft.chaos.faults import CutClients
from kraft.chaos.topology import ChaosCluster

TOPIC = "orders"


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ChaosCluster]:
    cluster = ChaosCluster(tmp_path / "kafka", nodes=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()  # heals first, then stops the node and the proxies


def read_all(bootstrap_servers: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values: list[bytes] = []
    deadline = time.monotonic() + 20
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(r.value for r in records)
        # Anything beyond `expected` would be a duplicate: give it a moment to show up.
        values.extend(r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs)
    finally:
        consumer.close()
    return values


def test_orders_placed_while_kafka_is_unreachable_are_written_once_it_is_back(
    chaos: ChaosCluster,
) -> None:
    publisher = OrderPublisher(chaos.bootstrap_servers, TOPIC)
    try:
        publisher.place("o-1", 10.0).get(timeout=20)  # the topic is auto-created
        with chaos.inject(CutClients()):
            pending = [publisher.place(f"o-{n}", float(n)) for n in range(2, 6)]
            # The outage lasts two of the producer's request timeouts (a fault's duration,
            # not a wait for an event): nothing is acknowledged, nothing fails.
            time.sleep(4)
            assert not any(f.is_done for f in pending)
        offsets = [f.get(timeout=30).offset for f in pending]
        assert offsets == [1, 2, 3, 4]
    finally:
        publisher.close()
    values = read_all(chaos.bootstrap_servers, 5)
    assert [v.split(b",")[0] for v in values] == [
        f'{{"order": "o-{n}"'.encode() for n in range(1, 6)
    ]
