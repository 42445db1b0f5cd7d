"""`kraft produce` and `kraft consume` against a live 3-node cluster, each checked against a
real Kafka client (kafka-python): what the CLI produced a client reads, with the partitions
Kafka's default partitioner picks, and what a client produced the CLI prints."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from kraft.launcher import LocalCluster
from tests.cli.conftest import kraft

PARTITIONS = 3


def _topic(cli: Any) -> str:
    topic = f"rec-{uuid.uuid4().hex[:8]}"
    result = cli(
        "topics",
        "--create",
        "--topic",
        topic,
        "--partitions",
        str(PARTITIONS),
        "--replication-factor",
        "3",
    )
    assert result.code == 0, result
    return topic


def _read_all(cluster: LocalCluster, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        records = []
        for record in consumer:
            records.append(record)
            if len(records) == count:
                break
        return records
    finally:
        consumer.close()


def test_produce_with_keys_and_headers_is_read_by_a_real_client(
    cluster: LocalCluster, cli: Any
) -> None:
    topic = _topic(cli)
    lines = [f"key-{i}:value {i}" for i in range(20)]
    result = cli(
        "produce",
        "--topic",
        topic,
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=:",
        "--header",
        "source=cli",
        "--acks",
        "all",
        "--json",
        stdin="\n".join(lines) + "\n",
    )
    assert result.json()["records"] == 20, result
    records = _read_all(cluster, topic, 20)
    assert sorted((r.key, r.value) for r in records) == sorted(
        (f"key-{i}".encode(), f"value {i}".encode()) for i in range(20)
    )
    for r in records:
        assert r.headers == [("source", b"cli")]
        # The same partition as Kafka's default partitioner (murmur2 of the key).
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % PARTITIONS
    per_partition: dict[int, list[int]] = {}
    for r in records:
        per_partition.setdefault(r.partition, []).append(r.offset)
    assert all(offsets == list(range(len(offsets))) for offsets in per_partition.values())


def test_produce_unkeyed_with_acks_1_and_0(cluster: LocalCluster, cli: Any) -> None:
    topic = _topic(cli)
    assert cli("produce", "--topic", topic, "--acks", "1", stdin="a\nb\nc\n").code == 0
    assert (
        cli("produce", "--topic", topic, "--acks", "0", "--partition", "2", stdin="d\n").code == 0
    )
    records = _read_all(cluster, topic, 4)
    assert sorted(r.value for r in records) == [b"a", b"b", b"c", b"d"]
    assert [r.partition for r in records if r.value == b"d"] == [2]
    assert all(r.key is None for r in records)


def test_consume_what_a_real_client_produced(cluster: LocalCluster, cli: Any) -> None:
    topic = _topic(cli)
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all")
    sent = []
    try:
        for i in range(12):
            future = producer.send(
                topic,
                key=f"k{i}".encode(),
                value=f"v{i}".encode(),
                headers=[("n", str(i).encode())],
                partition=i % PARTITIONS,
            )
            sent.append(future.get(timeout=10))
    finally:
        producer.close()

    result = cli(
        "consume",
        "--topic",
        topic,
        "--from-beginning",
        "--max-messages",
        "12",
        "--timeout-ms",
        "10000",
        "--json",
    )
    assert result.code == 0, result
    got = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(got) == 12
    by_value = {g["value"]: g for g in got}
    for i, meta in enumerate(sent):
        g = by_value[f"v{i}"]
        assert (g["topic"], g["partition"], g["offset"]) == (topic, meta.partition, meta.offset)
        assert g["key"] == f"k{i}" and g["headers"] == {"n": str(i)}
        assert g["timestamp"] == meta.timestamp

    formatted = cli(
        "consume",
        "--topic",
        topic,
        "--partition",
        "1",
        "--offset",
        "earliest",
        "--max-messages",
        "4",
        "--timeout-ms",
        "10000",
        "--format",
        "{partition}/{offset} {key}={value} [{headers}]",
    )
    assert formatted.code == 0, formatted
    assert formatted.stdout.splitlines() == [
        f"1/{j} k{i}=v{i} [n:{i}]" for j, i in enumerate(range(1, 12, 3))
    ]

    props = cli(
        "consume",
        "--topic",
        topic,
        "--partition",
        "0",
        "--offset",
        "2",
        "--max-messages",
        "1",
        "--timeout-ms",
        "10000",
        "--property",
        "print.key=true",
        "--property",
        "print.timestamp=true",
    )
    assert props.code == 0, props
    ((ts, key, value),) = [line.split("\t") for line in props.stdout.splitlines()]
    assert (key, value) == ("k6", "v6") and ts == f"CreateTime:{sent[6].timestamp}"


def test_consume_follows_new_records_and_stops_after_idle_timeout(
    cluster: LocalCluster, cli: Any
) -> None:
    topic = _topic(cli)
    assert cli("produce", "--topic", topic, "--partition", "0", stdin="old\n").code == 0
    # From the end: nothing old, and nothing new arrives within the idle timeout.
    idle = cli("consume", "--topic", topic, "--timeout-ms", "1500")
    assert idle.code == 0 and idle.stdout == "", idle

    # Started before the records it prints exist: it keeps fetching until they arrive.
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kraft.cli",
            "consume",
            "--bootstrap-server",
            cluster.bootstrap_servers,
            "--topic",
            topic,
            "--partition",
            "0",
            "--offset",
            "1",
            "--max-messages",
            "3",
            "--timeout-ms",
            "20000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for value in ("n1", "n2", "n3"):
            assert cli("produce", "--topic", topic, "--partition", "0", stdin=value).code == 0
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0, err
    assert out.splitlines() == ["n1", "n2", "n3"]


def test_consume_unknown_topic_exits_4(cli: Any) -> None:
    result = cli("consume", "--topic", "no-such-topic", "--max-messages", "1")
    assert result.code == 4 and "no-such-topic" in result.stderr, result


def test_consume_into_a_reader_that_goes_away_exits_quietly(
    cluster: LocalCluster, cli: Any
) -> None:
    topic = _topic(cli)
    lines = "".join(f"line {i}\n" for i in range(50_000))
    assert cli("produce", "--topic", topic, "--partition", "0", stdin=lines).code == 0
    consumer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kraft.cli",
            "consume",
            "--bootstrap-server",
            cluster.bootstrap_servers,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            "50000",
            "--timeout-ms",
            "10000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert consumer.stdout is not None and consumer.stderr is not None
        assert consumer.stdout.readline() == b"line 0\n"
        consumer.stdout.close()  # like `| head -1`
        err = consumer.stderr.read().decode()
        assert consumer.wait(timeout=30) == 0, err
    finally:
        consumer.kill()
        consumer.wait()
    assert "Traceback" not in err, err


def test_produce_and_consume_follow_the_new_leader_when_the_leader_dies(
    cluster: LocalCluster, cli: Any
) -> None:
    topic = _topic(cli)
    assert cli("produce", "--topic", topic, "--partition", "0", stdin="before\n").code == 0
    (described,) = cli("topics", "--describe", "--topic", topic, "--json").json()
    leader = described["partitions"][0]["leader"]
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kraft.cli",
            "consume",
            "--bootstrap-server",
            cluster.bootstrap_servers,
            "--topic",
            topic,
            "--partition",
            "0",
            "--offset",
            "0",
            "--max-messages",
            "2",
            "--timeout-ms",
            "30000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "before\n"
        cluster.kill(leader)
        result = kraft(
            "produce",
            "--bootstrap-server",
            cluster.bootstrap_servers,
            "--topic",
            topic,
            "--partition",
            "0",
            "--timeout",
            "20",
            stdin="after the leader died\n",
        )
        assert result.code == 0, result
        out, err = follower.communicate(timeout=40)
        assert follower.returncode == 0, err
        assert out == "after the leader died\n"
    finally:
        follower.kill()
        follower.wait()
        cluster.restart(leader)
