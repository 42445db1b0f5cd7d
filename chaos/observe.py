"""Who leads what, seen from outside a cluster under faults: partition leaders, the active
controller, group coordinators.

Every question goes to the nodes' own (direct, never proxied) Kafka and controller ports, so a
fault on the proxies does not blind the observer. During a fault nodes disagree (an isolated
leader still believes it leads), so each helper asks every live, unpaused node at once with a
short timeout and keeps the freshest answer: the highest leader epoch or Raft term. A node that
is down, paused or slow simply does not answer in time.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from kraft.launcher import TRANSIENT, LocalCluster, describe_quorum_request, request
from kraft.net.protocol import (
    DescribeQuorumResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    MetadataRequest,
    MetadataResponse,
)

T = TypeVar("T")

QUERY_TIMEOUT_S = 1.0
OFFSETS_TOPIC = "__consumer_offsets"


@dataclass(frozen=True)
class PartitionView:
    """One node's view of a partition."""

    leader: int  # -1: none
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def _ask_all(
    cluster: LocalCluster, ports: dict[int, int], ask: Callable[[int, int], T | None]
) -> dict[int, T]:
    """`ask(node_id, port)` on every live, unpaused node in `ports` at once; the answers that
    came (errors and timeouts count as no answer)."""
    live = {
        i: port
        for i, port in ports.items()
        if port and cluster.nodes[i].alive and not cluster.nodes[i].paused
    }
    if not live:
        return {}

    def attempt(item: tuple[int, int]) -> tuple[int, T | None]:
        try:
            return item[0], ask(*item)
        except TRANSIENT:
            return item[0], None

    with ThreadPoolExecutor(max_workers=len(live)) as pool:
        results = list(pool.map(attempt, live.items()))
    return {i: answer for i, answer in results if answer is not None}


def partition_views(
    cluster: LocalCluster, topic: str, partition: int, timeout: float = QUERY_TIMEOUT_S
) -> dict[int, PartitionView]:
    """Each answering broker's view of `topic`-`partition`."""

    def ask(_node: int, port: int) -> PartitionView | None:
        response = request(
            port,
            MetadataRequest(
                topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                allow_auto_topic_creation=False,
            ),
            timeout,
        )
        assert isinstance(response, MetadataResponse)
        for t in response.topics:
            if t.name != topic or t.error_code:
                continue
            for p in t.partitions:
                if p.partition_index == partition and not p.error_code:
                    return PartitionView(
                        p.leader_id, p.leader_epoch, tuple(p.replica_nodes), tuple(p.isr_nodes)
                    )
        return None

    return _ask_all(cluster, {i: n.kafka_port for i, n in cluster.nodes.items()}, ask)


def freshest(views: dict[int, PartitionView]) -> PartitionView | None:
    """The view with the highest leader epoch (ties: any), or None."""
    return max(views.values(), key=lambda v: v.leader_epoch, default=None)


def partition_leader(
    cluster: LocalCluster, topic: str, partition: int, timeout: float = QUERY_TIMEOUT_S
) -> int | None:
    """The leader in the freshest view any node has, or None (no leader, or nobody knows)."""
    view = freshest(partition_views(cluster, topic, partition, timeout))
    return view.leader if view is not None and view.leader >= 0 else None


def active_controller(cluster: LocalCluster, timeout: float = QUERY_TIMEOUT_S) -> int | None:
    """The controller that answers DescribeQuorum as the quorum leader in the highest term
    (a deposed leader cut off from the others may still answer in its old term)."""

    def ask(node_id: int, port: int) -> int | None:
        response = request(port, describe_quorum_request(), timeout)
        assert isinstance(response, DescribeQuorumResponse)
        if response.error_code or not response.topics:
            return None
        state = response.topics[0].partitions[0]
        if state.error_code or state.leader_id != node_id:
            return None
        return state.leader_epoch

    terms = _ask_all(cluster, {i: n.controller_port for i, n in cluster.nodes.items()}, ask)
    return max(terms, key=lambda i: terms[i], default=None)


def java_string_hash(s: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    raw = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(raw), 2):
        h = (31 * h + ((raw[i] << 8) | raw[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def group_partition(group: str, partitions: int) -> int:
    """Kafka's `__consumer_offsets` partition of a group: Utils.abs(hashCode) % partitions."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def group_coordinator(
    cluster: LocalCluster, group: str, timeout: float = QUERY_TIMEOUT_S
) -> int | None:
    """The leader of the group's `__consumer_offsets` partition (the coordinator), from the
    freshest view; before that topic exists, what FindCoordinator answers (which creates it)."""

    def count(_node: int, port: int) -> int | None:
        response = request(
            port,
            MetadataRequest(
                topics=[MetadataRequest.MetadataRequestTopic(name=OFFSETS_TOPIC)],
                allow_auto_topic_creation=False,
            ),
            timeout,
        )
        assert isinstance(response, MetadataResponse)
        found = [t for t in response.topics if t.name == OFFSETS_TOPIC and not t.error_code]
        return len(found[0].partitions) if found and found[0].partitions else None

    kafka_ports = {i: n.kafka_port for i, n in cluster.nodes.items()}
    counts = _ask_all(cluster, kafka_ports, count)
    if counts:
        return partition_leader(
            cluster, OFFSETS_TOPIC, group_partition(group, max(counts.values())), timeout
        )

    def find(_node: int, port: int) -> int | None:
        response = request(
            port, FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), timeout
        )
        assert isinstance(response, FindCoordinatorResponse)
        if response.coordinators:
            answer = response.coordinators[0]
            return answer.node_id if not answer.error_code else None
        return response.node_id if not response.error_code else None

    found = _ask_all(cluster, kafka_ports, find)
    return min(found.values(), default=None)
