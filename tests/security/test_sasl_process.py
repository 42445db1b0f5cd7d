"""SASL with a real `kraft serve` process: kafka-python, aiokafka and confluent-kafka produce
and consume over SASL_PLAINTEXT with PLAIN (users from the listener's JAAS config) and
SCRAM-SHA-256/512 (users created with confluent's AdminClient through
AlterUserScramCredentials, described back); a wrong password, an unknown user and a mechanism
that is not enabled are refused with the error each client expects, the node unaffected; a
flood of failed logins writes a few log lines, not one each.

Run under the heavy-test lock (tests/conftest.py marks this file `process`).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kraft.launcher import NodeProcess, NodeSpec, free_ports

COUNT = 10
TIMEOUT_S = 20.0
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
USERS = {"alice": "alice-secret", "admin": "admin-secret"}
SCRAM_USERS = {"SCRAM-SHA-256": ("carol", "carol-256"), "SCRAM-SHA-512": ("dave", "dave-512")}


@dataclass
class SaslNode:
    process: NodeProcess
    sasl_port: int
    scram_only_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def scram_only(self) -> str:
        """A listener of its own enabling only SCRAM-SHA-512."""
        return f"127.0.0.1:{self.scram_only_port}"

    def log(self) -> str:
        return Path(self.process.spec.log_path).read_text(errors="replace")


def confluent_sasl(bootstrap: str, mechanism: str, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def create_scram_users(bootstrap: str) -> None:
    """SCRAM users through AlterUserScramCredentials, by an admin that logs in with PLAIN."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(confluent_sasl(bootstrap, "PLAIN", "admin", USERS["admin"]))
    upsertions = [
        UserScramCredentialUpsertion(
            user,
            ScramCredentialInfo(getattr(ScramMechanism, m.replace("-", "_")), 8192),
            password.encode(),
        )
        for m, (user, password) in SCRAM_USERS.items()
    ]
    for future in admin.alter_user_scram_credentials(upsertions).values():
        future.result(TIMEOUT_S)
    futures = admin.describe_user_scram_credentials(["carol", "dave"])
    described = {user: future.result(TIMEOUT_S) for user, future in futures.items()}
    assert {
        u: [(str(i.mechanism), i.iterations) for i in d.scram_credential_infos]
        for u, d in described.items()
    } == {
        "carol": [("ScramMechanism.SCRAM_SHA_256", 8192)],
        "dave": [("ScramMechanism.SCRAM_SHA_512", 8192)],
    }


@pytest.fixture(scope="module")
def sasl_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslNode]:
    root = tmp_path_factory.mktemp("sasl-node")
    kafka, controller, sasl_port, scram_only_port = free_ports(4)
    spec = NodeSpec(1, kafka, controller, 0, str(root / "node"))
    jaas = (
        f'{PLAIN_MODULE} required username="admin" password="admin-secret" '
        + " ".join(f'user_{u}="{p}"' for u, p in USERS.items())
        + ";"
    )
    props = {
        "node.id": "1",
        # kraft's own key: a node given its cluster id formats its empty log dirs itself.
        "cluster.id": "sasl-" + secrets.token_hex(8),
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://127.0.0.1:{kafka},SASL_PLAINTEXT://127.0.0.1:{sasl_port},"
        f"SCRAMONLY://127.0.0.1:{scram_only_port},CONTROLLER://127.0.0.1:{controller}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
        "SCRAMONLY:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "listener.name.scramonly.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "log.dirs": str(root / "node" / "data"),
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": "1",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
    }
    Path(spec.directory).mkdir(parents=True, exist_ok=True)
    Path(spec.config_path).write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    process = NodeProcess(spec)
    process.start()
    try:
        process.wait_ready(30)
        node = SaslNode(process, sasl_port, scram_only_port)
        create_scram_users(node.bootstrap)
        yield node
    finally:
        process.stop(20)


# ----------------------------------------------------------------------- clients


def kafka_python_round_trip(bootstrap: str, topic: str, creds: dict[str, str]) -> list[bytes]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    sasl = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": creds["mechanism"],
        "sasl_plain_username": creds["user"],
        "sasl_plain_password": creds["password"],
    }
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **sasl)
    try:
        for i in range(COUNT):
            producer.send(topic, f"kp-{i}".encode()).get(timeout=TIMEOUT_S)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10000, **sasl)
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


def aiokafka_round_trip(bootstrap: str, topic: str, creds: dict[str, str]) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    sasl = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": creds["mechanism"],
        "sasl_plain_username": creds["user"],
        "sasl_plain_password": creds["password"],
    }

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **sasl)
        await producer.start()
        try:
            for i in range(COUNT):
                await producer.send_and_wait(topic, f"aio-{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **sasl)
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


def confluent_round_trip(bootstrap: str, topic: str, creds: dict[str, str]) -> list[bytes]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    config = confluent_sasl(bootstrap, creds["mechanism"], creds["user"], creds["password"])
    producer = Producer({**config, "acks": "all"})
    errors: list[Any] = []
    for i in range(COUNT):
        producer.produce(topic, f"ck-{i}".encode(), on_delivery=lambda e, m: errors.append(e))
    assert producer.flush(TIMEOUT_S) == 0
    assert errors == [None] * COUNT, errors
    consumer = Consumer({**config, "group.id": f"g-{uuid.uuid4().hex[:6]}"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < COUNT and time.monotonic() < deadline:
            for message in consumer.consume(COUNT - len(values), timeout=1):
                assert message.error() is None, message.error()
                values.append(message.value())
        return values
    finally:
        consumer.close()


ROUND_TRIPS: dict[str, Callable[[str, str, dict[str, str]], list[bytes]]] = {
    "kafka-python": kafka_python_round_trip,
    "aiokafka": aiokafka_round_trip,
    "confluent-kafka": confluent_round_trip,
}
PREFIX = {"kafka-python": "kp", "aiokafka": "aio", "confluent-kafka": "ck"}


def credentials(mechanism: str) -> dict[str, str]:
    user, password = ("alice", USERS["alice"]) if mechanism == "PLAIN" else SCRAM_USERS[mechanism]
    return {"mechanism": mechanism, "user": user, "password": password}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("client", list(ROUND_TRIPS))
def test_clients_produce_and_consume_over_sasl(
    sasl_node: SaslNode, client: str, mechanism: str
) -> None:
    topic = f"sasl-{PREFIX[client]}-{mechanism.lower()}"
    values = ROUND_TRIPS[client](sasl_node.bootstrap, topic, credentials(mechanism))
    assert values == [f"{PREFIX[client]}-{i}".encode() for i in range(COUNT)]


# ---------------------------------------------------------------------- refusals


REFUSALS = {
    "wrong password": {"mechanism": "SCRAM-SHA-256", "user": "carol", "password": "nope"},
    "unknown user": {"mechanism": "PLAIN", "user": "mallory", "password": "alice-secret"},
    "unsupported mechanism": {"mechanism": "PLAIN", "user": "alice", "password": "alice-secret"},
}


def kafka_python_refusal(bootstrap: str, creds: dict[str, str]) -> str:
    """kafka-python 3 keeps retrying its bootstrap and raises a timeout at the end: the
    broker's error is in what it logs about each attempt."""
    import logging

    from kafka import KafkaAdminClient

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logging.getLogger("kafka").addHandler(handler)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=creds["mechanism"],
            sasl_plain_username=creds["user"],
            sasl_plain_password=creds["password"],
            bootstrap_timeout_ms=2000,
        )
        admin.close()
        seen.append("connected")
    except Exception as e:  # noqa: BLE001 - the error the client raises is what is tested
        seen.append(f"{type(e).__name__}: {e}")
    finally:
        logging.getLogger("kafka").removeHandler(handler)
    return " | ".join(seen)


def confluent_refusal(bootstrap: str, creds: dict[str, str]) -> str:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []
    admin = AdminClient(
        {
            **confluent_sasl(bootstrap, creds["mechanism"], creds["user"], creds["password"]),
            "error_cb": lambda e: errors.append(f"{e.name()}: {e.str()}"),
        }
    )
    try:
        admin.list_topics(timeout=3)
    except KafkaException as e:
        errors.append(str(e))
    admin.poll(1)  # serves error_cb: the broker's answer
    return " | ".join(errors) or "connected"


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_reach_each_client_and_leave_the_node_serving(
    sasl_node: SaslNode, case: str
) -> None:
    creds = dict(REFUSALS[case])
    expected_python = {
        "wrong password": "SaslAuthenticationFailedError",
        "unknown user": "SaslAuthenticationFailedError",
        "unsupported mechanism": "UnsupportedSaslMechanismError",
    }[case]
    expected_confluent = {
        "wrong password": "Authentication failed",
        "unknown user": "Authentication failed",
        "unsupported mechanism": "mechanism",
    }[case]
    # The mechanism case asks for PLAIN on the listener that enables only SCRAM-SHA-512.
    bootstrap = sasl_node.scram_only if case == "unsupported mechanism" else sasl_node.bootstrap
    seen = kafka_python_refusal(bootstrap, creds)
    assert expected_python in seen, seen
    seen = confluent_refusal(bootstrap, creds)
    assert expected_confluent in seen, seen
    # Unaffected: a good login still produces and consumes.
    topic = f"after-{case.replace(' ', '-')}"
    values = confluent_round_trip(sasl_node.bootstrap, topic, credentials("PLAIN"))
    assert len(values) == COUNT


def _frame(api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    client = b"flood"
    header = struct.pack(">hhih", api_key, version, correlation, len(client)) + client
    return struct.pack(">i", len(header) + len(body)) + header + body


def _read_frame(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
    return sock.recv(size, socket.MSG_WAITALL)


def test_a_flood_of_failed_logins_writes_few_lines(sasl_node: SaslNode) -> None:
    before = sasl_node.log().count("authentication failed")
    attempts = 300
    for attempt in range(attempts):
        with socket.create_connection(("127.0.0.1", sasl_node.sasl_port), timeout=5) as sock:
            # SaslHandshake v1 (PLAIN), then SaslAuthenticate v1 with a wrong password.
            sock.sendall(_frame(17, 1, 1, struct.pack(">h", 5) + b"PLAIN"))
            assert _read_frame(sock)[4:6] == b"\x00\x00"
            token = b"\0alice\0wrong"
            sock.sendall(_frame(36, 1, 2, struct.pack(">i", len(token)) + token))
            answer = _read_frame(sock)
            assert struct.unpack(">h", answer[4:6])[0] == 58  # SASL_AUTHENTICATION_FAILED
            if attempt == 0:
                # Closed after the answer (once the client has had LINGER_S to close first).
                assert sock.recv(1) == b""
    # At most the fault log's burst (10 a minute, shared with the tests before this one); the
    # rest is summed up in one line when the minute is over.
    lines = sasl_node.log().count("authentication failed") - before
    assert lines <= 10, lines
    # The node still serves a good login.
    values = confluent_round_trip(sasl_node.bootstrap, "after-flood", credentials("PLAIN"))
    assert len(values) == COUNT
