"""TLS with real `kraft serve` processes: kafka-python, aiokafka and confluent-kafka produce
and consume over SSL; mTLS with `ssl.client.auth=required` on a listener of its own; three
nodes replicating over an SSL inter-broker listener (and SSL controller connections) with
acks=all; `kraft serve` refusing a keystore it cannot open, naming the key.

Run under the heavy-test lock (tests/conftest.py marks this file `process`).
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kraft.launcher import LocalCluster, NodeProcess, NodeSpec, free_ports, poll_until

from .certs import PASSWORD, Pki, make_pki, pem_property

COUNT = 20
TIMEOUT_S = 20.0


@dataclass
class TlsNode:
    """One combined node: PLAINTEXT, SSL (JKS keystore) and MTLS (an SSL listener with
    `ssl.client.auth=required`, PKCS12 keystore, per-listener keys)."""

    process: NodeProcess
    pki: Pki
    ssl_port: int
    mtls_port: int

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def log(self) -> str:
        return Path(self.process.spec.log_path).read_text(errors="replace")


def write_node_config(spec: NodeSpec, props: dict[str, str], tail: str = "") -> None:
    Path(spec.directory).mkdir(parents=True, exist_ok=True)
    text = "".join(f"{k}={v}\n" for k, v in props.items()) + tail
    Path(spec.config_path).write_text(text)


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    root = tmp_path_factory.mktemp("tls-node")
    pki = make_pki(root / "pki")
    kafka, controller, ssl_port, mtls_port = free_ports(4)
    spec = NodeSpec(1, kafka, controller, 0, str(root / "node"))
    mtls = {
        **pki.keystore(pki.leaf("broker-mtls"), "PKCS12", "mtls"),
        **pki.truststore("JKS"),
        "ssl.client.auth": "required",
    }
    props = {
        "node.id": "1",
        # kraft's own key: a node given its cluster id formats its empty log dirs itself.
        "cluster.id": "tls-" + secrets.token_hex(8),
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://127.0.0.1:{kafka},SSL://127.0.0.1:{ssl_port},"
        f"MTLS://127.0.0.1:{mtls_port},CONTROLLER://127.0.0.1:{controller}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,"
        "CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "log.dirs": str(root / "node" / "data"),
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": "1",
        **pki.keystore(pki.leaf("broker"), "JKS", "server"),
        **{f"listener.name.mtls.{k}": v for k, v in mtls.items()},
    }
    write_node_config(spec, props)
    process = NodeProcess(spec)
    process.start()
    try:
        process.wait_ready(30)
        yield TlsNode(process, pki, ssl_port, mtls_port)
    finally:
        process.stop(20)


# ----------------------------------------------------------------------- clients


def kafka_python_round_trip(bootstrap: str, topic: str, files: dict[str, str]) -> list[bytes]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    ssl_args: dict[str, Any] = {
        "security_protocol": "SSL",
        "ssl_cafile": files["ca"],
        "ssl_certfile": files.get("cert"),
        "ssl_keyfile": files.get("key"),
        "ssl_check_hostname": True,
    }
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **ssl_args)
    try:
        for i in range(COUNT):
            producer.send(topic, f"kp-{i}".encode()).get(timeout=TIMEOUT_S)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10000, **ssl_args)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) == COUNT:
                break
        return values
    finally:
        consumer.close()


def aiokafka_round_trip(bootstrap: str, topic: str, files: dict[str, str]) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.helpers import create_ssl_context

    async def run() -> list[bytes]:
        ctx = create_ssl_context(
            cafile=files["ca"], certfile=files.get("cert"), keyfile=files.get("key")
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=ctx, acks="all"
        )
        await producer.start()
        try:
            for i in range(COUNT):
                await producer.send_and_wait(topic, f"aio-{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=ctx
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            values: list[bytes] = []
            async with asyncio.timeout(TIMEOUT_S):
                while len(values) < COUNT:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    values += [m.value for m in batch.get(tp, [])]
            return values
        finally:
            await consumer.stop()

    return asyncio.run(run())


def confluent_config(bootstrap: str, files: dict[str, str]) -> dict[str, Any]:
    config = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": files["ca"],
        "ssl.endpoint.identification.algorithm": "https",
    }
    if "cert" in files:
        config |= {"ssl.certificate.location": files["cert"], "ssl.key.location": files["key"]}
    return config


def confluent_round_trip(bootstrap: str, topic: str, files: dict[str, str]) -> list[bytes]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer({**confluent_config(bootstrap, files), "acks": "all"})
    errors: list[Any] = []
    for i in range(COUNT):
        producer.produce(topic, f"ck-{i}".encode(), on_delivery=lambda e, m: errors.append(e))
    assert producer.flush(TIMEOUT_S) == 0
    assert errors == [None] * COUNT, errors
    consumer = Consumer(
        {**confluent_config(bootstrap, files), "group.id": f"g-{uuid.uuid4().hex[:6]}"}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        for message in consumer.consume(COUNT, timeout=TIMEOUT_S):
            assert message.error() is None, message.error()
            values.append(message.value())
        while len(values) < COUNT:
            more = consumer.consume(COUNT - len(values), timeout=TIMEOUT_S)
            if not more:
                break
            values += [m.value() for m in more if m.error() is None]
        return values
    finally:
        consumer.close()


ROUND_TRIPS = {
    "kafka-python": (kafka_python_round_trip, "kp"),
    "aiokafka": (aiokafka_round_trip, "aio"),
    "confluent-kafka": (confluent_round_trip, "ck"),
}


@pytest.mark.parametrize("client", list(ROUND_TRIPS))
def test_clients_produce_and_consume_over_ssl(tls_node: TlsNode, client: str) -> None:
    round_trip, prefix = ROUND_TRIPS[client]
    topic = f"ssl-{prefix}-{uuid.uuid4().hex[:6]}"
    files = tls_node.pki.client_files(None)
    values = round_trip(tls_node.ssl_bootstrap, topic, files)
    assert values == [f"{prefix}-{i}".encode() for i in range(COUNT)]


@pytest.mark.parametrize("client", list(ROUND_TRIPS))
def test_mtls_required_serves_a_client_with_a_certificate(tls_node: TlsNode, client: str) -> None:
    round_trip, prefix = ROUND_TRIPS[client]
    topic = f"mtls-{prefix}-{uuid.uuid4().hex[:6]}"
    files = tls_node.pki.client_files(tls_node.pki.leaf(f"{prefix}-client"))
    values = round_trip(f"127.0.0.1:{tls_node.mtls_port}", topic, files)
    assert values == [f"{prefix}-{i}".encode() for i in range(COUNT)]


def test_mtls_required_refuses_a_client_without_a_certificate(tls_node: TlsNode) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    files = tls_node.pki.client_files(None)
    before = tls_node.log().count("TLS handshake failed")
    admin = AdminClient(confluent_config(f"127.0.0.1:{tls_node.mtls_port}", files))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    # The node logged the refusal, naming the peer, and serves on.
    poll_until(
        lambda: tls_node.log().count("TLS handshake failed") > before,
        5,
        "the refusal in the node's log",
    )
    assert "closing connection from 127.0.0.1:" in tls_node.log()
    ok = AdminClient(confluent_config(tls_node.ssl_bootstrap, files))
    assert ok.list_topics(timeout=TIMEOUT_S).brokers


def test_plaintext_client_on_the_ssl_port_is_refused_and_logged(tls_node: TlsNode) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    before = tls_node.log().count("TLS handshake failed")
    plaintext = AdminClient({"bootstrap.servers": tls_node.ssl_bootstrap})
    with pytest.raises(KafkaException):
        plaintext.list_topics(timeout=3)
    poll_until(
        lambda: tls_node.log().count("TLS handshake failed") > before,
        5,
        "the refusal in the node's log",
    )


# ------------------------------------------------------------- three nodes over SSL


def test_three_nodes_replicate_over_ssl_with_acks_all(tmp_path: Path) -> None:
    """Inter-broker (security.inter.broker.protocol=SSL) and controller connections are TLS;
    clients come in on SSL too. min.insync.replicas=3 with acks=all: every acknowledged
    record was fetched by both followers over TLS."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    pki = make_pki(tmp_path / "pki")
    cluster = LocalCluster(tmp_path / "cluster", nodes=3)
    ssl_ports = dict(zip(cluster.nodes, free_ports(3), strict=True))
    for node_id, node in cluster.nodes.items():
        spec = node.spec
        keystore = pki.keystore(pki.leaf(f"broker-{node_id}"), "PEM-inline", f"b{node_id}")
        inline = "".join(
            pem_property(k, v) for k, v in keystore.items() if k != "ssl.keystore.type"
        )
        cluster.configure(
            node_id,
            {
                "listeners": f"PLAINTEXT://127.0.0.1:{spec.kafka_port},"
                f"SSL://127.0.0.1:{ssl_ports[node_id]},"
                f"CONTROLLER://127.0.0.1:{spec.controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{spec.kafka_port},"
                f"SSL://127.0.0.1:{ssl_ports[node_id]}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:SSL",
                "security.inter.broker.protocol": "SSL",
                "ssl.keystore.type": "PEM",
                "ssl.client.auth": "required",
                **pki.truststore("PKCS12"),
            },
        )
        with open(spec.config_path, "a") as f:
            f.write(inline)
    # Not the launcher's readiness wait: it asks the CONTROLLER listeners in plaintext.
    cluster.start(wait=False)
    try:
        for node in cluster.nodes.values():
            node.wait_ready(60)
        bootstrap = ",".join(f"127.0.0.1:{p}" for p in ssl_ports.values())
        files = pki.client_files(pki.leaf("app"))
        config = confluent_config(bootstrap, files)
        admin = AdminClient(config)
        poll_until(
            lambda: len(admin.list_topics(timeout=5).brokers) == 3,
            TIMEOUT_S,
            "every broker in Metadata over SSL",
        )
        topic = "replicated-over-ssl"
        futures = admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "3"})])
        futures[topic].result(TIMEOUT_S)
        producer = Producer({**config, "acks": "all", "enable.idempotence": True})
        errors: list[Any] = []
        for i in range(COUNT):
            producer.produce(topic, f"r-{i}".encode(), on_delivery=lambda e, m: errors.append(e))
        assert producer.flush(30) == 0
        assert errors == [None] * COUNT, (errors, cluster.logs())
        description = admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions[0]
        assert sorted(description.isrs) == [1, 2, 3]
        consumer = Consumer({**config, "group.id": "ssl-check"})
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            values: list[bytes] = []
            while len(values) < COUNT:
                batch = consumer.consume(COUNT, timeout=TIMEOUT_S)
                assert batch, values
                values += [m.value() for m in batch if m.error() is None]
        finally:
            consumer.close()
        assert values == [f"r-{i}".encode() for i in range(COUNT)]
        logs = cluster.logs(400)
        assert "TLS handshake failed" not in logs, logs
    finally:
        cluster.stop()


# ------------------------------------------------------------------ start-up refusals


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"ssl.keystore.location": "/nonexistent/kafka.keystore.jks"}, "ssl.keystore.location"),
        ({"ssl.keystore.password": "not-" + PASSWORD}, "ssl.keystore.password: wrong password"),
    ],
)
def test_serve_refuses_a_keystore_it_cannot_open(
    tmp_path: Path, change: dict[str, str], says: str
) -> None:
    pki = make_pki(tmp_path / "pki")
    kafka, ssl_port, controller = free_ports(3)
    props = {
        "node.id": "1",
        "listeners": f"PLAINTEXT://127.0.0.1:{kafka},SSL://127.0.0.1:{ssl_port},"
        f"CONTROLLER://127.0.0.1:{controller}",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "log.dirs": str(tmp_path / "data"),
        **pki.keystore(pki.leaf("broker"), "JKS", "server"),
        **change,
    }
    path = tmp_path / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    done = subprocess.run(
        [sys.executable, "-m", "kraft.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert not (tmp_path / "data" / "meta.properties").exists()
