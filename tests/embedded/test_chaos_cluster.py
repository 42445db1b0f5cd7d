"""`kraft.Cluster(chaos=True)`: a user's test cuts its service off from the cluster, partitions
the nodes and slows the network, through the embedded API (one 3-node chaos cluster for the
module; each test heals what it injected)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

import kraft
from kraft.chaos.toxiclient import ToxiproxyClient
from kraft.chaos.toxiproxy import ThreadedToxiproxy
from kraft.embedded import ClusterConfigError, ClusterError
from tests.embedded.procs import gone
from tests.embedded.test_cluster import _taking

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

# How long a test waits to see that something does NOT happen under a fault: several of the
# producer's request timeouts, so a request that could get through would have.
NOT_WITHIN_S = 3.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[kraft.Cluster]:
    with kraft.Cluster(nodes=3, chaos=True) as cluster:
        yield cluster


def producer(bootstrap_servers: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=1000,
        delivery_timeout_ms=90_000,
        reconnect_backoff_max_ms=500,
    )


def toxics(cluster: kraft.Cluster) -> dict[str, int]:
    """Toxics per proxy of this cluster, proxies with none left out."""
    return {
        name: len(state.get("toxics") or [])
        for name, state in cluster.chaos.api.proxies().items()
        if state.get("toxics")
    }


def test_clients_get_the_proxies_and_a_plain_cluster_has_no_chaos(
    cluster: kraft.Cluster,
) -> None:
    proxied = cluster.bootstrap_servers.split(",")
    direct = cluster.direct_bootstrap_servers.split(",")
    assert len(proxied) == 3 and not set(proxied) & set(direct)
    assert [link.listen for link in cluster.chaos.links(kind="client")] == proxied
    assert len(cluster.chaos.links()) == 21
    with pytest.raises(ClusterError, match="chaos=True"):
        kraft.Cluster(nodes=1).cut_clients()
    with pytest.raises(ClusterConfigError, match="chaos=True"):
        kraft.Cluster(nodes=1, toxiproxy_url="http://127.0.0.1:8474")


def test_a_service_cut_off_from_the_cluster_waits_and_delivers_once_healed(
    cluster: kraft.Cluster,
) -> None:
    topic = "cut-off"
    cluster.create_topic(topic, partitions=1)
    service = producer(cluster.bootstrap_servers)
    try:
        assert service.send(topic, b"before").get(timeout=30).offset == 0
        with cluster.cut_clients() as cut:
            pending = service.send(topic, b"during")
            with pytest.raises(KafkaTimeoutError):
                pending.get(timeout=NOT_WITHIN_S)
            assert len(toxics(cluster)) == 3  # the three client links, nothing else
            # The cluster's own controls go straight to the nodes.
            cluster.create_topic("made-while-cut", partitions=1)
        assert cut.healed and toxics(cluster) == {}
        assert pending.get(timeout=60).offset == 1
    finally:
        service.close(timeout=10)


def test_a_partition_between_nodes_holds_back_acks_all_and_heals(cluster: kraft.Cluster) -> None:
    topic = "partitioned"
    # Every replica must acknowledge: a leader cut off from its followers cannot.
    cluster.create_topic(topic, partitions=1, config={"min.insync.replicas": "3"})
    leader = cluster.chaos.partition_leader(topic, 0)
    assert leader is not None
    others = [n for n in (1, 2, 3) if n != leader]
    service = producer(cluster.bootstrap_servers)
    try:
        assert service.send(topic, b"before").get(timeout=30).offset == 0
        handle = cluster.partition([leader], others)
        try:
            held = service.send(topic, b"during")
            with pytest.raises(KafkaTimeoutError):
                held.get(timeout=NOT_WITHIN_S)
            # Node links only: broker, controller and Raft links each way between the leader
            # and each of the two others, a toxic per stream; the clients' links untouched.
            assert all(".client." not in name for name in toxics(cluster))
            assert sorted(toxics(cluster).values()) == [2] * 12
        finally:
            handle.heal()
        assert toxics(cluster) == {}
        held.get(timeout=60)
        cluster.wait_healthy(timeout=60)
        assert service.send(topic, b"after").get(timeout=60).offset >= 2
    finally:
        service.close(timeout=10)


def test_latency_on_the_client_links_delays_a_produce(cluster: kraft.Cluster) -> None:
    topic = "slow"
    cluster.create_topic(topic, partitions=1)
    service = producer(cluster.bootstrap_servers)
    ms = 400

    def round_trip() -> float:
        started = time.monotonic()
        service.send(topic, b"x").get(timeout=30)
        return time.monotonic() - started

    try:
        round_trip()  # connected, metadata known
        with cluster.latency(ms, kinds=["client"]):
            slow = round_trip()
        fast = round_trip()
    finally:
        service.close(timeout=10)
    # The request and its response each wait `ms` on the proxy.
    assert slow >= 2 * ms / 1000, (slow, fast)
    assert fast < slow - ms / 1000, (slow, fast)


def test_heal_removes_every_fault_and_stop_removes_the_proxies() -> None:
    with ThreadedToxiproxy() as server:
        api = ToxiproxyClient(server.url)
        with kraft.Cluster(nodes=1, chaos=True, toxiproxy_url=server.url) as cluster:
            cluster.cut_clients()
            cluster.latency(50, node=1)
            (client_link,) = cluster.chaos.links()
            assert toxics(cluster) == {client_link.proxy: 4}  # two faults, both streams
            cluster.heal()
            assert toxics(cluster) == {}
            cluster.cut_clients()  # left on: stop heals it
            pid = cluster.node(1).pid
            assert set(api.proxies()) == {client_link.proxy}
            calls = record_teardown(cluster)
        assert calls == ["heal_all", "stop nodes", "unroute"]
        assert pid is not None and gone(pid)
        assert api.proxies() == {}


def record_teardown(cluster: kraft.Cluster) -> list[str]:
    """The order in which `stop` heals, stops the nodes and removes the proxies."""
    calls: list[str] = []
    chaos, local = cluster.chaos, cluster.chaos.cluster

    def spy(name: str, real: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object, **kwargs: object) -> None:
            calls.append(name)
            real(*args, **kwargs)

        return call

    chaos.heal_all = spy("heal_all", chaos.heal_all)  # type: ignore[method-assign]
    chaos.unroute = spy("unroute", chaos.unroute)  # type: ignore[method-assign]
    local.stop = spy("stop nodes", local.stop)  # type: ignore[method-assign]
    return calls


def test_a_start_retried_on_new_ports_proxies_only_the_new_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken, picked = _taking(monkeypatch, index=0, calls=1)
    with ThreadedToxiproxy() as server, taken:
        api = ToxiproxyClient(server.url)
        with kraft.Cluster(nodes=1, chaos=True, toxiproxy_url=server.url) as cluster:
            assert len(picked) == 2
            (proxy,) = api.proxies().values()  # the first attempt's proxy was removed
            assert proxy["upstream"] == f"127.0.0.1:{picked[1][0]}"
            assert cluster.bootstrap_servers == proxy["listen"]
        assert api.proxies() == {}
