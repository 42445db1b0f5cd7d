"""ChaosCluster: every directed link of a 3-node cluster through its own Toxiproxy proxy.

Proof from the kernel's connection table, not from the proxy's bookkeeping (so it holds for a
real Toxiproxy too): with clients producing and consuming on an RF=3 topic led by each node in
turn, every link has a live connection from its source process to its proxy, and neither the
nodes nor the clients hold a connection to another node's real port. The brokers advertise
the client proxies. The observers agree with the cluster's own answers, and teardown removes
every proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kraft.chaos.topology import CLIENT, ChaosCluster
from kraft.chaos.toxiclient import ToxiproxyClient
from kraft.launcher import request
from kraft.net.protocol import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    MetadataRequest,
    MetadataResponse,
)
from tests.chaos.clients import create_topic, produce, producer, read_partition
from tests.chaos.sockets import established

TOPIC = "routed"
GROUP = "routed-group"


@pytest.fixture
def cc(tmp_path: Path, toxiproxy_server: str) -> Iterator[ChaosCluster]:
    cluster = ChaosCluster(tmp_path / "c", 3, toxiproxy_url=toxiproxy_server)
    try:
        yield cluster
    finally:
        cluster.kill()


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_every_link_goes_through_its_proxy(cc: ChaosCluster, toxiproxy_server: str) -> None:
    cc.start()
    assert len(cc.links()) == 21
    assert {k: len(cc.links(kind=k)) for k in ("client", "broker", "controller", "raft")} == {
        "client": 3,
        "broker": 6,
        "controller": 6,
        "raft": 6,
    }
    nodes = cc.cluster.nodes
    # The brokers advertise the client proxies (asked on a node's own port).
    answer = request(nodes[1].kafka_port, MetadataRequest(topics=[]))
    assert isinstance(answer, MetadataResponse)
    assert {b.node_id: (b.host, b.port) for b in answer.brokers} == {
        i: ("127.0.0.1", port(cc.link(f"client->{i}").listen)) for i in nodes
    }

    create_topic(cc, TOPIC, 3)
    leaders = {cc.partition_leader(TOPIC, p) for p in range(3)}
    assert leaders == {1, 2, 3}, f"placement left a node leading nothing: {leaders}"
    p = producer(cc)
    try:
        for partition in range(3):
            acked = produce(p, TOPIC, partition, [f"v{partition}-{n}".encode() for n in range(30)])
            assert sorted(acked.values()) == list(range(30))
        active = cc.active_controller()
        assert active is not None and active == cc.cluster.active_controller()
        # Live connections while the producer is open (the followers fetch continuously).
        pids = {i: n.pid for i, n in nodes.items()}
        assert all(pids.values())
        me = os.getpid()
        owner = {pid: i for i, pid in pids.items()}
        connections = established([*[pid for pid in pids.values() if pid], me])
    finally:
        p.close(timeout=5)

    dialled = {(c.pid, c.remote_port) for c in connections}
    for link in cc.links():
        src_pid = me if link.src == CLIENT else pids[int(link.src)]
        used = (src_pid, port(link.listen)) in dialled
        if link.kind == "controller" and link.dst != active:
            continue  # brokers talk to the active controller only
        if link.kind == "client" and link.dst not in leaders:
            continue
        assert used, f"no connection on {link.name} ({link.listen} -> {link.upstream})"
    real = {
        port_: i
        for i, n in nodes.items()
        for port_ in (n.kafka_port, n.controller_port, n.raft_port)
    }
    # A node dials no other node's real port (its own controller is no link) ...
    assert [
        c
        for c in connections
        if c.pid != me and c.remote_port in real and real[c.remote_port] != owner[c.pid]
    ] == []
    # ... and this process dials real ports only as the proxies' upstream side (when the
    # Toxiproxy server runs in it): one upstream connection per accepted proxy connection.
    listens = {port(link.listen) for link in cc.links()}
    accepted = [c for c in connections if c.pid == me and c.local_port in listens]
    upstream = [c for c in connections if c.pid == me and c.remote_port in real]
    assert len(upstream) <= len(accepted), (upstream, accepted)

    # Everything produced reads back through the proxies.
    for partition in range(3):
        got = read_partition(cc, TOPIC, partition, 30)
        assert got == {n: f"v{partition}-{n}".encode() for n in range(30)}

    # The group coordinator as FindCoordinator names it on every node's own port.
    coordinator = cc.group_coordinator(GROUP)
    assert coordinator in nodes
    for node in nodes.values():
        found = request(
            node.kafka_port,
            FindCoordinatorRequest(key_type=0, coordinator_keys=[GROUP]),
        )
        assert isinstance(found, FindCoordinatorResponse)
        assert [c.node_id for c in found.coordinators] == [coordinator]
    # Teardown removes this cluster's proxies from the server.
    names = {link.proxy for link in cc.links()}
    cc.kill()
    assert not names & set(ToxiproxyClient(toxiproxy_server).proxies())
