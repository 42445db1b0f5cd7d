"""`kraft.testing.KafkaContainer`: testcontainers-python's KafkaContainer surface on kraft."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from kraft.embedded import ClusterConfigError
from kraft.testing import KafkaContainer, env_to_config

# Marked one by one: the directory's default kind is `process` (tests/conftest.py).
pytestmark = pytest.mark.timeout(120)


@pytest.mark.unit
def test_env_names_map_to_config_keys() -> None:
    assert env_to_config(
        {
            "KAFKA_NUM_PARTITIONS": "3",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
            "KAFKA_LOG_RETENTION_MS": "60000",
            "KAFKA_CONFLUENT__SUPPORT___METRICS": "x",  # __ → _, ___ → -
            "KAFKA_CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS": "500",
            # Set by the adapter, or the JVM's, ZooKeeper's, not Kafka's.
            "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9093",
            "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:9093",
            "KAFKA_BROKER_ID": "1",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
            "KAFKA_ZOOKEEPER_CONNECT": "zk:2181",
            "KAFKA_HEAP_OPTS": "-Xmx1G",
            "KAFKA_JMX_PORT": "9999",
            "CLUSTER_ID": "abc",
            "TZ": "UTC",
        }
    ) == {
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        "log.retention.ms": "60000",
        "confluent_support-metrics": "x",
        "controller.quorum.election.timeout.ms": "500",
    }


@pytest.mark.unit
def test_builder_methods_return_self_and_views_need_start() -> None:
    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0")
    assert kafka.with_kraft() is kafka
    assert kafka.with_env("KAFKA_NUM_PARTITIONS", "2") is kafka
    assert kafka.with_envs(KAFKA_DELETE_TOPIC_ENABLE="true") is kafka
    assert kafka.with_exposed_ports(9093) is kafka and kafka.with_name("k") is kafka
    assert kafka.get_container_host_ip() == "127.0.0.1"
    with pytest.raises(RuntimeError, match="not started"):
        kafka.get_bootstrap_server()
    kafka.stop()  # never started: nothing to do


@pytest.mark.unit
def test_a_refused_env_fails_start_before_any_process() -> None:
    # A key kraft refuses (no authorizer yet): refused before any node starts.
    kafka = KafkaContainer().with_env(
        "KAFKA_AUTHORIZER_CLASS_NAME", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    try:
        with pytest.raises(ClusterConfigError, match=r"authorizer\.class\.name"):
            kafka.start()
    finally:
        kafka.stop()


@pytest.mark.process
def test_start_produce_consume_stop() -> None:
    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0")
        .with_kraft()
        .with_env("KAFKA_NUM_PARTITIONS", "3") as kafka
    ):
        bootstrap = kafka.get_bootstrap_server()
        port = kafka.get_exposed_port(kafka.port)
        assert bootstrap == f"{kafka.get_container_host_ip()}:{port}"
        with pytest.raises(ValueError, match="not exposed"):
            kafka.get_exposed_port(2181)

        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        producer.produce("auto", b"hello")
        assert producer.flush(30) == 0
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        assert len(topics["auto"].partitions) == 3, "KAFKA_NUM_PARTITIONS became num.partitions"

        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "g", "auto.offset.reset": "earliest"}
        )
        try:
            consumer.subscribe(["auto"])
            message = None
            for _ in range(60):
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    break
            assert message is not None and message.value() == b"hello"
        finally:
            consumer.close()
        stderr = kafka.get_logs()[1]
        assert b"---- node 1 log" in stderr
        pid = kafka.cluster.node(1).pid
    assert pid is not None
    with pytest.raises(RuntimeError, match="not started"):
        kafka.get_bootstrap_server()
