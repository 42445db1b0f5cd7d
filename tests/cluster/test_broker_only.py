"""Process test of a broker-only node (`process.roles=broker`) beside 3 combined nodes: it
follows the metadata from the active controller by offset (Fetch on `__cluster_metadata`),
registers, is unfenced, serves a partition it leads to a real client, sees new topics within
milliseconds, keeps following through the active controller's kill -9, and catches up after
its own kill -9 and restart. Then a controller-only node (`process.roles=controller`) among
the voters.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from kraft.net.protocol import CreateTopicsRequest, CreateTopicsResponse

from .conftest import Cluster, call, poll_until

BROKER = 4
FAST_SESSIONS = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "500"}


def create_assigned(cluster: Cluster, via: int, name: str, replicas: list[int]) -> None:
    request = CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(
                name=name,
                num_partitions=-1,
                replication_factor=-1,
                assignments=[
                    CreateTopicsRequest.CreatableReplicaAssignment(
                        partition_index=0, broker_ids=replicas
                    )
                ],
            )
        ],
        timeout_ms=5000,
    )
    response = call(cluster.nodes[via].kafka_port, request, 10.0)
    assert isinstance(response, CreateTopicsResponse)
    assert response.topics[0].error_code == 0, response


def visible_after(cluster: Cluster, via: int, name: str) -> float:
    """Seconds from CreateTopics' answer (committed) until the broker-only node's Metadata
    lists the topic."""
    cluster.create_topic(via, name, 1, 1)
    committed = time.monotonic()
    poll_until(
        lambda: any(
            t.name == name and t.error_code == 0
            for t in cluster.metadata(BROKER, [name], timeout=1.0).topics
        ),
        5.0,
        f"topic {name} at broker {BROKER}",
        interval=0.001,
        on_timeout=cluster.logs,
    )
    return time.monotonic() - committed


def produce_and_consume(cluster: Cluster, topic: str, values: list[bytes]) -> list[bytes]:
    """Produce `values` with acks=all through the broker-only node, then read the partition
    from the start; everything read."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    bootstrap = f"127.0.0.1:{cluster.nodes[BROKER].kafka_port}"
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        request_timeout_ms=5000,
        max_block_ms=10000,
        linger_ms=0,
        retries=5,
    )
    try:
        for v in values:
            producer.send(topic, v, partition=0).get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        request_timeout_ms=10000,
    )
    tp = TopicPartition(topic, 0)
    got: list[bytes] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got += [r.value for r in records]
            if len(got) >= len(values) and consumer.position(tp) >= consumer.end_offsets([tp])[tp]:
                break
    finally:
        consumer.close()
    return got


def test_broker_only_node_follows_the_metadata(make_cluster: Callable[..., Cluster]) -> None:
    started = time.monotonic()
    cluster = make_cluster(extra=FAST_SESSIONS, brokers=1)
    everyone = set(cluster.nodes)
    assert everyone == {1, 2, 3, BROKER}
    # Registered and unfenced (its ready line says so), and every node lists it.
    cluster.wait_brokers(everyone, on=everyone)
    controller = cluster.wait_active_controller()
    assert controller != BROKER

    # A partition the broker-only node leads, with two followers: acks=all through it.
    create_assigned(cluster, BROKER, "on-broker-only", [BROKER, 1, 2])
    cluster.wait_topic("on-broker-only", on=everyone)
    values = [b"value-%d" % i for i in range(20)]
    assert produce_and_consume(cluster, "on-broker-only", values) == values

    # Propagation: a committed topic shows in its Metadata within milliseconds (long poll).
    latencies = [visible_after(cluster, controller, f"latency-{i}") for i in range(10)]
    print(
        f"\ntopic visible at broker-only node {BROKER}: median "
        f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    assert max(latencies) < 0.5, latencies

    # kill -9 of the active controller: it follows the new one and sees what it commits.
    cluster.kill(controller)
    killed = time.monotonic()
    new_controller = cluster.wait_active_controller()
    (other,) = [n for n in (1, 2, 3) if n not in (controller, new_controller)]
    cluster.create_topic(other, "after-failover", 1, 1)
    cluster.wait_topic("after-failover", on=[BROKER], timeout=10.0)
    print(
        f"controller {controller} killed: broker-only node sees a topic of controller "
        f"{new_controller} {time.monotonic() - killed:.2f} s later"
    )
    latency = visible_after(cluster, new_controller, "latency-after-failover")
    print(f"  then {latency * 1000:.1f} ms from commit to visible")
    assert latency < 0.5

    # kill -9 of the broker-only node; metadata changes while it is down; it restarts and
    # catches up (a fresh image: from offset 0 or a snapshot), data included.
    cluster.kill(BROKER)
    cluster.create_topic(new_controller, "while-down", 2, 1)
    cluster.nodes[BROKER].start()
    cluster.nodes[BROKER].wait_ready()
    cluster.wait_topic("while-down", on=[BROKER])
    alive = set(cluster.alive_ids())
    cluster.wait_brokers(alive, on=alive)
    want = {t.name for t in cluster.metadata(new_controller).topics}
    assert {t.name for t in cluster.metadata(BROKER).topics} == want
    more = [b"more-%d" % i for i in range(5)]
    assert produce_and_consume(cluster, "on-broker-only", more) == values + more
    elapsed = time.monotonic() - started
    print(f"broker-only test took {elapsed:.1f} s")


def test_controller_only_node_is_a_voter_and_no_broker(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Node 3 as `process.roles=controller` (its CONTROLLER listener only), node 4 broker-only:
    the quorum has 3 voters, the brokers are 1, 2 and 4, and metadata changes reach the
    broker-only node whichever controller is active, also after the active one dies."""
    cluster = make_cluster(brokers=1, start=False)
    spec = cluster.nodes[3].spec
    lines = Path(spec.config_path).read_text().splitlines()
    overrides = {
        "process.roles": "controller",
        "listeners": f"CONTROLLER://127.0.0.1:{spec.controller_port}",
        "advertised.listeners": "",
    }
    kept = [line for line in lines if line.split("=", 1)[0] not in overrides]
    kept += [f"{k}={v}" for k, v in overrides.items() if v]
    Path(spec.config_path).write_text("\n".join(kept) + "\n")
    cluster.start()
    brokers = {1, 2, BROKER}
    cluster.wait_brokers(brokers, on=brokers)
    controller = cluster.wait_active_controller()
    voters = cluster.describe_quorum(controller).topics[0].partitions[0].current_voters
    assert sorted(v.replica_id for v in voters) == [1, 2, 3]
    cluster.create_topic(BROKER, "everywhere", 3, 3)
    cluster.wait_topic("everywhere", on=brokers)
    placed = {
        r
        for p in cluster.metadata(BROKER, ["everywhere"]).topics[0].partitions
        for r in p.replica_nodes
    }
    assert placed == brokers

    cluster.kill(controller)
    cluster.wait_active_controller()
    survivor = next(b for b in brokers if b != controller)
    cluster.create_topic(survivor, "after", 1, 1)
    cluster.wait_topic("after", on=[BROKER])
