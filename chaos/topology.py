"""A local cluster whose every directed link goes through its own Toxiproxy proxy.

Links of a cluster with combined nodes 1..n (brokers and Raft voters) and broker-only nodes::

    client->j        clients to broker j (j advertises this proxy in advertised.listeners,
                     so Metadata and FindCoordinator hand it to every client)
    i->j/broker      broker i to broker j (replication fetches): kraft.peer.broker.j.address
    i->c/controller  broker i to controller c (registration, heartbeats, AlterPartition,
                     metadata, forwarded admin requests): kraft.peer.controller.c.address
    i->j/raft        voter i to voter j (i's Raft messages to j ride only on the link i
                     dials): kraft.peer.raft.j.address

A node's way to itself is not a network link and stays direct. Three combined nodes have 21
links. The admin API and the nodes' own ports stay reachable directly: that is how the
observer (`partition_leader`, `active_controller`, `group_coordinator`) sees through faults.

The proxies live on a Toxiproxy server: `toxiproxy_url` when given, else `$TOXIPROXY_URL`, else
ours (`kraft.chaos.toxiproxy`) in a thread for the cluster's lifetime. Proxy names carry a
per-cluster prefix so several clusters can share one server.

    with ChaosCluster(tmp / "c", nodes=3, extra={"min.insync.replicas": "2"}) as cc:
        cc.start()
        IsolateNode(Target.partition_leader("t", 0)).inject(cc) ... .heal(cc)
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from kraft.chaos import observe
from kraft.chaos.toxiclient import ToxiproxyClient, ToxiproxyError
from kraft.chaos.toxiproxy import toxiproxy_url as toxiproxy_url_context
from kraft.launcher import READY_TIMEOUT_S, LocalCluster

logger = logging.getLogger(__name__)

CLIENT = "client"
KINDS = ("client", "broker", "controller", "raft")
STREAMS = ("upstream", "downstream")
STOP_TIMEOUT_S = 10.0


class Recoverable(Protocol):
    """What `ChaosCluster.inject` needs of a fault (`kraft.chaos.faults.Fault`)."""

    def inject(self, cluster: ChaosCluster) -> None: ...

    def heal(self, cluster: ChaosCluster) -> None: ...


class Injected:
    """An injected fault: `heal()` once (later calls do nothing), or leave the `with` block."""

    def __init__(self, cluster: ChaosCluster, fault: Recoverable) -> None:
        self.cluster = cluster
        self.fault = fault
        self.healed = False

    def heal(self) -> None:
        if not self.healed:
            self.healed = True
            self.fault.heal(self.cluster)

    def __enter__(self) -> Injected:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.heal()


@dataclass(frozen=True)
class Link:
    """One directed link: `src` (a node id, or "client") dials `dst` at `listen`, the proxy,
    which forwards to `upstream`, dst's real port."""

    name: str  # "client->2", "1->3/broker"
    src: int | str
    dst: int
    kind: str  # one of KINDS
    proxy: str = ""  # the proxy's name on the Toxiproxy server
    listen: str = ""
    upstream: str = ""

    def touches(self, node: int) -> bool:
        return self.src == node or self.dst == node


class ChaosCluster:
    """A `LocalCluster` (`cluster`: kill, pause, restart its processes) with a proxy on every
    directed link. `start` creates the proxies, points the configs at them and starts the
    nodes; `stop` heals everything, stops the nodes and removes the proxies."""

    def __init__(
        self,
        root: str | Path,
        nodes: int = 3,
        brokers: int = 0,
        *,
        toxiproxy_url: str | None = None,
        extra: Mapping[str, str] | None = None,
        serve_args: Sequence[str] = (),
    ) -> None:
        self._adopt(
            LocalCluster(root, nodes, brokers, extra=extra, serve_args=serve_args), toxiproxy_url
        )

    @classmethod
    def around(cls, cluster: LocalCluster, *, toxiproxy_url: str | None = None) -> ChaosCluster:
        """A chaos cluster over a `LocalCluster` made elsewhere (say by `kraft.Cluster`) whose
        nodes are not running yet: `route()` it, then start the nodes (either way)."""
        chaos = cls.__new__(cls)
        chaos._adopt(cluster, toxiproxy_url)
        return chaos

    def _adopt(self, cluster: LocalCluster, toxiproxy_url: str | None) -> None:
        self.cluster = cluster
        self._url = toxiproxy_url
        self._prefix = f"kraft-{secrets.token_hex(4)}"
        self._server = contextlib.ExitStack()
        self._api: ToxiproxyClient | None = None
        self._links: dict[str, Link] = {}

    # ------------------------------------------------------------ views

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.cluster.nodes)

    @property
    def controller_ids(self) -> list[int]:
        return sorted(self.cluster.controller_ids)

    @property
    def bootstrap_servers(self) -> str:
        """The client proxies (what the brokers advertise)."""
        return ",".join(self._links[f"client->{i}"].listen for i in self.node_ids)

    @property
    def direct_bootstrap_servers(self) -> str:
        """The brokers' own ports, past every proxy: for observers, not for the workload."""
        return self.cluster.bootstrap_servers

    @property
    def admin_urls(self) -> dict[int, str]:
        return self.cluster.admin_urls

    @property
    def api(self) -> ToxiproxyClient:
        if self._api is None:
            raise RuntimeError("the chaos cluster is not started")
        return self._api

    @property
    def toxiproxy_url(self) -> str:
        return self.api.url

    def links(
        self,
        *,
        src: int | str | None = None,
        dst: int | None = None,
        kind: str | Collection[str] | None = None,
    ) -> list[Link]:
        kinds = {kind} if isinstance(kind, str) else set(kind) if kind is not None else None
        return [
            link
            for link in self._links.values()
            if (src is None or link.src == src)
            and (dst is None or link.dst == dst)
            and (kinds is None or link.kind in kinds)
        ]

    def link(self, name: str) -> Link:
        return self._links[name]

    def toxiproxy(self) -> Any:
        """The real `toxiproxy-python` client pointed at this cluster's server (a test
        dependency; its address lives on a class, so it points every client in the process
        there)."""
        from urllib.parse import urlsplit

        from toxiproxy import Toxiproxy

        parts = urlsplit(self.api.url)
        client = Toxiproxy()
        client.update_api_consumer(parts.hostname, parts.port)
        return client

    # ------------------------------------------------------------ observation

    def partition_leader(self, topic: str, partition: int) -> int | None:
        return observe.partition_leader(self.cluster, topic, partition)

    def partition_view(self, topic: str, partition: int) -> observe.PartitionView | None:
        """The freshest view of a partition (leader, epoch, replicas, ISR) any node has."""
        return observe.freshest(observe.partition_views(self.cluster, topic, partition))

    def active_controller(self) -> int | None:
        return observe.active_controller(self.cluster)

    def group_coordinator(self, group: str) -> int | None:
        return observe.group_coordinator(self.cluster, group)

    # ------------------------------------------------------------ toxics

    def inject(self, fault: Recoverable) -> Injected:
        """Inject `fault` now; the handle heals it (`heal()`, or as a context manager at the
        end of the block, even when the block fails)."""
        fault.inject(self)
        return Injected(self, fault)

    def add_toxic(
        self,
        link: Link,
        name: str,
        toxic_type: str,
        stream: str,
        attributes: Mapping[str, int],
        toxicity: float = 1.0,
    ) -> None:
        self.api.add_toxic(link.proxy, name, toxic_type, stream, dict(attributes), toxicity)

    def remove_toxic(self, link: Link, name: str) -> None:
        self.api.remove_toxic(link.proxy, name)

    def reset_connections(self, links: Collection[Link]) -> None:
        """Close every live connection of these links (the proxy stops listening and listens
        again on the same address); a dialler sees its connection drop and dials anew."""
        for link in links:
            self.api.set_enabled(link.proxy, False)
        for link in links:
            self.api.set_enabled(link.proxy, True)

    def heal_all(self) -> None:
        """Remove every toxic from every link, enable every proxy and resume every paused
        node. Best effort on each item, so one failure does not leave the rest broken; the
        first error is raised at the end."""
        first: BaseException | None = None
        if self._api is not None:
            proxies: dict[str, dict[str, Any]] = {}
            try:
                proxies = self._api.proxies()
            except (OSError, ToxiproxyError) as e:
                first = e
            for link in self._links.values():
                state = proxies.get(link.proxy)
                if state is None:
                    continue
                try:
                    for toxic in state.get("toxics") or []:
                        self._api.remove_toxic(link.proxy, toxic["name"])
                    if not state.get("enabled", True):
                        self._api.set_enabled(link.proxy, True)
                except (OSError, ToxiproxyError) as e:
                    first = first or e
        for node in self.cluster.nodes.values():
            node.resume()
        if first is not None:
            raise first

    # ------------------------------------------------------------ lifecycle

    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> None:
        """Route (see `route`), then start every node that is not running (see
        `LocalCluster.start`)."""
        self.route()
        self.cluster.start(wait, timeout)

    def route(self) -> None:
        """Create the proxies and point the nodes' configs at them (once; `start` does it)."""
        if self._api is not None:
            return
        url = self._url or self._server.enter_context(toxiproxy_url_context())
        self._api = ToxiproxyClient(url)
        try:
            self._create_links()
        except BaseException:
            self.unroute()
            raise

    def _create_links(self) -> None:
        nodes = self.cluster.nodes
        voters = set(self.cluster.controller_ids)
        for j, node in nodes.items():
            self._add(Link(f"client->{j}", CLIENT, j, "client"), node.kafka_port)
        for i in nodes:
            props = {}
            for j, peer in nodes.items():
                if i == j:
                    if i in voters:
                        # The controller addresses replace the bootstrap list, so every voter
                        # needs one; a node reaches its own controller directly.
                        props[f"kraft.peer.controller.{j}.address"] = (
                            f"127.0.0.1:{peer.controller_port}"
                        )
                    continue
                broker = self._add(Link(f"{i}->{j}/broker", i, j, "broker"), peer.kafka_port)
                props[f"kraft.peer.broker.{j}.address"] = broker.listen
                if j in voters:
                    controller = self._add(
                        Link(f"{i}->{j}/controller", i, j, "controller"), peer.controller_port
                    )
                    props[f"kraft.peer.controller.{j}.address"] = controller.listen
                    if i in voters:
                        raft = self._add(Link(f"{i}->{j}/raft", i, j, "raft"), peer.raft_port)
                        props[f"kraft.peer.raft.{j}.address"] = raft.listen
            props["advertised.listeners"] = f"PLAINTEXT://{self._links[f'client->{i}'].listen}"
            self.cluster.configure(i, props)
        logger.info(
            "chaos cluster %s: %d links through toxiproxy at %s",
            self._prefix,
            len(self._links),
            self.api.url,
        )

    def _add(self, link: Link, port: int) -> Link:
        name = f"{self._prefix}.{link.kind}.{link.src}-{link.dst}"
        upstream = f"127.0.0.1:{port}"
        listen = self.api.create_proxy(name, upstream)
        routed = Link(link.name, link.src, link.dst, link.kind, name, listen, upstream)
        self._links[link.name] = routed
        return routed

    def _remove_proxies(self) -> None:
        if self._api is None:
            return
        for link in list(self._links.values()):
            with contextlib.suppress(OSError, ToxiproxyError):
                self._api.delete_proxy(link.proxy)
        self._links.clear()

    def unroute(self) -> None:
        """Remove the proxies and stop the Toxiproxy server if this cluster started it (the
        nodes are left alone: stop them first)."""
        self._remove_proxies()
        self._api = None
        self._server.close()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Heal everything, stop the nodes (SIGTERM, then SIGKILL after `timeout`), then
        `unroute`."""
        try:
            try:
                self.heal_all()
            finally:
                self.cluster.stop(timeout)
        finally:
            self.unroute()

    def kill(self) -> None:
        """Heal, kill -9 every node, `unroute`: the quick teardown for tests."""
        try:
            try:
                self.heal_all()
            finally:
                self.cluster.kill_all()
        finally:
            self.unroute()

    def __enter__(self) -> ChaosCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
