"""Per-peer addresses: every inter-node link of a 3-node cluster through its own TCP relay.

Each node's config names, per peer, the address it dials (`kraft.peer.broker.<id>.address`,
`kraft.peer.controller.<id>.address`, `kraft.peer.raft.<id>.address`); here each is a relay of
its own directed link. A client produces to and consumes from an RF=3 topic whose partitions
are led by each node in turn. Then every replication link and every Raft link carried bytes
both ways, each other broker reached the active controller through its relay, the records reached
every replica, and no node holds a connection to another node's real port."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Cluster, poll_until
from .relay import Relays

TOPIC = "relayed"
MARKER = b"relayed-record-"


@pytest.fixture
def relays() -> Iterator[Relays]:
    r = Relays()
    try:
        yield r
    finally:
        r.close()


def route_every_link(cluster: Cluster, relays: Relays) -> None:
    """A relay per directed link, and each node's config pointing at its relays."""
    nodes = cluster.nodes
    for i in nodes:
        props = {}
        for j, peer in nodes.items():
            controller = relays.add(f"controller {i}->{j}", peer.controller_port)
            props[f"kraft.peer.controller.{j}.address"] = controller.address
            if i != j:
                broker = relays.add(f"broker {i}->{j}", peer.kafka_port)
                raft = relays.add(f"raft {i}->{j}", peer.raft_port)
                props[f"kraft.peer.broker.{j}.address"] = broker.address
                props[f"kraft.peer.raft.{j}.address"] = raft.address
        cluster.local.configure(i, props)


def produce_and_consume(cluster: Cluster, partitions: int, per_partition: int) -> int:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(
        bootstrap_servers=cluster.bootstrap_servers,
        acks="all",
        request_timeout_ms=10000,
        linger_ms=5,
    )
    try:
        futures = [
            producer.send(TOPIC, MARKER + f"{p}-{n}".encode(), partition=p)
            for p in range(partitions)
            for n in range(per_partition)
        ]
        producer.flush(30)
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
    got = 0
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 20
        while got < partitions * per_partition and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got += sum(1 for r in records if r.value.startswith(MARKER))
    finally:
        consumer.close()
    return got


def _node_ports(cluster: Cluster) -> set[int]:
    return {
        port
        for n in cluster.nodes.values()
        for port in (n.kafka_port, n.controller_port, n.raft_port)
    }


def direct_connections(cluster: Cluster) -> list[str]:
    """Established TCP connections of the node processes to another node's real port."""
    inodes: dict[int, int] = {}
    for node_id, node in cluster.nodes.items():
        fd_dir = Path(f"/proc/{node.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[int(target[8:-1])] = node_id
    ports = _node_ports(cluster)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                state, inode = fields[3], int(fields[9])
                if state == "01" and inode in inodes and remote_port in ports:
                    found.append(f"node {inodes[inode]} -> port {remote_port}")
    return found


def test_every_inter_node_link_goes_through_its_relay(
    make_cluster: Callable[..., Cluster], relays: Relays
) -> None:
    cluster = make_cluster(start=False)
    route_every_link(cluster, relays)
    cluster.start()
    ids = set(cluster.nodes)
    cluster.wait_brokers(ids, on=ids)
    active = cluster.wait_active_controller()

    cluster.create_topic(1, TOPIC, 3, 3)
    cluster.wait_topic(TOPIC, on=ids)
    leaders = {p.leader_id for t in cluster.metadata(1, [TOPIC]).topics for p in t.partitions}
    assert leaders == ids, f"placement put no partition leader on some node: {leaders}"

    assert produce_and_consume(cluster, partitions=3, per_partition=50) == 150

    # Every replica holds every partition's records (replicated through the relays only).
    for node in cluster.nodes.values():
        for p in range(3):
            poll_until(
                lambda n=node, p=p: _replicated(n.spec.directory, p),  # type: ignore[misc]
                10,
                f"node {node.node_id} to hold {TOPIC}-{p}",
            )

    counts = {name: (r.sent, r.received) for name, r in relays.relays.items()}
    for i in ids:
        for j in ids - {i}:
            for kind in ("broker", "raft"):
                sent, received = counts[f"{kind} {i}->{j}"]
                assert sent > 0 and received > 0, f"{kind} {i}->{j} carried {sent}/{received}"
        if i != active:  # the active controller's own broker asks it in-process
            sent, received = counts[f"controller {i}->{active}"]
            assert sent > 0 and received > 0, f"controller {i}->{active}: {sent}/{received}"
    assert direct_connections(cluster) == []
    print("\nbytes (sent, received) per relay:", counts)


def _replicated(directory: str, partition: int) -> bool:
    files = (Path(directory) / "data" / f"{TOPIC}-{partition}").glob("*.log")
    data = b"".join(f.read_bytes() for f in files)
    return all(MARKER + f"{partition}-{n}".encode() in data for n in range(50))
