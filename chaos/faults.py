"""Faults on a `ChaosCluster`: recoverable ones with `inject` / `heal`, one-off ones with
`execute`.

Network faults act on the proxies of the links (see `kraft.chaos.topology`). A partition puts a
`timeout` toxic with timeout 0 on both streams of every link that crosses the cut: nothing
passes either way. Ours holds the data and delivers it on heal, as TCP does after a partition
heals; a real Toxiproxy drops it and closes the connection when the toxic goes. Both are
network partitions; `reset=True` makes ours behave like Toxiproxy on heal (every cut link's
connections are closed), so no connection outlives the partition. A node cut off still accepts
new connections at its proxies (the proxy answers), then nothing passes: a dialler sees a
timeout, as behind a silent partition.

A one-way partition `OneWay(a, b)` cuts the links a dials to b: a's requests and Raft messages
never reach b, while b's reach a (b's Raft messages to a ride on the link b dials).

Targets are resolved when a fault is injected, so "the leader of t-0" means the leader at
that moment: `Target.partition_leader("t", 0)`, `Target.follower("t", 0)`,
`Target.active_controller()`, `Target.coordinator("group")`, or a plain node id.

Each fault names its toxics uniquely, so faults compose and each heals only its own;
`ChaosCluster.heal_all()` removes everything regardless (teardown). `with cluster.inject(fault):`
heals even when the body fails.
"""

from __future__ import annotations

import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence

from kraft.chaos.topology import STREAMS, ChaosCluster, Link
from kraft.launcher import READY_TIMEOUT_S

logger = logging.getLogger(__name__)

RESOLVE_TIMEOUT_S = 30.0
_POLL_S = 0.1
NODE_KINDS = ("broker", "controller", "raft")
_ids = itertools.count(1)


class FaultError(RuntimeError):
    """A fault could not be injected (e.g. its target could not be resolved)."""


# ---------------------------------------------------------------------------- targets


class Target:
    """A node chosen at inject time."""

    def __init__(self, description: str, find: Callable[[ChaosCluster], int | None]) -> None:
        self.description = description
        self._find = find

    def __repr__(self) -> str:
        return self.description

    def resolve(self, cluster: ChaosCluster, timeout: float | None = None) -> int:
        """The node now; polls while nobody knows (e.g. mid-election), FaultError after
        `timeout` (default RESOLVE_TIMEOUT_S)."""
        timeout = RESOLVE_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            node = self._find(cluster)
            if node is not None:
                return node
            if time.monotonic() >= deadline:
                raise FaultError(f"no node is {self.description} after {timeout:.0f} s")
            time.sleep(_POLL_S)

    @classmethod
    def node(cls, node_id: int) -> Target:
        return cls(f"node {node_id}", lambda _c: node_id)

    @classmethod
    def partition_leader(cls, topic: str, partition: int) -> Target:
        return cls(
            f"the leader of {topic}-{partition}",
            lambda c: c.partition_leader(topic, partition),
        )

    @classmethod
    def follower(cls, topic: str, partition: int) -> Target:
        """A follower of the partition: the lowest in-sync one, else the lowest replica."""

        def find(c: ChaosCluster) -> int | None:
            view = c.partition_view(topic, partition)
            if view is None or view.leader < 0:
                return None
            isr = [r for r in view.isr if r != view.leader]
            others = isr or [r for r in view.replicas if r != view.leader]
            return min(others, default=None)

        return cls(f"a follower of {topic}-{partition}", find)

    @classmethod
    def active_controller(cls) -> Target:
        return cls("the active controller", lambda c: c.active_controller())

    @classmethod
    def coordinator(cls, group: str) -> Target:
        return cls(f"the coordinator of group {group}", lambda c: c.group_coordinator(group))


TargetLike = int | Target


def resolve(target: TargetLike, cluster: ChaosCluster) -> int:
    return target if isinstance(target, int) else target.resolve(cluster)


# ---------------------------------------------------------------------------- base classes


class Fault(ABC):
    """A recoverable fault."""

    name = "fault"

    @abstractmethod
    def inject(self, cluster: ChaosCluster) -> None: ...

    @abstractmethod
    def heal(self, cluster: ChaosCluster) -> None: ...

    def __repr__(self) -> str:
        return self.name


class OneOffFault(ABC):
    """A fault that runs to completion (kill, restart)."""

    name = "one-off"

    @abstractmethod
    def execute(self, cluster: ChaosCluster) -> None: ...

    def __repr__(self) -> str:
        return self.name


class ToxicFault(Fault):
    """Toxics of one type on links chosen at inject time; heal removes exactly these."""

    toxic_type = ""

    def __init__(self, streams: Sequence[str] = STREAMS) -> None:
        self.streams = tuple(streams)
        self._tag = f"chaos{next(_ids)}-{self.toxic_type}"
        self._applied: list[tuple[Link, str]] = []

    @abstractmethod
    def select(self, cluster: ChaosCluster) -> list[Link]:
        """The links to poison (targets resolved now)."""

    def attributes(self) -> dict[str, int]:
        return {}

    @property
    def links(self) -> list[Link]:
        """The links poisoned now (empty when healed)."""
        return list(dict.fromkeys(link for link, _ in self._applied))

    def inject(self, cluster: ChaosCluster) -> None:
        if self._applied:
            raise FaultError(f"{self.name} is already injected")
        links = self.select(cluster)
        try:
            for link in links:
                for stream in self.streams:
                    name = f"{self._tag}-{stream}"
                    cluster.add_toxic(link, name, self.toxic_type, stream, self.attributes())
                    self._applied.append((link, name))
        except BaseException:
            self.heal(cluster)
            raise
        logger.info("chaos: injected %s on %d links", self.name, len(links))

    def heal(self, cluster: ChaosCluster) -> None:
        applied, self._applied = self._applied, []
        for link, name in applied:
            cluster.remove_toxic(link, name)
        logger.info("chaos: healed %s", self.name)


# ---------------------------------------------------------------------------- partitions


def crossing(cluster: ChaosCluster, groups: Sequence[Collection[int]]) -> list[Link]:
    """The node links between different groups (a node in no group is alone in one)."""
    side = {node: n for n, group in enumerate(groups) for node in group}
    lone = itertools.count(len(groups))
    for node in cluster.node_ids:
        if node not in side:
            side[node] = next(lone)
    return [
        link
        for link in cluster.links(kind=NODE_KINDS)
        if isinstance(link.src, int) and side[link.src] != side[link.dst]
    ]


class Cut(ToxicFault):
    """A network partition of the links `select` picks: nothing passes either way."""

    toxic_type = "timeout"

    def __init__(self, reset: bool = False) -> None:
        super().__init__()
        self.reset = reset

    def attributes(self) -> dict[str, int]:
        return {"timeout": 0}

    def heal(self, cluster: ChaosCluster) -> None:
        links = self.links
        super().heal(cluster)
        if self.reset:
            cluster.reset_connections(links)


class Partition(Cut):
    """Nodes in different `groups` cannot reach each other (every node link, both ways);
    nodes in no group are alone. Clients still reach every node unless `isolate_clients`
    names nodes they must not reach."""

    def __init__(
        self,
        groups: Sequence[Collection[TargetLike]],
        *,
        isolate_clients: Collection[TargetLike] = (),
        reset: bool = False,
    ) -> None:
        super().__init__(reset)
        self.groups = groups
        self.isolate_clients = isolate_clients
        self.name = f"partition {groups}"

    def select(self, cluster: ChaosCluster) -> list[Link]:
        groups = [[resolve(t, cluster) for t in group] for group in self.groups]
        unreachable = {resolve(t, cluster) for t in self.isolate_clients}
        self.name = f"partition {groups}"
        return crossing(cluster, groups) + [
            link for link in cluster.links(kind="client") if link.dst in unreachable
        ]


class CutClients(Cut):
    """Clients cannot reach `nodes` (default: any node), while the nodes reach each other:
    how a test cuts a service of its own off from the cluster."""

    def __init__(self, nodes: Collection[TargetLike] | None = None, *, reset: bool = False):
        super().__init__(reset)
        self.nodes = nodes
        self.name = "cut clients off" + ("" if nodes is None else f" from {nodes}")

    def select(self, cluster: ChaosCluster) -> list[Link]:
        links = cluster.links(kind="client")
        if self.nodes is None:
            return links
        nodes = {resolve(t, cluster) for t in self.nodes}
        self.name = f"cut clients off from {sorted(nodes)}"
        return [link for link in links if link.dst in nodes]


class IsolateNode(Cut):
    """One node cut off from every other node; with `clients`, from clients as well."""

    def __init__(self, target: TargetLike, *, clients: bool = False, reset: bool = False):
        super().__init__(reset)
        self.target = target
        self.clients = clients
        self.node: int | None = None
        self.name = f"isolate {target}"

    def select(self, cluster: ChaosCluster) -> list[Link]:
        node = self.node = resolve(self.target, cluster)
        self.name = f"isolate node {node} ({self.target})"
        kinds = ("client", *NODE_KINDS) if self.clients else NODE_KINDS
        return [link for link in cluster.links(kind=kinds) if link.touches(node)]


class SplitMajorityMinority(Cut):
    """The nodes split in two: a minority of (n - 1) // 2 nodes holding `minority_with`
    (default: the active controller, so the quorum must elect a new one on the majority
    side), then the lowest other ids, and the majority. Clients reach both sides."""

    def __init__(self, minority_with: TargetLike | None = None, *, reset: bool = False):
        super().__init__(reset)
        self.minority_with = minority_with or Target.active_controller()
        self.minority: list[int] = []
        self.name = "split majority/minority"

    def select(self, cluster: ChaosCluster) -> list[Link]:
        anchor = resolve(self.minority_with, cluster)
        others = [n for n in cluster.node_ids if n != anchor]
        self.minority = [anchor, *others[: (len(cluster.node_ids) - 1) // 2 - 1]]
        majority = [n for n in cluster.node_ids if n not in self.minority]
        self.name = f"split minority {self.minority} / majority {majority}"
        return crossing(cluster, [self.minority, majority])


class OneWay(Cut):
    """`src` cannot reach `dst`: every link src dials to dst is cut (both streams); the links
    dst dials to src carry on."""

    def __init__(self, src: TargetLike, dst: TargetLike, *, reset: bool = False):
        super().__init__(reset)
        self.src, self.dst = src, dst
        self.name = f"one-way {src} -/-> {dst}"

    def select(self, cluster: ChaosCluster) -> list[Link]:
        src, dst = resolve(self.src, cluster), resolve(self.dst, cluster)
        if src == dst:
            raise FaultError(f"one-way partition of node {src} from itself")
        self.name = f"one-way {src} -/-> {dst}"
        return [link for link in cluster.links(src=src, dst=dst) if link.kind in NODE_KINDS]


class Bridge(Cut):
    """Two halves that share one node, the bridge (default: the middle id): each half is
    whole, the halves reach each other only through the bridge's own links."""

    def __init__(self, bridge: TargetLike | None = None, *, reset: bool = False):
        super().__init__(reset)
        self.bridge = bridge
        self.halves: tuple[list[int], list[int]] = ([], [])
        self.name = "bridge"

    def select(self, cluster: ChaosCluster) -> list[Link]:
        ids = cluster.node_ids
        if len(ids) < 3:
            raise FaultError("a bridge needs at least 3 nodes")
        bridge = ids[len(ids) // 2] if self.bridge is None else resolve(self.bridge, cluster)
        others = [n for n in ids if n != bridge]
        left, right = others[: len(others) // 2], others[len(others) // 2 :]
        self.halves = ([*left, bridge], [bridge, *right])
        self.name = f"bridge {left} <-{bridge}-> {right}"
        return [
            link
            for link in cluster.links(kind=NODE_KINDS)
            if (link.src in left and link.dst in right) or (link.src in right and link.dst in left)
        ]


# ---------------------------------------------------------------------------- degradations


class _LinkSelection(ToxicFault):
    """Links touching `node` (default: every link), of `kinds` (default: every kind)."""

    def __init__(
        self,
        node: TargetLike | None,
        kinds: Collection[str] | None,
        streams: Sequence[str] = STREAMS,
    ) -> None:
        super().__init__(streams)
        self.node = node
        self.kinds = kinds

    def select(self, cluster: ChaosCluster) -> list[Link]:
        node = None if self.node is None else resolve(self.node, cluster)
        links = cluster.links(kind=self.kinds)
        return [link for link in links if node is None or link.touches(node)]


class Latency(_LinkSelection):
    """Each direction of the chosen links delays its data by `ms` ± `jitter` ms (order kept;
    a round trip costs twice that)."""

    toxic_type = "latency"

    def __init__(
        self,
        ms: int,
        jitter: int = 0,
        *,
        node: TargetLike | None = None,
        kinds: Collection[str] | None = None,
    ) -> None:
        super().__init__(node, kinds)
        self.ms, self.jitter = ms, jitter
        self.name = f"latency {ms}±{jitter} ms"

    def attributes(self) -> dict[str, int]:
        return {"latency": self.ms, "jitter": self.jitter}


class Bandwidth(_LinkSelection):
    """Each direction of the chosen links carries at most `rate_kb` KB/s."""

    toxic_type = "bandwidth"

    def __init__(
        self,
        rate_kb: int,
        *,
        node: TargetLike | None = None,
        kinds: Collection[str] | None = None,
    ) -> None:
        super().__init__(node, kinds)
        self.rate_kb = rate_kb
        self.name = f"bandwidth {rate_kb} KB/s"

    def attributes(self) -> dict[str, int]:
        return {"rate": self.rate_kb}


class ResetPeers(_LinkSelection):
    """While injected, every connection of the chosen links is reset (TCP RST, both ends)
    `timeout_ms` after data first reaches the proxy from either side; diallers reconnect and
    are reset again, until healed."""

    toxic_type = "reset_peer"

    def __init__(
        self,
        target: TargetLike | None = None,
        *,
        timeout_ms: int = 0,
        kinds: Collection[str] | None = None,
    ) -> None:
        super().__init__(target, kinds)
        self.timeout_ms = timeout_ms
        self.name = f"reset peers of {'every link' if target is None else target}"

    def attributes(self) -> dict[str, int]:
        return {"timeout": self.timeout_ms}


# ---------------------------------------------------------------------------- processes


class Pause(Fault):
    """SIGSTOP one node (its sockets stay open, nothing answers); heal: SIGCONT."""

    def __init__(self, target: TargetLike) -> None:
        self.target = target
        self.node: int | None = None
        self.name = f"pause {target}"

    def inject(self, cluster: ChaosCluster) -> None:
        self.node = resolve(self.target, cluster)
        self.name = f"pause node {self.node} ({self.target})"
        cluster.cluster.pause(self.node)
        logger.info("chaos: paused node %d", self.node)

    def heal(self, cluster: ChaosCluster) -> None:
        if self.node is not None:
            cluster.cluster.resume(self.node)
            logger.info("chaos: resumed node %d", self.node)
            self.node = None


class Kill(Fault):
    """kill -9 one node; heal: start it again on its data and wait until it is ready."""

    def __init__(self, target: TargetLike, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.target = target
        self.ready_timeout = ready_timeout
        self.node: int | None = None
        self.name = f"kill {target}"

    def inject(self, cluster: ChaosCluster) -> None:
        self.node = resolve(self.target, cluster)
        self.name = f"kill node {self.node} ({self.target})"
        cluster.cluster.kill(self.node)
        logger.info("chaos: killed node %d", self.node)

    def heal(self, cluster: ChaosCluster) -> None:
        if self.node is not None:
            node, self.node = self.node, None
            start_nodes(cluster, [node], self.ready_timeout)


def start_nodes(cluster: ChaosCluster, nodes: Collection[int], timeout: float) -> None:
    """Start the nodes that are down among `nodes` and wait until the cluster is ready."""
    for node_id in nodes:
        node = cluster.cluster.node(node_id)
        if not node.alive:
            node.start()
    cluster.cluster.wait_ready(timeout)
    logger.info("chaos: started nodes %s", sorted(nodes))


class KillRestart(OneOffFault):
    """kill -9 one node, then start it on its data and wait until it is ready."""

    def __init__(self, target: TargetLike, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.target = target
        self.ready_timeout = ready_timeout
        self.node: int | None = None
        self.name = f"kill -9 and restart {target}"

    def execute(self, cluster: ChaosCluster) -> None:
        self.node = resolve(self.target, cluster)
        self.name = f"kill -9 and restart node {self.node} ({self.target})"
        cluster.cluster.kill(self.node)
        logger.info("chaos: killed node %d", self.node)
        start_nodes(cluster, [self.node], self.ready_timeout)


class KillAll(OneOffFault):
    """kill -9 every node at once, then start them all and wait until the cluster is ready:
    what was acknowledged must survive (acks=all writes reached the ISR's page cache, not
    necessarily its disks)."""

    name = "kill -9 every node"

    def __init__(self, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.ready_timeout = ready_timeout

    def execute(self, cluster: ChaosCluster) -> None:
        cluster.cluster.kill_all()
        logger.info("chaos: killed every node")
        start_nodes(cluster, cluster.node_ids, self.ready_timeout)
