"""`kraft groups` against a live 3-node cluster, checked against real consumer groups:
kafka-python (classic protocol) and confluent-kafka with `group.protocol=consumer` (KIP-848).
Offsets reset with --execute are what a real consumer of the group then gets."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from kraft.launcher import LocalCluster, request
from kraft.net.protocol import MetadataRequest, MetadataResponse
from tests.wait import wait_until

PARTITIONS = 3


@pytest.fixture
def topic(cluster: LocalCluster, cli: Any) -> str:
    name = f"grp-{uuid.uuid4().hex[:8]}"
    created = cli(
        "topics",
        "--create",
        "--topic",
        name,
        "--partitions",
        str(PARTITIONS),
        "--replication-factor",
        "3",
    )
    assert created.code == 0, created
    # Every broker lists it before a client joins a group for it: a join whose metadata lacks
    # the topic is assigned nothing until the next rebalance.
    for node in cluster.nodes.values():
        wait_until(
            functools.partial(_lists_topic, node.kafka_port, name),
            f"node {node.node_id}'s Metadata to list {name}",
        )
    return name


def _lists_topic(port: int, name: str) -> bool:
    response = request(
        port,
        MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name=name)],
            allow_auto_topic_creation=False,
        ),
    )
    assert isinstance(response, MetadataResponse)
    return all(t.error_code == 0 and len(t.partitions) == PARTITIONS for t in response.topics)


def _produce(cluster: LocalCluster, topic: str, per_partition: int) -> list[int]:
    """Records with increasing timestamps; the timestamps of partition 0's records."""
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all")
    stamps = []
    try:
        base = int(time.time() * 1000)
        for i in range(per_partition):
            for p in range(PARTITIONS):
                producer.send(
                    topic, value=f"{p}-{i}".encode(), partition=p, timestamp_ms=base + i * 1000
                ).get(timeout=10)
            stamps.append(base + i * 1000)
    finally:
        producer.close()
    return stamps


def _commit(cluster: LocalCluster, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        consumer.assign(list(offsets))
        consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
    finally:
        consumer.close()


def _committed(cluster: LocalCluster, group: str, topic: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close()


def test_list_describe_reset_delete_with_a_real_group(
    cluster: LocalCluster, cli: Any, topic: str
) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    stamps = _produce(cluster, topic, 5)
    _commit(cluster, group, {TopicPartition(topic, p): p + 1 for p in range(PARTITIONS)})

    listed = cli("groups", "--list", "--json").json()
    assert group in [g["group"] for g in listed]
    assert group in cli("groups", "--list").stdout

    described = cli("groups", "--describe", "--group", group, "--json").json()
    assert described["state"] == "Empty" and described["members"] == []
    assert [
        (p["partition"], p["committed_offset"], p["log_end_offset"], p["lag"])
        for p in described["partitions"]
    ] == [(p, p + 1, 5, 4 - p) for p in range(PARTITIONS)]
    table = cli("groups", "--describe", "--group", group)
    assert table.code == 0, table
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith(topic)]
    assert [r[1:5] for r in rows] == [
        [str(p), str(p + 1), "5", str(4 - p)] for p in range(PARTITIONS)
    ]

    dry = cli(
        "groups", "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--json"
    ).json()
    assert not dry["executed"] and {r["new_offset"] for r in dry["partitions"]} == {0}
    assert _committed(cluster, group, topic) == {p: p + 1 for p in range(PARTITIONS)}

    done = cli(
        "groups",
        "--reset-offsets",
        "--group",
        group,
        "--topic",
        f"{topic}:0,2",
        "--to-latest",
        "--execute",
    )
    assert done.code == 0, done
    assert _committed(cluster, group, topic) == {0: 5, 1: 2, 2: 5}

    at = datetime.fromtimestamp(stamps[3] / 1000, UTC).isoformat()
    assert (
        cli(
            "groups",
            "--reset-offsets",
            "--group",
            group,
            "--topic",
            topic,
            "--to-datetime",
            at,
            "--execute",
        ).code
        == 0
    )
    assert _committed(cluster, group, topic) == {p: 3 for p in range(PARTITIONS)}

    # Out of range: clamped into the log, as Kafka's tool does.
    assert (
        cli(
            "groups",
            "--reset-offsets",
            "--group",
            group,
            "--topic",
            f"{topic}:1",
            "--to-offset",
            "99",
            "--execute",
        ).code
        == 0
    )
    assert _committed(cluster, group, topic) == {0: 3, 1: 5, 2: 3}

    # A real consumer of the group resumes where the reset put it.
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=cluster.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    values = []
    try:
        for record in consumer:
            values.append(record.value)
            if len(values) == 4:
                break
    finally:
        consumer.close()
    assert sorted(values) == sorted([b"0-3", b"0-4", b"2-3", b"2-4"])

    deleted = cli("groups", "--delete", "--group", group)
    assert deleted.code == 0, deleted
    assert group not in [g["group"] for g in cli("groups", "--list", "--json").json()]
    gone = cli("groups", "--describe", "--group", group)
    assert gone.code == 4 and group in gone.stderr, gone


@pytest.fixture
def live_member(cluster: LocalCluster, topic: str) -> Iterator[tuple[str, Consumer]]:
    """A KIP-848 consumer (librdkafka) holding every partition of `topic`."""
    group = f"live-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "group.protocol": "consumer",
            "client.id": "cli-test-member",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        wait_until(
            lambda: (consumer.poll(0.1), len(consumer.assignment()))[1] == PARTITIONS,
            "the member to be assigned every partition",
            timeout_s=30,
        )
        yield group, consumer
    finally:
        consumer.close()


def test_describe_a_group_with_a_live_member_and_refuse_to_reset_it(
    cluster: LocalCluster, cli: Any, topic: str, live_member: tuple[str, Consumer]
) -> None:
    group, _ = live_member
    described = cli("groups", "--describe", "--group", group, "--json").json()
    assert described["state"] in ("Stable", "Reconciling", "Assigning")
    (member,) = described["members"]
    assert member["client_id"] == "cli-test-member"
    assert sorted((a["topic"], a["partition"]) for a in member["assignment"]) == [
        (topic, p) for p in range(PARTITIONS)
    ]
    assert {p["member_id"] for p in described["partitions"]} == {member["member_id"]}

    refused = cli(
        "groups",
        "--reset-offsets",
        "--group",
        group,
        "--topic",
        topic,
        "--to-earliest",
        "--execute",
    )
    assert refused.code == 1 and "active members" in refused.stderr, refused


def test_unknown_group_exits_4(cli: Any) -> None:
    for action in ("--describe", "--delete"):
        result = cli("groups", action, "--group", "no-such-group")
        assert result.code == 4 and "no-such-group" in result.stderr, result


def test_describe_a_classic_group_with_a_live_member(
    cluster: LocalCluster, cli: Any, topic: str
) -> None:
    group = f"classic-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "group.protocol": "classic",
            "client.id": "classic-member",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        wait_until(
            lambda: (consumer.poll(0.1), len(consumer.assignment()))[1] == PARTITIONS,
            "the member to be assigned every partition",
            timeout_s=30,
        )
        consumer.commit(
            offsets=[ConfluentPartition(topic, p, 1) for p in range(PARTITIONS)],
            asynchronous=False,
        )
        described = cli("groups", "--describe", "--group", group, "--json").json()
    finally:
        consumer.close()
    assert described["state"] == "Stable" and described["protocol_type"] == "consumer"
    (member,) = described["members"]
    assert member["client_id"] == "classic-member"
    assert sorted((a["topic"], a["partition"]) for a in member["assignment"]) == [
        (topic, p) for p in range(PARTITIONS)
    ]
    committed = {p["partition"]: p["committed_offset"] for p in described["partitions"]}
    assert committed == {p: 1 for p in range(PARTITIONS)}


def test_consume_with_a_group_starts_at_and_commits_its_offsets(
    cluster: LocalCluster, cli: Any, topic: str
) -> None:
    group = f"cg-{uuid.uuid4().hex[:8]}"
    _produce(cluster, topic, 4)
    _commit(cluster, group, {TopicPartition(topic, p): 2 for p in range(PARTITIONS)})
    result = cli(
        "consume",
        "--topic",
        topic,
        "--group",
        group,
        "--max-messages",
        "6",
        "--timeout-ms",
        "10000",
    )
    assert result.code == 0, result
    assert sorted(result.stdout.split()) == sorted(
        f"{p}-{i}" for p in range(PARTITIONS) for i in (2, 3)
    )
    assert _committed(cluster, group, topic) == {p: 4 for p in range(PARTITIONS)}
