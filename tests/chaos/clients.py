"""Real Kafka clients (kafka-python) for the chaos cluster tests: topic creation, acks=all
produce with the offsets acknowledged, read-back of whole partitions."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from kraft.chaos.topology import ChaosCluster


def create_topic(cc: ChaosCluster, topic: str, partitions: int, rf: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=cc.bootstrap_servers, request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, partitions, rf)])
    finally:
        admin.close()
    deadline = time.monotonic() + 20
    while any(cc.partition_leader(topic, p) is None for p in range(partitions)):
        assert time.monotonic() < deadline, f"{topic} has a partition without a leader"
        time.sleep(0.1)


def producer(cc: ChaosCluster, **config: Any) -> KafkaProducer:
    settings: dict[str, Any] = {
        "bootstrap_servers": cc.bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "request_timeout_ms": 5000,
        "retry_backoff_ms": 100,
        "metadata_max_age_ms": 2000,
        "reconnect_backoff_max_ms": 500,
    }
    return KafkaProducer(**(settings | config))


def produce(
    p: KafkaProducer, topic: str, partition: int, values: Iterable[bytes], timeout: float = 30.0
) -> dict[bytes, int]:
    """Send and wait for each acknowledgement; value → acknowledged offset."""
    futures = {v: p.send(topic, v, partition=partition) for v in values}
    p.flush(timeout)
    return {v: f.get(timeout=1).offset for v, f in futures.items()}


def produce_until_acked(
    p: KafkaProducer, topic: str, partition: int, value: bytes, timeout: float
) -> int:
    """Send `value` until one send is acknowledged (failures retried within `timeout`); its
    offset. Idempotence keeps a retried batch from being written twice."""
    deadline = time.monotonic() + timeout
    while True:
        future = p.send(topic, value, partition=partition)
        try:
            return int(future.get(timeout=max(0.1, deadline - time.monotonic())).offset)
        except KafkaError:
            if time.monotonic() >= deadline:
                raise


def read_partition(cc: ChaosCluster, topic: str, partition: int, until: int) -> dict[int, bytes]:
    """Offset → value of every record below offset `until`, read through the proxies."""
    consumer = KafkaConsumer(
        bootstrap_servers=cc.bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        request_timeout_ms=10000,
    )
    tp = TopicPartition(topic, partition)
    got: dict[int, bytes] = {}
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 30
        while len(got) < until and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.update((r.offset, r.value) for r in records if r.offset < until)
    finally:
        consumer.close()
    return got
