"""Plans (node ids, ports, directories) and `server.properties` files of local clusters."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class NodeSpec:
    """One node of a local cluster: a combined node (broker + controller) when it has a
    controller port, else broker-only."""

    node_id: int
    kafka_port: int
    controller_port: int
    raft_port: int
    directory: str
    admin_port: int = 0  # the HTTP admin API (kraft.admin.listener); 0: none

    @property
    def admin_url(self) -> str | None:
        return f"http://127.0.0.1:{self.admin_port}" if self.admin_port else None

    @property
    def config_path(self) -> str:
        return os.path.join(self.directory, "server.properties")

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "node.log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def is_controller(self) -> bool:
        return self.controller_port != 0


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (all held open while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def plan(
    root: str | Path, nodes: int, brokers: int = 0, base_port: int | None = None
) -> list[NodeSpec]:
    """Combined nodes 1..`nodes`, then broker-only nodes, each in `root/node-<id>`.

    With `base_port` P (`kraft up`'s fixed layout): node i serves Kafka on P+i-1, its
    controller listener on P+100+i-1, its Raft transport on P+200+i-1 and its HTTP admin API
    on P+300+i-1. Without: free ports.
    """
    total = nodes + brokers
    if base_port is None:
        ports = iter(free_ports(4 * nodes + 2 * brokers))
        kafka = {i: next(ports) for i in range(1, total + 1)}
        controller = {i: next(ports) for i in range(1, nodes + 1)}
        raft = {i: next(ports) for i in range(1, nodes + 1)}
        admin = {i: next(ports) for i in range(1, total + 1)}
    else:
        kafka = {i: base_port + i - 1 for i in range(1, total + 1)}
        controller = {i: base_port + 100 + i - 1 for i in range(1, nodes + 1)}
        raft = {i: base_port + 200 + i - 1 for i in range(1, nodes + 1)}
        admin = {i: base_port + 300 + i - 1 for i in range(1, total + 1)}
    return [
        NodeSpec(
            i,
            kafka[i],
            controller.get(i, 0),
            raft.get(i, 0),
            os.path.join(str(root), f"node-{i}"),
            admin[i],
        )
        for i in range(1, total + 1)
    ]


def node_properties(
    spec: NodeSpec,
    combined_specs: Sequence[NodeSpec],
    cluster_id: str,
    secret: str,
    total_nodes: int,
    combined: bool = True,
) -> dict[str, str]:
    """The launcher's keys of one node's `server.properties` (before any extra keys)."""
    voters = ",".join(f"{s.node_id}@127.0.0.1:{s.raft_port}" for s in combined_specs)
    controllers = ",".join(f"127.0.0.1:{s.controller_port}" for s in combined_specs)
    replication = min(3, total_nodes)
    listeners = f"PLAINTEXT://127.0.0.1:{spec.kafka_port}"
    return {
        "node.id": str(spec.node_id),
        "process.roles": "broker,controller" if combined else "broker",
        "cluster.id": cluster_id,
        "listeners": listeners
        + (f",CONTROLLER://127.0.0.1:{spec.controller_port}" if combined else ""),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{spec.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.voters": voters,
        "controller.quorum.bootstrap.servers": controllers,
        # The Raft transport's secret: controllers only.
        **({"kraft.cluster.secret": secret} if combined else {}),
        "log.dirs": os.path.join(spec.directory, "data"),
        "default.replication.factor": str(replication),
        "offsets.topic.replication.factor": str(replication),
        "min.insync.replicas": "1",
        # Local setups start groups at once (Kafka's default waits 3 s).
        "group.initial.rebalance.delay.ms": "0",
        **({"kraft.admin.listener": f"127.0.0.1:{spec.admin_port}"} if spec.admin_port else {}),
    }


def write_configs(
    specs: Sequence[NodeSpec],
    cluster_id: str,
    secret: str,
    brokers: Sequence[NodeSpec] = (),
    extra: Mapping[str, str] | None = None,
) -> None:
    """`server.properties` of combined nodes `specs` and of broker-only nodes `brokers` (which
    follow the metadata from the combined nodes' controllers), then `extra` keys (a later key
    wins)."""
    total = len(specs) + len(brokers)
    for spec in [*specs, *brokers]:
        os.makedirs(spec.directory, exist_ok=True)
        props = node_properties(spec, specs, cluster_id, secret, total, spec not in brokers)
        with open(spec.config_path, "w") as f:
            f.write("# written by kraft.launcher\n")
            f.write("".join(f"{k}={v}\n" for k, v in props.items()))
            if extra:
                f.write("# overrides\n")
                f.write("".join(f"{k}={v}\n" for k, v in extra.items()))


def append_config(spec: NodeSpec, props: Mapping[str, str]) -> None:
    """Append keys to a node's config (a later key wins); read at its next start."""
    with open(spec.config_path, "a") as f:
        f.write("".join(f"{k}={v}\n" for k, v in props.items()))


def kept_value(root: str, name: str, make: str) -> str:
    """A value generated on the first launch in `root` and reused after."""
    path = os.path.join(root, name)
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make + "\n")
    return make
