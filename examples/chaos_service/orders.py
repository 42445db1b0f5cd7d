"""A small order publisher: each order goes to Kafka with acks=all through an idempotent
producer, and `place` hands back a future the caller can wait on (or report as pending).

What its owners want to know, and `test_orders_under_chaos.py` checks: when the service loses
the network to Kafka, orders placed meanwhile stay pending rather than failing or vanishing,
and once the network is back each of them is written exactly once.
"""

from __future__ import annotations

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata


class OrderPublisher:
    def __init__(self, bootstrap_servers: str, topic: str, outage_budget_s: float = 60.0):
        self.topic = topic
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            # A request that gets no answer is retried (on a new connection) after this ...
            request_timeout_ms=2000,
            # ... until the order has waited this long in all: the outage it rides out.
            delivery_timeout_ms=int(outage_budget_s * 1000),
            reconnect_backoff_max_ms=500,
        )

    def place(self, order_id: str, amount: float) -> FutureRecordMetadata:
        value = f'{{"order": "{order_id}", "amount": {amount}}}'.encode()
        return self.producer.send(self.topic, value, key=order_id.encode())

    def close(self) -> None:
        self.producer.close(timeout=10)
