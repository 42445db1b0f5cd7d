"""Which links each fault poisons, and with what, read back from the Toxiproxy server: a
routed ChaosCluster whose nodes are never started (no processes; configs only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kraft.chaos import faults
from kraft.chaos.faults import (
    Bandwidth,
    Bridge,
    FaultError,
    IsolateNode,
    Latency,
    OneWay,
    Partition,
    ResetPeers,
    SplitMajorityMinority,
    Target,
)
from kraft.chaos.topology import ChaosCluster
from kraft.config import load_config

NODE_KINDS = ("broker", "controller", "raft")


@pytest.fixture
def routed(tmp_path: Path, toxiproxy_server: str) -> Iterator[Callable[..., ChaosCluster]]:
    made: list[ChaosCluster] = []

    def make(nodes: int = 3, brokers: int = 0) -> ChaosCluster:
        cc = ChaosCluster(
            tmp_path / f"c{len(made)}", nodes, brokers, toxiproxy_url=toxiproxy_server
        )
        made.append(cc)
        cc.route()
        return cc

    try:
        yield make
    finally:
        for cc in made:
            cc.kill()


def poisoned(cc: ChaosCluster) -> dict[str, list[tuple[str, str, dict[str, int]]]]:
    """Link name → its toxics (type, stream, attributes), links without toxics left out."""
    state = cc.api.proxies()
    found = {}
    for link in cc.links():
        toxics = state[link.proxy]["toxics"]
        if toxics:
            found[link.name] = sorted((t["type"], t["stream"], t["attributes"]) for t in toxics)
    return found


CUT = [("timeout", "downstream", {"timeout": 0}), ("timeout", "upstream", {"timeout": 0})]


def names(pairs: list[tuple[int, int]], kinds: tuple[str, ...] = NODE_KINDS) -> set[str]:
    return {f"{a}->{b}/{k}" for a, b in pairs for k in kinds}


def test_configs_point_every_node_at_its_proxies(routed: Callable[..., ChaosCluster]) -> None:
    cc = routed(3, brokers=1)
    # 4 client links; broker links between all 4; controller links to the 3 controllers from
    # the 3 others each; Raft links among 3 voters.
    assert {k: len(cc.links(kind=k)) for k in ("client", "broker", "controller", "raft")} == {
        "client": 4,
        "broker": 12,
        "controller": 9,
        "raft": 6,
    }
    for node_id, node in cc.cluster.nodes.items():
        config = load_config(node.spec.config_path)
        (advertised,) = config.advertised_listeners
        assert f"{advertised.host}:{advertised.port}" == cc.link(f"client->{node_id}").listen
        for link in cc.links(src=node_id):
            host, port = config.peer_address(link.kind, link.dst) or ("", 0)
            assert f"{host}:{port}" == link.listen, link.name
        # Its own controller directly (every voter needs an address once one is given).
        if node.spec.is_controller:
            assert config.peer_address("controller", node_id) == (
                "127.0.0.1",
                node.controller_port,
            )


def test_isolate_cuts_every_node_link_of_the_node_both_ways(
    routed: Callable[..., ChaosCluster],
) -> None:
    cc = routed()
    fault = IsolateNode(2)
    with cc.inject(fault):
        assert fault.node == 2
        cut = poisoned(cc)
        assert set(cut) == names([(2, 1), (2, 3), (1, 2), (3, 2)])
        assert all(toxics == CUT for toxics in cut.values())
    assert poisoned(cc) == {}
    with cc.inject(IsolateNode(Target.node(3), clients=True)):
        assert set(poisoned(cc)) == names([(3, 1), (3, 2), (1, 3), (2, 3)]) | {"client->3"}
    assert poisoned(cc) == {}


def test_one_way_cuts_only_what_src_dials_to_dst(routed: Callable[..., ChaosCluster]) -> None:
    cc = routed()
    with cc.inject(OneWay(1, 3)):
        assert set(poisoned(cc)) == names([(1, 3)])
    with pytest.raises(FaultError):
        OneWay(2, 2).inject(cc)
    assert poisoned(cc) == {}


def test_bridge_and_splits(routed: Callable[..., ChaosCluster]) -> None:
    cc = routed()
    bridge = Bridge()
    with cc.inject(bridge):
        assert bridge.halves == ([1, 2], [2, 3])
        assert set(poisoned(cc)) == names([(1, 3), (3, 1)])
    big = routed(5)
    split = SplitMajorityMinority(minority_with=4)
    with big.inject(split):
        assert split.minority == [4, 1]
        pairs = [(a, b) for a in (1, 4) for b in (2, 3, 5)]
        assert set(poisoned(big)) == names(pairs + [(b, a) for a, b in pairs])
    with big.inject(Bridge(bridge=Target.node(1))):
        # Halves [2, 3] + 1 and 1 + [4, 5]: only 2, 3 <-> 4, 5 are cut.
        pairs = [(a, b) for a in (2, 3) for b in (4, 5)]
        assert set(poisoned(big)) == names(pairs + [(b, a) for a, b in pairs])
    with big.inject(Partition([[1, 2]], isolate_clients=[5])):
        # 3, 4 and 5 are each alone: every link but 1<->2 is cut, and clients lose 5.
        others = [(a, b) for a in range(1, 6) for b in range(1, 6) if a != b]
        expected = names([p for p in others if p not in ((1, 2), (2, 1))]) | {"client->5"}
        assert set(poisoned(big)) == expected
    assert poisoned(cc) == {} and poisoned(big) == {}


def test_degradations_compose_and_heal_independently(
    routed: Callable[..., ChaosCluster],
) -> None:
    cc = routed()
    latency = Latency(100, 10, node=1, kinds=["client"])
    bandwidth = Bandwidth(50, node=1)
    latency.inject(cc)
    bandwidth.inject(cc)
    cut = poisoned(cc)
    assert sorted(cut["client->1"]) == sorted(
        [
            ("latency", "downstream", {"latency": 100, "jitter": 10}),
            ("latency", "upstream", {"latency": 100, "jitter": 10}),
            ("bandwidth", "downstream", {"rate": 50}),
            ("bandwidth", "upstream", {"rate": 50}),
        ]
    )
    assert set(cut) == {"client->1"} | names([(1, 2), (1, 3), (2, 1), (3, 1)])
    latency.heal(cc)
    assert {t[0] for toxics in poisoned(cc).values() for t in toxics} == {"bandwidth"}
    bandwidth.heal(cc)
    assert poisoned(cc) == {}
    with cc.inject(ResetPeers(2, timeout_ms=5, kinds=["client"])):
        assert poisoned(cc) == {
            "client->2": [
                ("reset_peer", "downstream", {"timeout": 5}),
                ("reset_peer", "upstream", {"timeout": 5}),
            ]
        }


def test_heal_all_removes_every_toxic_and_enables_every_proxy(
    routed: Callable[..., ChaosCluster],
) -> None:
    cc = routed()
    IsolateNode(1).inject(cc)
    Latency(5).inject(cc)
    cc.api.set_enabled(cc.link("client->3").proxy, False)
    cc.heal_all()
    assert poisoned(cc) == {}
    assert all(p["enabled"] for p in cc.api.proxies().values())


def test_a_target_nobody_knows_fails_the_inject(
    routed: Callable[..., ChaosCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    cc = routed()  # no node runs: nobody leads anything
    monkeypatch.setattr(faults, "RESOLVE_TIMEOUT_S", 0.3)
    with pytest.raises(FaultError, match="the leader of t-0"):
        IsolateNode(Target.partition_leader("t", 0)).inject(cc)
    with pytest.raises(FaultError, match="the active controller"):
        OneWay(1, Target.active_controller()).inject(cc)
    assert poisoned(cc) == {}


def test_reset_on_heal_reopens_the_cut_links_on_the_same_addresses(
    routed: Callable[..., ChaosCluster],
) -> None:
    cc = routed()
    before = {name: p["listen"] for name, p in cc.api.proxies().items()}
    fault = IsolateNode(1, reset=True)
    with cc.inject(fault):
        assert len(fault.links) == 12
    after = cc.api.proxies()
    assert {name: p["listen"] for name, p in after.items()} == before
    assert all(p["enabled"] and not p["toxics"] for p in after.values())


def test_proxies_never_take_a_port_chosen_for_a_node(
    tmp_path: Path, toxiproxy_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The nodes' ports are chosen but not bound until the nodes start: a proxy listening on
    # port 0 could be handed one of them (a campaign run saw node 1 fail with "address
    # already in use" on its controller port). Here every pick offers the nodes' ports first.
    from kraft.chaos import topology

    cc = ChaosCluster(tmp_path / "c", 3, toxiproxy_url=toxiproxy_server)
    node_ports = [
        port
        for spec in cc.cluster.specs
        for port in (spec.kafka_port, spec.controller_port, spec.raft_port, spec.admin_port)
        if port
    ]
    spare = [p for p in topology.free_ports(60) if p not in node_ports]
    monkeypatch.setattr(topology, "free_ports", lambda n: (node_ports + spare)[:n])
    try:
        cc.route()
        listening = {int(link.listen.rsplit(":", 1)[1]) for link in cc.links()}
        assert len(listening) == len(cc.links()) == 21
        # Ports chosen by the topology (not by the kernel for port 0), none of a node's.
        assert listening <= set(spare)
    finally:
        cc.kill()
