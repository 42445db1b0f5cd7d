"""The order service's tests, as they were written against testcontainers' KafkaContainer."""

from __future__ import annotations

from kafka import KafkaAdminClient

from .conftest import KafkaContainer
from .orders import TOPIC, publish_orders, totals_by_customer


def test_orders_are_totalled_per_customer(bootstrap_servers: str) -> None:
    publish_orders(
        bootstrap_servers,
        [
            {"customer": "ada", "amount": 10.0},
            {"customer": "bob", "amount": 2.5},
            {"customer": "ada", "amount": 5.0},
        ],
    )
    assert totals_by_customer(bootstrap_servers, expected=3) == {"ada": 15.0, "bob": 2.5}


def test_broker_settings_come_from_the_environment(kafka: KafkaContainer) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.get_bootstrap_server())
    try:
        (described,) = admin.describe_topics([TOPIC])
    finally:
        admin.close()
    assert len(described["partitions"]) == 3  # KAFKA_NUM_PARTITIONS=3, auto-created


def test_the_exposed_port_is_the_bootstrap_port(kafka: KafkaContainer) -> None:
    host = kafka.get_container_host_ip()
    port = kafka.get_exposed_port(kafka.port)
    assert kafka.get_bootstrap_server() == f"{host}:{port}"
