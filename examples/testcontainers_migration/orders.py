"""A tiny order service's Kafka code, as an application would have it: orders are published as
JSON keyed by customer, and a reader totals them per customer."""

from __future__ import annotations

import json
from collections import defaultdict

from kafka import KafkaConsumer, KafkaProducer

TOPIC = "orders"


def publish_orders(bootstrap_servers: str, orders: list[dict[str, object]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    try:
        for order in orders:
            key = str(order["customer"]).encode()
            producer.send(TOPIC, key=key, value=json.dumps(order).encode()).get(timeout=30)
    finally:
        producer.close()


def totals_by_customer(bootstrap_servers: str, expected: int) -> dict[str, float]:
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap_servers,
        group_id="order-totals",
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
    )
    totals: dict[str, float] = defaultdict(float)
    seen = 0
    try:
        for record in consumer:
            order = json.loads(record.value)
            totals[order["customer"]] += order["amount"]
            seen += 1
            if seen == expected:
                break
    finally:
        consumer.close()
    return dict(totals)
