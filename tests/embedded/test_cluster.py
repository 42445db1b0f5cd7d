"""`kraft.Cluster` against real node processes: start, produce/consume with a real client,
per-node faults, teardown (also when the body raised), data dir reuse, start failures."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

import kraft
from kraft.embedded import Cluster, ClusterConfigError, ClusterError, ClusterStartError
from kraft.launcher import configs
from tests.embedded.procs import gone
from tests.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        for value in values:
            producer.send(topic, value).get(timeout=30)
    finally:
        producer.close()


def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
    )
    try:
        got: list[bytes] = []
        for record in consumer:
            got.append(record.value)
            if len(got) == count:
                break
        return got
    finally:
        consumer.close()


def test_three_nodes_serve_clients_and_survive_a_killed_node() -> None:
    with kraft.Cluster(nodes=3, config={"num.partitions": 2}) as cluster:
        assert [n.node_id for n in cluster.nodes] == [1, 2, 3]
        assert cluster.bootstrap_servers == ",".join(n.bootstrap or "" for n in cluster.nodes)
        assert len(cluster.bootstrap_servers.split(",")) == 3
        assert all(n.alive and n.pid for n in cluster.nodes)
        assert len(cluster.cluster_id) == 22
        with urllib.request.urlopen(cluster.admin_urls[0] + "/v1/brokers", timeout=10) as r:
            brokers = json.load(r)
        assert len(brokers["brokers"] if isinstance(brokers, dict) else brokers) == 3

        cluster.create_topic("orders", partitions=3)
        _produce(cluster.bootstrap_servers, "orders", [b"a", b"b"])
        with pytest.raises(ClusterError, match="TOPIC_ALREADY_EXISTS"):
            cluster.create_topic("orders", partitions=3)

        victim = cluster.node(2)
        pid = victim.pid
        assert pid is not None
        victim.kill()
        assert not victim.alive and gone(pid)
        _produce(cluster.bootstrap_servers, "orders", [b"c"])
        victim.start()
        assert victim.alive and victim.pid != pid
        cluster.wait_healthy()
        assert sorted(_consume(cluster.bootstrap_servers, "orders", 3)) == [b"a", b"b", b"c"]

        cluster.node(3).pause()
        cluster.node(3).resume()
        cluster.node(1).restart()
        assert "node 1" in cluster.logs(5) and "node 3" in cluster.logs(5)
        assert cluster.node(1).log_tail(5).startswith("---- node 1 log")
        pids = [n.pid for n in cluster.nodes]
        data_dir = cluster.data_dir
        assert data_dir.is_dir()
    assert all(p is not None and gone(p) for p in pids)
    assert not data_dir.exists(), "a temporary data dir is removed on stop"
    assert not cluster.running


def test_teardown_when_the_body_raised_and_data_dir_reuse(tmp_path: Path) -> None:
    data_dir = tmp_path / "kept"
    with pytest.raises(RuntimeError, match="the body failed"):
        with Cluster(nodes=1, data_dir=data_dir) as cluster:
            cluster.create_topic("kept", partitions=1, config={"retention.ms": "-1"})
            _produce(cluster.bootstrap_servers, "kept", [b"survives"])
            cluster_id = cluster.cluster_id
            pid = cluster.node(1).pid
            raise RuntimeError("the body failed")
    assert pid is not None and gone(pid)
    assert (data_dir / "cluster.id").exists(), "a given data dir is kept"

    again = Cluster(nodes=1, data_dir=data_dir)
    with again:
        with pytest.raises(ClusterConfigError, match="in use by another running Cluster"):
            Cluster(nodes=1, data_dir=data_dir).start()
        assert again.node(1).alive
        assert again.cluster_id == cluster_id
        assert _consume(again.bootstrap_servers, "kept", 1) == [b"survives"]
    assert data_dir.is_dir()


def test_async_context_manager() -> None:
    async def body() -> list[int | None]:
        async with Cluster(nodes=1) as cluster:
            await asyncio.to_thread(cluster.create_topic, "a")
            return [n.pid for n in cluster.nodes]

    pids = asyncio.run(body())
    assert pids and all(p is not None and gone(p) for p in pids)


def test_a_node_that_cannot_start_is_named_with_its_log(tmp_path: Path, others: set[int]) -> None:
    data_dir = tmp_path / "broken"
    with Cluster(nodes=1, data_dir=data_dir):
        pass
    log_dir = data_dir / "node-1" / "data"
    for child in log_dir.iterdir():  # the node's log dir becomes a file it cannot open
        if child.is_dir():
            for f in child.iterdir():
                f.unlink()
            child.rmdir()
        else:
            child.unlink()
    log_dir.rmdir()
    log_dir.write_text("not a directory")
    cluster = Cluster(nodes=1, data_dir=data_dir, start_timeout=30)
    with pytest.raises(ClusterStartError) as caught:
        cluster.start()
    assert caught.value.node_id == 1
    message = str(caught.value)
    assert "node 1 failed" in message
    assert "---- node 1 log" in message, "the node's log tail is in the message"
    assert not cluster.running
    assert not _children_alive(others)


def test_start_timeout_stops_every_node(others: set[int]) -> None:
    cluster = Cluster(nodes=3, start_timeout=0.05)
    with pytest.raises(ClusterStartError, match="not ready") as caught:
        cluster.start()
    assert caught.value.node_id == 1
    assert not _children_alive(others)
    assert cluster._resources.temp_dir is None


def _children() -> set[int]:
    path = Path(f"/proc/self/task/{os.getpid()}/children")
    return {int(p) for p in path.read_text().split() if not gone(int(p))}


@pytest.fixture
def others() -> set[int]:
    """This process's children before the test (e.g. a session's shared cluster): not the
    test's to stop."""
    return _children()


def _children_alive(others: set[int]) -> list[int]:
    return sorted(_children() - others)


def test_stop_is_idempotent_and_restartable(others: set[int]) -> None:
    cluster = Cluster(nodes=1)
    cluster.start()
    first_dir = cluster.data_dir
    cluster.stop()
    cluster.stop()
    assert not first_dir.exists()
    with cluster:  # a stopped cluster starts again (a fresh temporary data dir)
        cluster.create_topic("t")
    wait_until(lambda: not _children_alive(others), "no node left")


def _taking(
    monkeypatch: pytest.MonkeyPatch, index: int, calls: int | None = None
) -> tuple[socket.socket, list[list[int]]]:
    """Make the launcher's free-port pick hand out a port this test listens on, at `index`
    of the first `calls` picks (None: every pick): what another process taking a port
    between the pick and the node's bind looks like."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    picked: list[list[int]] = []
    original = configs.free_ports

    def free_ports(count: int) -> list[int]:
        ports = original(count)
        if calls is None or len(picked) < calls:
            ports[index] = taken.getsockname()[1]
        picked.append(ports)
        return ports

    monkeypatch.setattr(configs, "free_ports", free_ports)
    return taken, picked


def test_a_port_taken_before_the_node_binds_it_costs_another_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken, picked = _taking(monkeypatch, index=0, calls=1)
    with taken, Cluster(nodes=1) as cluster:
        assert len(picked) == 2
        assert cluster.bootstrap_servers == f"127.0.0.1:{picked[1][0]}"
        assert "address already in use" in cluster.logs(200).lower()


def test_a_node_that_exits_fails_the_start_at_once(
    monkeypatch: pytest.MonkeyPatch, others: set[int]
) -> None:
    """Node 2's Kafka port is taken on every try: the start fails as soon as node 2 exits,
    not after the start timeout, and names node 2."""
    taken, picked = _taking(monkeypatch, index=1)
    began = time.monotonic()
    with taken, pytest.raises(ClusterStartError) as caught:
        Cluster(nodes=3, start_timeout=120).start()
    took = time.monotonic() - began
    assert caught.value.node_id == 2
    assert "address already in use" in str(caught.value).lower()
    assert len(picked) == 3, "three tries"
    assert took < 60, f"the start failed after {took:.1f} s, as if waiting out the timeout"
    assert not _children_alive(others)
