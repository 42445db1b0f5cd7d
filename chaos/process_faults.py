"""Process faults on a plain `LocalCluster` (no proxies): kill -9 and restart, SIGSTOP, kill -9
of every node. The network faults (partitions, latency, resets) are `kraft.chaos.faults` on a
`ChaosCluster`; these work on either, through its `.cluster`.

A fault's target is a node id or a `Target` resolved when the fault is injected (the leader of a
partition, the active controller, a node the run's seed picks).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kraft.chaos.observer import partition_leaders
from kraft.launcher import LocalCluster
from kraft.launcher.process import READY_TIMEOUT_S


class Site(Protocol):
    """What a run needs of a cluster: ChaosCluster has it; PlainCluster wraps a LocalCluster."""

    cluster: LocalCluster

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def admin_urls(self) -> dict[int, str]: ...

    @property
    def node_ids(self) -> list[int]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def heal_all(self) -> None: ...


class PlainCluster:
    """A LocalCluster as a run's site: clients connect straight to the brokers."""

    def __init__(
        self, root: str | Path, nodes: int = 3, *, extra: Mapping[str, str] | None = None
    ) -> None:
        self.cluster = LocalCluster(root, nodes, extra=extra)

    @property
    def bootstrap_servers(self) -> str:
        return self.cluster.bootstrap_servers

    @property
    def admin_urls(self) -> dict[int, str]:
        return self.cluster.admin_urls

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.cluster.nodes)

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.heal_all()
        self.cluster.stop()

    def heal_all(self) -> None:
        for node in self.cluster.nodes.values():
            node.resume()


Resolver = Callable[[Site, random.Random], int]


@dataclass(frozen=True)
class Target:
    """A node chosen when the fault is injected."""

    describe: str
    resolve: Resolver

    @staticmethod
    def node(node_id: int) -> Target:
        return Target(f"node {node_id}", lambda site, rng: node_id)

    @staticmethod
    def any_node() -> Target:
        return Target("a node", lambda site, rng: rng.choice(site.node_ids))

    @staticmethod
    def partition_leader(topic: str, partition: int) -> Target:
        return Target(
            f"leader of {topic}-{partition}", lambda s, r: _leader(s, r, topic, partition)
        )

    @staticmethod
    def active_controller() -> Target:
        def resolve(site: Site, rng: random.Random) -> int:
            found = site.cluster.active_controller()
            return found if found is not None else rng.choice(site.node_ids)

        return Target("the active controller", resolve)


def _leader(site: Site, rng: random.Random, topic: str, partition: int) -> int:
    for node_id, url in site.admin_urls.items():
        node = site.cluster.nodes[node_id]
        if not node.alive or node.paused:
            continue
        try:
            leader, _ = partition_leaders(url, topic)[partition]
        except (OSError, ValueError, KeyError):
            continue
        if leader >= 0:
            return leader
    return rng.choice(site.node_ids)


def restart_node(site: Site, node_id: int, timeout: float = READY_TIMEOUT_S) -> None:
    """Start a killed node again on its data dir, until it is ready (registered, unfenced)."""
    node = site.cluster.nodes[node_id]
    if not node.alive:
        node.start()
    node.wait_ready(timeout)


class Pause:
    """SIGSTOP the target for the impact phase; SIGCONT at heal."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = f"pause {target.describe}"
        self.victim: int | None = None

    def inject(self, site: Site, rng: random.Random) -> str:
        self.victim = self.target.resolve(site, rng)
        site.cluster.pause(self.victim)
        return f"paused node {self.victim}"

    def heal(self, site: Site) -> None:
        if self.victim is not None:
            site.cluster.resume(self.victim)


class KillRestart:
    """kill -9 the target at inject; start it again at heal (a crash and a slow restart)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = f"kill -9 {target.describe}"
        self.victim: int | None = None

    def inject(self, site: Site, rng: random.Random) -> str:
        self.victim = self.target.resolve(site, rng)
        site.cluster.kill(self.victim)
        return f"killed node {self.victim}"

    def heal(self, site: Site) -> None:
        if self.victim is not None:
            restart_node(site, self.victim)


class KillAll:
    """kill -9 every node at once; restart them all at heal (power loss of the whole cluster:
    only what was fsynced survives)."""

    name = "kill -9 every node"

    def inject(self, site: Site, rng: random.Random) -> str:
        site.cluster.kill_all()
        return "killed every node"

    def heal(self, site: Site) -> None:
        for node in site.cluster.nodes.values():
            if not node.alive:
                node.start()
        started = time.monotonic()
        for node_id in site.node_ids:
            site.cluster.nodes[node_id].wait_ready(
                max(1.0, READY_TIMEOUT_S - (time.monotonic() - started))
            )
