"""Faults on a live 3-node ChaosCluster, observed with real clients (kafka-python, acks=all,
idempotent, through the proxies): each fault has its effect, heal restores the cluster, and
nothing acknowledged is lost.

One cluster serves the module (starting one costs seconds); each test heals in `finally` and
waits until every partition it used is fully in sync again, so the next starts whole."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from kraft.chaos.faults import (
    Bandwidth,
    IsolateNode,
    KillAll,
    KillRestart,
    Latency,
    OneWay,
    Pause,
    ResetPeers,
    SplitMajorityMinority,
    Target,
)
from kraft.chaos.topology import ChaosCluster
from kraft.launcher import request
from kraft.net.protocol import ApiVersionsRequest, ApiVersionsResponse
from tests.chaos.clients import (
    create_topic,
    produce,
    produce_until_acked,
    producer,
    read_partition,
)

SETTINGS = {
    "min.insync.replicas": "2",
    "broker.session.timeout.ms": "2000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "1500",
}
# Bounded and generous: other process tests may share the machine's two cores.
FAILOVER_S = 30.0


@pytest.fixture(scope="module")
def cc(tmp_path_factory: pytest.TempPathFactory, toxiproxy_server: str) -> Iterator[ChaosCluster]:
    cluster = ChaosCluster(
        tmp_path_factory.mktemp("chaos") / "c", 3, toxiproxy_url=toxiproxy_server, extra=SETTINGS
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill()


def wait_for(what: str, probe: Callable[[], object], timeout: float = FAILOVER_S) -> object:
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def wait_in_sync(cc: ChaosCluster, topic: str, partition: int) -> None:
    def whole() -> bool:
        view = cc.partition_view(topic, partition)
        return view is not None and view.leader >= 0 and len(view.isr) == 3

    wait_for(f"{topic}-{partition} to have 3 replicas in sync", whole)


def check_read_back(cc: ChaosCluster, topic: str, partition: int, acked: dict[bytes, int]) -> None:
    """Every acknowledged value at its acknowledged offset, each offset holding one value."""
    assert len(set(acked.values())) == len(acked)
    got = read_partition(cc, topic, partition, max(acked.values()) + 1)
    lost = {v: o for v, o in acked.items() if got.get(o) != v}
    assert lost == {}, f"acknowledged writes lost or moved: {lost}"


def test_isolating_the_partition_leader_elects_another(cc: ChaosCluster) -> None:
    topic = "isolate"
    create_topic(cc, topic, 1)
    p = producer(cc)
    fault = IsolateNode(Target.partition_leader(topic, 0))
    try:
        acked = produce(p, topic, 0, [f"before-{n}".encode() for n in range(20)])
        with cc.inject(fault):
            old = fault.node
            assert old is not None
            new = wait_for(
                "a new leader among the others",
                lambda: (
                    cc.partition_leader(topic, 0) not in (None, old)
                    and cc.partition_leader(topic, 0)
                ),
            )
            assert new != old
            # acks=all resumes on the new leader (the old one cannot reach a quorum).
            for n in range(5):
                value = f"during-{n}".encode()
                acked[value] = produce_until_acked(p, topic, 0, value, FAILOVER_S)
        wait_in_sync(cc, topic, 0)
        acked |= produce(p, topic, 0, [f"after-{n}".encode() for n in range(5)])
    finally:
        p.close(timeout=5)
        cc.heal_all()
    check_read_back(cc, topic, 0, acked)


def test_one_way_partition_drops_the_follower_from_the_isr(cc: ChaosCluster) -> None:
    topic = "one-way"
    create_topic(cc, topic, 1)
    leader = cc.partition_leader(topic, 0)
    follower = Target.follower(topic, 0).resolve(cc)
    # The follower cannot reach the leader (so it cannot fetch); the leader still reaches it.
    fault = OneWay(follower, Target.partition_leader(topic, 0))
    p = producer(cc)
    try:
        with cc.inject(fault):

            def without_follower() -> bool:
                view = cc.partition_view(topic, 0)
                return view is not None and follower not in view.isr

            wait_for(f"node {follower} to leave the ISR of {topic}-0", without_follower)
            # Still 2 in sync: acks=all writes are acknowledged meanwhile.
            acked = {}
            for n in range(10):
                value = f"during-{n}".encode()
                acked[value] = produce_until_acked(p, topic, 0, value, FAILOVER_S)
        # Healed: the follower fetches again and rejoins; the leader never changed.
        wait_in_sync(cc, topic, 0)
        assert cc.partition_leader(topic, 0) == leader
    finally:
        p.close(timeout=5)
        cc.heal_all()
    check_read_back(cc, topic, 0, acked)


def test_pausing_the_leader_moves_leadership_and_resuming_brings_it_back_in_sync(
    cc: ChaosCluster,
) -> None:
    topic = "pause"
    create_topic(cc, topic, 1)
    fault = Pause(Target.partition_leader(topic, 0))
    p = producer(cc)
    try:
        acked = produce(p, topic, 0, [f"before-{n}".encode() for n in range(10)])
        with cc.inject(fault):
            paused = fault.node
            assert paused is not None and cc.cluster.node(paused).paused
            wait_for(
                "a leader other than the paused node",
                lambda: cc.partition_leader(topic, 0) not in (None, paused),
            )
            value = b"during-pause"
            acked[value] = produce_until_acked(p, topic, 0, value, FAILOVER_S)
        assert not cc.cluster.node(paused).paused
        wait_in_sync(cc, topic, 0)
    finally:
        p.close(timeout=5)
        cc.heal_all()
    check_read_back(cc, topic, 0, acked)


def test_split_with_the_active_controller_in_the_minority_elects_another(
    cc: ChaosCluster,
) -> None:
    fault = SplitMajorityMinority()  # the minority holds the active controller
    with cc.inject(fault):
        (old,) = fault.minority

        def other_controller() -> int | None:
            active = cc.active_controller()
            return active if active not in (None, old) else None

        wait_for("an active controller on the majority side", other_controller)
    # Healed: a controller leads and metadata writes go through it again.
    wait_for("an active controller", cc.active_controller)
    create_topic(cc, "after-split", 1)
    wait_in_sync(cc, "after-split", 0)


def test_latency_slows_every_round_trip_and_heals(cc: ChaosCluster) -> None:
    topic = "latency"
    create_topic(cc, topic, 1)
    p = producer(cc, enable_idempotence=False, acks=1)
    try:
        produce(p, topic, 0, [b"warm"])

        def round_trip() -> float:
            started = time.monotonic()
            produce(p, topic, 0, [b"x"])
            return time.monotonic() - started

        with cc.inject(Latency(150, 20, kinds=["client"])):
            slow = min(round_trip() for _ in range(3))
        fast = min(round_trip() for _ in range(3))
    finally:
        p.close(timeout=5)
    # 130 ms at least each way on the client link, once it is healed back to loopback speed.
    assert slow >= 0.26, slow
    assert fast < slow - 0.2, (fast, slow)


def test_bandwidth_limits_and_resets_on_client_links(cc: ChaosCluster) -> None:
    topic = "bandwidth"
    create_topic(cc, topic, 1)
    p = producer(cc, enable_idempotence=False, acks=1, max_request_size=2_000_000)
    payload = bytes(300_000)
    try:
        produce(p, topic, 0, [b"warm"])
        with cc.inject(Bandwidth(200, kinds=["client"])):
            started = time.monotonic()
            produce(p, topic, 0, [payload])
            limited = time.monotonic() - started
        started = time.monotonic()
        produce(p, topic, 0, [payload])
        free = time.monotonic() - started
    finally:
        p.close(timeout=5)
    assert limited >= 1.2, limited  # 300 KB at 200 KB/s: 1.5 s
    assert free < limited / 2, (free, limited)

    leader = cc.partition_leader(topic, 0)
    assert leader is not None
    proxy_port = int(cc.link(f"client->{leader}").listen.rsplit(":", 1)[1])
    with cc.inject(ResetPeers(leader, kinds=["client"])):
        with pytest.raises((ConnectionError, EOFError)):
            request(proxy_port, ApiVersionsRequest(), 5.0)
    assert isinstance(request(proxy_port, ApiVersionsRequest(), 5.0), ApiVersionsResponse)


def test_kill_restart_and_kill_all_lose_nothing_acknowledged(cc: ChaosCluster) -> None:
    topic = "kill"
    create_topic(cc, topic, 2)
    p = producer(cc)
    acked: dict[int, dict[bytes, int]] = {0: {}, 1: {}}
    try:
        for partition in (0, 1):
            acked[partition] = produce(
                p, topic, partition, [f"a{partition}-{n}".encode() for n in range(50)]
            )
        KillRestart(Target.active_controller()).execute(cc)
        wait_for("an active controller", cc.active_controller)
        for partition in (0, 1):
            value = f"after-restart-{partition}".encode()
            acked[partition][value] = produce_until_acked(p, topic, partition, value, FAILOVER_S)
    finally:
        p.close(timeout=5)
    pids = {i: n.pid for i, n in cc.cluster.nodes.items()}
    KillAll().execute(cc)
    assert all(n.alive and n.pid != pids[i] for i, n in cc.cluster.nodes.items())
    for partition in (0, 1):
        wait_in_sync(cc, topic, partition)
        check_read_back(cc, topic, partition, acked[partition])
