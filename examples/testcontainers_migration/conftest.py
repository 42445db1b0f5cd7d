"""The suite's Kafka: once written for testcontainers (Docker), now on kraft — the import below
is the only line that changed (see README.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kraft.testing import KafkaContainer


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaContainer]:
    container = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    container.with_env("KAFKA_NUM_PARTITIONS", "3")
    with container as started:
        yield started


@pytest.fixture
def bootstrap_servers(kafka: KafkaContainer) -> str:
    return kafka.get_bootstrap_server()
