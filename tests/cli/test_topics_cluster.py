"""`kraft topics` and `kraft cluster` against a live 3-node cluster, checked against what a
real Kafka client (confluent-kafka's AdminClient) sees; and an unreachable bootstrap."""

from __future__ import annotations

import socket
import uuid
from typing import Any

from confluent_kafka.admin import AdminClient, ConfigResource

from kraft.launcher import LocalCluster
from tests.cli.conftest import kraft
from tests.wait import wait_until

EXIT_CLUSTER_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_FOUND = 1, 2, 3, 4


def _admin(cluster: LocalCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap_servers})


def _partitions_seen(admin: AdminClient, topic: str) -> dict[int, Any]:
    metadata = admin.list_topics(topic, timeout=10)
    return dict(metadata.topics[topic].partitions)


def test_unreachable_bootstrap_exits_3_within_the_timeout() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = kraft("topics", "--list", "--bootstrap-server", f"127.0.0.1:{port}", "--timeout", "2")
    assert result.code == EXIT_UNREACHABLE, result
    assert "no broker" in result.stderr and f"127.0.0.1:{port}" in result.stderr, result
    assert result.seconds < 2 + 5, result  # interpreter start-up aside, bounded by --timeout


def test_usage_errors_exit_2(cli: Any) -> None:
    assert kraft("topics").code == EXIT_USAGE  # no action
    result = cli("topics", "--create")
    assert result.code == EXIT_USAGE and "--topic" in result.stderr, result


def test_cluster_describe_table_and_json(cluster: LocalCluster, cli: Any) -> None:
    described = cli("cluster", "--describe", "--json").json()
    assert described["cluster_id"] == cluster.cluster_id
    assert [b["id"] for b in described["brokers"]] == [1, 2, 3]
    assert described["controller"] in (1, 2, 3)
    quorum = described["quorum"]
    assert quorum is not None and quorum["leader"] in (1, 2, 3)
    assert sorted(v["id"] for v in quorum["voters"]) == [1, 2, 3]
    admin = _admin(cluster)  # kept referenced: a dropped client cancels its futures
    admin_view = admin.describe_cluster().result(timeout=10)
    assert admin_view.cluster_id == cluster.cluster_id
    assert sorted(n.id for n in admin_view.nodes) == [1, 2, 3]

    text = cli("cluster")
    assert text.code == 0, text
    assert f"Cluster id: {cluster.cluster_id}" in text.stdout
    lines = text.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("BROKER"))
    assert [int(line.split()[0]) for line in lines[header + 1 : header + 4]] == [1, 2, 3]
    assert "Quorum leader:" in text.stdout


def test_topics_create_list_describe_alter_delete(cluster: LocalCluster, cli: Any) -> None:
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    admin = _admin(cluster)
    created = cli(
        "topics",
        "--create",
        "--topic",
        topic,
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--config",
        "retention.ms=123456",
    )
    assert created.code == 0 and f"Created topic {topic}" in created.stdout, created
    wait_until(lambda: topic in cli("topics", "--list", "--json").json(), f"{topic} listed")
    assert topic in cli("topics", "--list").stdout.split()

    again = cli("topics", "--create", "--topic", topic, "--partitions", "1")
    assert again.code == EXIT_CLUSTER_ERROR and "TOPIC_ALREADY_EXISTS" in again.stderr, again

    (described,) = cli("topics", "--describe", "--topic", topic, "--json").json()
    assert described["partition_count"] == 3 and described["replication_factor"] == 3
    assert described["configs"] == {"retention.ms": "123456"}
    seen = _partitions_seen(admin, topic)
    assert sorted(seen) == [p["partition"] for p in described["partitions"]]
    for p in described["partitions"]:
        real = seen[p["partition"]]
        assert p["leader"] == real.leader
        assert p["replicas"] == list(real.replicas) and len(p["replicas"]) == 3
        assert sorted(p["isr"]) == sorted(real.isrs)

    table = cli("topics", "--describe", "--topic", topic)
    assert table.code == 0, table
    assert f"Topic: {topic}" in table.stdout and "retention.ms=123456" in table.stdout
    rows = [line.split() for line in table.stdout.splitlines()[2:]]
    assert [(int(r[0]), int(r[1])) for r in rows] == [
        (p["partition"], p["leader"]) for p in described["partitions"]
    ]

    altered = cli(
        "topics",
        "--alter",
        "--topic",
        topic,
        "--partitions",
        "5",
        "--config",
        "cleanup.policy=compact",
        "--delete-config",
        "retention.ms",
    )
    assert altered.code == 0, altered
    wait_until(lambda: len(_partitions_seen(admin, topic)) == 5, "5 partitions seen by a client")
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["retention.ms"].is_default
    (after,) = cli("topics", "--describe", "--topic", topic, "--json").json()
    assert after["partition_count"] == 5 and after["configs"] == {"cleanup.policy": "compact"}

    bad = cli("topics", "--alter", "--topic", topic, "--config", "retention.ms=soon")
    assert bad.code == EXIT_CLUSTER_ERROR and "INVALID_CONFIG" in bad.stderr, bad

    deleted = cli("topics", "--delete", "--topic", topic, "--json")
    assert deleted.json() == {"topic": topic, "deleted": True}
    wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, f"{topic} gone")


def test_unknown_topic_is_named_with_exit_4(cli: Any) -> None:
    for args in (("--describe",), ("--delete",), ("--alter", "--partitions", "4")):
        result = cli("topics", *args, "--topic", "no-such-topic")
        assert result.code == EXIT_NOT_FOUND, result
        assert "no-such-topic" in result.stderr and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr


def test_a_bootstrap_that_never_answers_exits_3_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result = kraft("cluster", "--bootstrap-server", f"127.0.0.1:{port}", "--timeout", "1.5")
    assert result.code == EXIT_UNREACHABLE, result
    assert f"127.0.0.1:{port}" in result.stderr and "1.5s" in result.stderr, result
    assert 1.5 <= result.seconds < 1.5 + 5, result


def test_describe_every_topic(cli: Any) -> None:
    names = []
    for _ in range(2):
        names.append(f"all-{uuid.uuid4().hex[:8]}")
        assert cli("topics", "--create", "--topic", names[-1], "--partitions", "2").code == 0
    described = {t["name"]: t for t in cli("topics", "--describe", "--json").json()}
    for name in names:
        assert described[name]["partition_count"] == 2
        assert described[name]["replication_factor"] == 3  # the default, min(3, nodes)
    listed = cli("topics", "--list", "--json").json()
    assert set(names) <= set(listed) and listed == sorted(listed)
