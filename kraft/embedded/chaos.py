"""Network faults on a `kraft.Cluster(chaos=True)`: its links run through Toxiproxy proxies
(`kraft.chaos.topology.ChaosCluster`), so a service's tests can cut it off from the cluster,
partition the nodes or slow the network, and check what the service does.

    with kraft.Cluster(nodes=3, chaos=True) as cluster:
        service = MyService(cluster.bootstrap_servers)      # the proxied addresses
        with cluster.cut_clients():                          # healed at the end of the block
            ...                                              # the service cannot reach Kafka
        handle = cluster.latency(200, jitter=50)             # or heal it yourself
        handle.heal()

Clients see only the proxies (`bootstrap_servers`, and the brokers advertise them), so a fault
on the client links reaches every connection a client makes. The cluster's own controls
(`create_topic`, `wait_healthy`, the admin API, `direct_bootstrap_servers`) go straight to the
nodes and keep working through any fault. `stop()` heals everything before it stops the nodes.

kraft.chaos is imported only by a Cluster made with `chaos=True`: plain clusters stay cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from kraft.embedded.settings import ClusterError

if TYPE_CHECKING:
    from kraft.chaos.faults import TargetLike
    from kraft.chaos.topology import ChaosCluster, Injected, Recoverable
    from kraft.launcher import LocalCluster

logger = logging.getLogger(__name__)


def route(local: LocalCluster, toxiproxy_url: str | None) -> ChaosCluster:
    """Proxies for every link of `local` (not started yet), its configs pointed at them; the
    Toxiproxy server is `toxiproxy_url`, else $TOXIPROXY_URL, else ours in a thread."""
    from kraft.chaos.topology import ChaosCluster

    chaos = ChaosCluster.around(local, toxiproxy_url=toxiproxy_url)
    chaos.route()
    return chaos


def heal_quietly(chaos: ChaosCluster) -> None:
    """`heal_all` on the way to a stop: a failure is logged, not raised, so the nodes and the
    proxies are still released (the nodes are stopped next, healed or not)."""
    try:
        chaos.heal_all()
    except Exception as e:  # noqa: BLE001 - teardown goes on; the error is logged
        logger.warning("chaos: healing before stop failed: %s", e)


class ChaosControls:
    """The fault methods of `kraft.Cluster` (a mixin: the Cluster supplies `_chaos_cluster`)."""

    def _chaos_cluster(self) -> ChaosCluster | None:
        raise NotImplementedError

    @property
    def chaos(self) -> ChaosCluster:
        """The `ChaosCluster` behind the faults: every fault of `kraft.chaos.faults`
        (`inject`), the links, the observers (`partition_leader`, `active_controller`).
        ClusterError if the cluster was not made with `chaos=True` or is not running."""
        chaos = self._chaos_cluster()
        if chaos is None:
            raise ClusterError(
                "no chaos on this cluster: make it with kraft.Cluster(..., chaos=True) and start it"
            )
        return chaos

    def inject(self, fault: Recoverable) -> Injected:
        """Inject any recoverable fault of `kraft.chaos.faults`; the handle heals it (`heal()`,
        or at the end of a `with` block, even when the block raised)."""
        return self.chaos.inject(fault)

    def partition(
        self,
        *groups: Collection[TargetLike],
        clients: Collection[TargetLike] = (),
        reset: bool = False,
    ) -> Injected:
        """Nodes in different groups cannot reach each other (replication, controller and
        Raft traffic, both ways); a node in no group is alone. Clients still reach every node
        except those named in `clients`. E.g. `cluster.partition([1], [2, 3])`. The data held
        back is delivered on heal; `reset=True` closes the cut connections instead (what a
        real Toxiproxy does)."""
        from kraft.chaos.faults import Partition

        if not groups:
            raise ValueError("partition needs at least one group of node ids")
        return self.inject(
            Partition([list(g) for g in groups], isolate_clients=clients, reset=reset)
        )

    def latency(
        self,
        ms: int,
        jitter: int = 0,
        *,
        node: TargetLike | None = None,
        kinds: Collection[str] | None = None,
    ) -> Injected:
        """Delay each direction of the links touching `node` (default: every link) of `kinds`
        ("client", "broker", "controller", "raft"; default: all) by `ms` ± `jitter` ms."""
        from kraft.chaos.faults import Latency

        if ms < 0 or jitter < 0:
            raise ValueError(f"latency and jitter must be >= 0 ms, not {ms}, {jitter}")
        return self.inject(Latency(ms, jitter, node=node, kinds=kinds))

    def cut_clients(
        self, nodes: Collection[TargetLike] | None = None, *, reset: bool = False
    ) -> Injected:
        """Clients cannot reach `nodes` (default: any node) while the nodes still reach each
        other: a service's connections stall (no data passes), new ones connect, then stall.
        `reset` as for `partition`."""
        from kraft.chaos.faults import CutClients

        return self.inject(CutClients(nodes, reset=reset))

    def heal(self) -> None:
        """Remove every fault (toxics of every handle) and resume paused nodes."""
        self.chaos.heal_all()
