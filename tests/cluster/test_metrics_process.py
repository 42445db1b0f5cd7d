"""`/metrics` of a 3-node cluster of `kraft serve` processes (each serving it on its
`kraft.admin.listener`), scraped over HTTP after known traffic and while a node is away."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import Cluster, free_ports, poll_until

HOST = "127.0.0.1"
TOPIC = "metered"
PARTITIONS = 6
RECORDS = 30
VALUE = b"v" * 100
# One record per batch (each produce flushed): the 61-byte v2 batch header and a 109-byte
# record (length 2, attributes 1, timestamp and offset deltas 1+1, null key 1, value length 2,
# value 100, header count 1).
BATCH_BYTES = 61 + 109
COMMITTED = 10
FAST_SESSIONS = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "500"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_cluster(make_cluster: Callable[..., Cluster]) -> tuple[Cluster, dict[int, int]]:
    cluster = make_cluster(extra=FAST_SESSIONS, start=False)
    ports = dict(zip(cluster.nodes, free_ports(len(cluster.nodes)), strict=True))
    for node_id, port in ports.items():
        cluster.local.configure(node_id, {"kraft.admin.listener": f"{HOST}:{port}"})
    cluster.start()
    return cluster, ports


def test_counters_under_replication_active_controller_and_lag(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster, ports = metrics_cluster(make_cluster)
    controller = cluster.wait_active_controller()

    def active_controllers() -> list[int] | None:
        counts = {
            n: value(scrape(p), "kafka_controller_kafkacontroller_activecontrollercount")
            for n, p in ports.items()
        }
        found = [n for n, c in counts.items() if c == 1]
        return found if sum(counts.values()) == 1 else None

    assert poll_until(active_controllers, 15.0, "exactly one active controller") == [controller]

    cluster.create_topic(controller, TOPIC, PARTITIONS, 3)
    cluster.wait_topic(TOPIC, on=cluster.nodes)
    (meta,) = cluster.metadata(controller, [TOPIC]).topics
    leader = next(p.leader_id for p in meta.partitions if p.partition_index == 0)
    before = {n: scrape(p) for n, p in ports.items()}

    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0})
    for _ in range(RECORDS):
        producer.produce(TOPIC, VALUE, partition=0)
        assert producer.flush(10) == 0  # one record per Produce request
    after = {n: scrape(p) for n, p in ports.items()}

    def moved(node_id: int, name: str, **labels: str) -> float:
        return value(after[node_id], name, **labels) - value(before[node_id], name, **labels)

    assert moved(leader, "kafka_network_requestmetrics_requests_total", request="Produce") == (
        RECORDS
    )
    assert moved(leader, "kafka_server_brokertopicmetrics_messagesin_total", topic=TOPIC) == (
        RECORDS
    )
    assert moved(leader, "kafka_server_brokertopicmetrics_bytesin_total", topic=TOPIC) == (
        RECORDS * BATCH_BYTES
    )
    size = value(after[leader], "kafka_log_log_size", topic=TOPIC, partition="0")
    assert size == RECORDS * BATCH_BYTES
    for follower in (n for n in ports if n != leader):
        # Replication is not producer traffic: it is counted apart.
        poll_until(
            lambda f=follower: (
                value(scrape(ports[f]), "kafka_server_brokertopicmetrics_replicationbytesin_total")
                - value(before[f], "kafka_server_brokertopicmetrics_replicationbytesin_total")
                >= RECORDS * BATCH_BYTES
            ),
            10.0,
            f"node {follower} to count the replicated bytes in",
        )
        assert moved(follower, "kafka_server_brokertopicmetrics_messagesin_total", topic=TOPIC) == 0
        assert (
            moved(follower, "kafka_network_requestmetrics_requests_total", request="Produce") == 0
        )
    assert sum(
        value(after[n], "kafka_controller_kafkacontroller_globalpartitioncount") for n in ports
    ) == value(after[controller], "kafka_controller_kafkacontroller_globalpartitioncount")

    # A group that committed COMMITTED of RECORDS: its coordinator reports the backlog.
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "lagging"})
    try:
        consumer.commit(offsets=[TopicPartition(TOPIC, 0, COMMITTED)], asynchronous=False)
    finally:
        consumer.close()
    labels = frozenset({"consumergroup": "lagging", "topic": TOPIC, "partition": "0"}.items())

    def lag_reports() -> dict[int, float] | None:
        found = {
            n: s[("kafka_consumergroup_lag", labels)]
            for n, p in ports.items()
            if ("kafka_consumergroup_lag", labels) in (s := scrape(p))
        }
        return found or None

    reports = poll_until(lag_reports, 10.0, "the lag of group lagging")
    assert list(reports.values()) == [RECORDS - COMMITTED], reports

    # A node stops: the leaders of its partitions report them under-replicated, and again
    # not once it is back in their ISR.
    victim = next(n for n in ports if n != controller)
    survivors = [n for n in ports if n != victim]

    def total(name: str, nodes: list[int]) -> float:
        return sum(value(scrape(ports[n]), name) for n in nodes)

    urp = "kafka_server_replicamanager_underreplicatedpartitions"
    assert total(urp, list(ports)) == 0
    shrinks = total("kafka_server_replicamanager_isrshrinks_total", survivors)
    # Every partition (the topic's and __consumer_offsets', all RF 3 on 3 nodes) has one.
    everything = value(
        scrape(ports[controller]), "kafka_controller_kafkacontroller_globalpartitioncount"
    )
    assert everything > PARTITIONS
    cluster.local.stop_node(victim)
    stopped = time.monotonic()
    poll_until(
        lambda: total(urp, survivors) == everything,
        15.0,
        "every partition under-replicated",
        on_timeout=lambda: f"{total(urp, survivors)} of {everything}",
    )
    print(
        f"\nnode {victim} stopped: {everything:.0f} partitions under-replicated after "
        f"{time.monotonic() - stopped:.2f} s"
    )
    assert total("kafka_server_replicamanager_isrshrinks_total", survivors) > shrinks
    expands = total("kafka_server_replicamanager_isrexpands_total", survivors)
    cluster.nodes[victim].start()
    cluster.nodes[victim].wait_ready()
    poll_until(lambda: total(urp, list(ports)) == 0, 20.0, "no partition under-replicated")
    assert total("kafka_server_replicamanager_isrexpands_total", list(ports)) > expands
    assert poll_until(active_controllers, 15.0, "exactly one active controller")
