"""Checks of a `Cluster`'s settings, made before anything is started: node counts, config keys
(through the same validation `kraft serve` applies to its config file) and the data dir."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from kraft.config import ConfigError, build_config, parse_properties
from kraft.launcher.configs import node_properties, plan


class ClusterError(Exception):
    """A `Cluster` cannot be made or used as asked; the message says why."""


class ClusterConfigError(ClusterError, ValueError):
    """A setting of a `Cluster` is refused (a node count, a config key or value, a data dir);
    raised before any process is started."""


class ClusterStartError(ClusterError):
    """The cluster did not become healthy. Every node was stopped; `node_id` names the node
    that failed (None when no one node is to blame) and the message carries the reason and
    the nodes' log tails."""

    def __init__(self, message: str, node_id: int | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id


# Keys the launcher sets per node (ids, addresses, directories, the quorum): a Cluster's config
# may not override them.
LAUNCHER_KEYS = frozenset(
    {
        "node.id",
        "broker.id",
        "process.roles",
        "cluster.id",
        "listeners",
        "advertised.listeners",
        "controller.listener.names",
        "controller.quorum.voters",
        "controller.quorum.bootstrap.servers",
        "inter.broker.listener.name",
        "log.dirs",
        "log.dir",
        "kraft.cluster.secret",
        "kraft.admin.listener",
    }
)
# Held (flock) by the Cluster running on a data dir.
LOCK_FILE = ".lock"
_NODE_DIR = re.compile(r"node-(\d+)")
# Ports per node: a combined node has Kafka, controller, Raft and admin ports; a broker two.
PORTS_PER_COMBINED = 4
PORTS_PER_BROKER = 2


def check_counts(nodes: int, brokers: int) -> None:
    for name, value, least in (("nodes", nodes, 1), ("brokers", brokers, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ClusterConfigError(f"{name} must be an int, not {value!r}")
        if value < least:
            raise ClusterConfigError(f"{name} must be at least {least}, not {value}")
    if brokers and nodes < 2:
        # As `kraft up --brokers`: broker-only nodes follow a quorum of at least two voters.
        raise ClusterConfigError("broker-only nodes need nodes >= 2 (a quorum to follow)")
    needed = PORTS_PER_COMBINED * nodes + PORTS_PER_BROKER * brokers
    available = ephemeral_port_count()
    if needed > available // 2:
        raise ClusterConfigError(
            f"{nodes} node(s) and {brokers} broker(s) need {needed} ports; this machine's "
            f"ephemeral range has {available} (at most half of it may be taken)"
        )


def ephemeral_port_count() -> int:
    """How many ports the OS hands out for bind(port 0)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(p) for p in f.read().split())
    except (OSError, ValueError):
        return 65535 - 32768 + 1  # Linux's usual range
    return high - low + 1


def normalise_config(config: Mapping[str, str | int | bool] | None) -> dict[str, str]:
    """The config as `server.properties` strings (bools as true/false), refusing keys the
    launcher sets."""
    out: dict[str, str] = {}
    for key, value in (config or {}).items():
        if not isinstance(key, str) or not key.strip() or key != key.strip():
            raise ClusterConfigError(f"config key {key!r} is not a property name")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | str):
            text = str(value)
        else:
            raise ClusterConfigError(f"config {key}: value {value!r} must be a str, int or bool")
        if "\n" in text or "\r" in text:
            raise ClusterConfigError(f"config {key}: value {text!r} spans lines")
        if key in LAUNCHER_KEYS or key.startswith("kraft.peer."):
            raise ClusterConfigError(
                f"config {key} is set by Cluster for each node (addresses, ids, directories, "
                "the quorum) and cannot be overridden"
            )
        out[key] = text
    return out


def check_config(extra: Mapping[str, str], nodes: int, brokers: int) -> None:
    """Each kind of node's full config (the launcher's keys plus `extra`) through `kraft
    serve`'s validation; ClusterConfigError names the refused key."""
    specs = plan("/nonexistent", nodes, brokers, base_port=20000)  # a plan: no sockets
    kinds = [(specs[0], True)] + ([(specs[nodes], False)] if brokers else [])
    for spec, combined in kinds:
        props = node_properties(spec, specs[:nodes], "x" * 22, "s", len(specs), combined)
        props.update(extra)
        try:
            build_config(props)
        except ConfigError as e:
            raise ClusterConfigError(f"config refused by kraft: {e}") from None


def check_data_dir(root: Path, nodes: int, brokers: int) -> None:
    """A given data dir must be new, empty, or a Cluster's of the same shape and cluster id."""
    if root.exists() and not root.is_dir():
        raise ClusterConfigError(f"data_dir {root} exists and is not a directory")
    if not root.exists():
        return
    if not os.access(root, os.W_OK | os.X_OK):
        raise ClusterConfigError(f"data_dir {root} is not writable")
    id_file = root / "cluster.id"
    if not id_file.is_file():
        if (root / "meta.properties").exists():
            raise ClusterConfigError(
                f"data_dir {root} is one node's log dir (it holds meta.properties), not a "
                "Cluster's data dir"
            )
        if any(p.name != LOCK_FILE for p in root.iterdir()):
            raise ClusterConfigError(
                f"data_dir {root} is not empty and holds no kraft cluster (no cluster.id); "
                "give an empty or new directory"
            )
        return
    cluster_id = id_file.read_text().strip()
    combined: set[int] = set()
    broker_only: set[int] = set()
    for child in sorted(root.iterdir()):
        match = _NODE_DIR.fullmatch(child.name)
        if match is None or not child.is_dir():
            continue
        meta = child / "data" / "meta.properties"
        if meta.is_file():
            other = parse_properties(meta.read_text()).get("cluster.id", "")
            if other and other != cluster_id:
                raise ClusterConfigError(
                    f"data_dir {root}: {meta} belongs to cluster {other}, not to this data "
                    f"dir's cluster {cluster_id} ({id_file}); a data dir of another cluster"
                )
        properties = child / "server.properties"
        if properties.is_file():
            roles = parse_properties(properties.read_text()).get("process.roles", "")
            (combined if "controller" in roles else broker_only).add(int(match.group(1)))
    want_combined = set(range(1, nodes + 1))
    want_brokers = set(range(nodes + 1, nodes + brokers + 1))
    if (combined or broker_only) and (combined, broker_only) != (want_combined, want_brokers):
        raise ClusterConfigError(
            f"data_dir {root} holds cluster {cluster_id} of {len(combined)} combined node(s) "
            f"and {len(broker_only)} broker-only node(s); Cluster(nodes={nodes}, "
            f"brokers={brokers}) cannot reuse it (the quorum's voters would change)"
        )
