"""A cluster of real `kraft serve` processes on 127.0.0.1, for process tests: a thin layer
over `kraft.launcher.LocalCluster` with the requests the tests make.

Every node is a child process of its own (own session), so a test can kill -9 any one of them
and start it again on the same data dir. The configs are the launcher's (`kraft up`'s), on free
ports, with a test's extra keys appended (a later key wins). Requests are raw Kafka requests
(`kraft.launcher.request`), each on a fresh connection and bounded in time, so asking a dead
node costs a refused connect, never a hang. Waits poll with a deadline; nothing sleeps to
synchronise.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from kraft.launcher import (
    METADATA_TOPIC,
    LaunchError,
    LocalCluster,
    NodeProcess,
    describe_quorum_request,
    free_ports,
    poll_until,
    request,
)
from kraft.net.protocol import (
    CreateTopicsRequest,
    CreateTopicsResponse,
    DescribeQuorumResponse,
    Message,
    MetadataRequest,
    MetadataResponse,
)

__all__ = [
    "METADATA_TOPIC",
    "ClusterNode",
    "describe_quorum_request",
    "free_ports",
    "poll_until",
]

READY_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 5.0
# Errors a poll treats as "not yet": the node is down, starting, or closed the connection.
TRANSIENT = (OSError, ConnectionError, TimeoutError, EOFError)

# One `kraft serve` child: the launcher's.
ClusterNode = NodeProcess


def call(port: int, message: Message, timeout: float = REQUEST_TIMEOUT_S) -> Message:
    """One request on a fresh connection to 127.0.0.1:`port`, bounded by `timeout`."""
    return request(port, message, timeout)


def create_topics_request(
    topics: dict[str, tuple[int, int]], timeout_ms: int = 5000
) -> CreateTopicsRequest:
    """CreateTopics for {name: (partitions, replication factor)}."""
    return CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(
                name=name, num_partitions=partitions, replication_factor=rf
            )
            for name, (partitions, rf) in topics.items()
        ],
        timeout_ms=timeout_ms,
    )


class Cluster:
    """`size` combined nodes (broker + controller), then `brokers` broker-only nodes (ids
    size+1...), like `kraft up --nodes size --brokers brokers`."""

    def __init__(
        self, root: Path, size: int = 3, extra: dict[str, str] | None = None, brokers: int = 0
    ) -> None:
        self.root = root
        self.local = LocalCluster(root, size, brokers, extra=extra)
        self.cluster_id = self.local.cluster_id
        self.nodes: dict[int, NodeProcess] = self.local.nodes

    # ------------------------------------------------------------ processes

    def start(self, wait: bool = True) -> None:
        """Start the nodes that are not running; with `wait`, until each prints its ready
        line (on failure: the others' threads and logs)."""
        self.local.start(wait=False)
        if wait:
            deadline = time.monotonic() + READY_TIMEOUT_S
            try:
                for node in self.nodes.values():
                    if node.proc is not None:
                        node.wait_ready(max(0.1, deadline - time.monotonic()))
            except LaunchError as e:
                others = [n.diagnose() for n in self.nodes.values() if n.alive]
                raise AssertionError("\n".join([str(e), *others])) from None

    def pause(self, node_id: int) -> None:
        """SIGSTOP one node."""
        self.local.pause(node_id)

    def resume(self, node_id: int) -> None:
        """SIGCONT one node paused by `pause`."""
        self.local.resume(node_id)

    def alive_ids(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.alive]

    def kill(self, node_id: int) -> None:
        self.local.kill(node_id)

    def kill_all(self) -> None:
        self.local.kill_all()

    def logs(self, lines: int = 40) -> str:
        return self.local.logs(lines)

    @property
    def bootstrap_servers(self) -> str:
        return self.local.bootstrap_servers

    # ------------------------------------------------------------ requests

    def metadata(
        self, node_id: int, topics: list[str] | None = None, timeout: float = REQUEST_TIMEOUT_S
    ) -> MetadataResponse:
        request = MetadataRequest(
            topics=None
            if topics is None
            else [MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False,
        )
        response = call(self.nodes[node_id].kafka_port, request, timeout)
        assert isinstance(response, MetadataResponse)
        return response

    def broker_ids(self, node_id: int) -> set[int]:
        return {b.node_id for b in self.metadata(node_id, topics=[]).brokers}

    def describe_quorum(
        self, node_id: int, timeout: float = REQUEST_TIMEOUT_S
    ) -> DescribeQuorumResponse:
        response = call(self.nodes[node_id].controller_port, describe_quorum_request(), timeout)
        assert isinstance(response, DescribeQuorumResponse)
        return response

    def active_controller(self, among: Iterable[int] | None = None) -> int | None:
        """The node that answers DescribeQuorum as the leader (only the active controller
        does), or None."""
        for node_id in among if among is not None else self.alive_ids():
            if not self.nodes[node_id].alive or not self.nodes[node_id].controller_port:
                continue
            try:
                response = self.describe_quorum(node_id, timeout=1.0)
            except TRANSIENT:
                continue
            if response.error_code == 0 and response.topics:
                leader = response.topics[0].partitions[0].leader_id
                if leader == node_id:
                    return leader
        return None

    def wait_active_controller(self, timeout: float = 15.0) -> int:
        return poll_until(
            self.active_controller, timeout, "an active controller", on_timeout=self.logs
        )

    def create_topics(
        self,
        node_id: int,
        topics: dict[str, tuple[int, int]],
        timeout_ms: int = 5000,
        timeout: float | None = None,
    ) -> list[CreateTopicsResponse.CreatableTopicResult]:
        response = call(
            self.nodes[node_id].kafka_port,
            create_topics_request(topics, timeout_ms),
            timeout if timeout is not None else timeout_ms / 1000 + 5,
        )
        assert isinstance(response, CreateTopicsResponse)
        return list(response.topics)

    def create_topic(self, node_id: int, name: str, partitions: int, rf: int) -> uuid.UUID:
        """Create one topic and insist it worked; its topic id."""
        (result,) = self.create_topics(node_id, {name: (partitions, rf)})
        assert result.error_code == 0, f"CreateTopics {name}: {result}\n{self.logs()}"
        return result.topic_id

    def _lists_brokers(self, node_id: int, want: set[int]) -> bool:
        return self.broker_ids(node_id) == want

    def _has_topic(self, node_id: int, name: str) -> bool:
        response = self.metadata(node_id, [name])
        return any(t.name == name and t.error_code == 0 for t in response.topics)

    def wait_brokers(self, want: set[int], on: Iterable[int], timeout: float = 15.0) -> None:
        """Until the Metadata of every node in `on` lists exactly the brokers `want`."""
        for node_id in on:
            poll_until(
                functools.partial(self._lists_brokers, node_id, want),
                timeout,
                f"node {node_id}'s Metadata to list brokers {sorted(want)}",
                on_timeout=self.logs,
            )

    def wait_topic(self, name: str, on: Iterable[int], timeout: float = 10.0) -> None:
        for node_id in on:
            poll_until(
                functools.partial(self._has_topic, node_id, name),
                timeout,
                f"topic {name} in node {node_id}'s Metadata",
                on_timeout=self.logs,
            )


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`make_cluster(extra={...}, start=True)`: a 3-node cluster, killed at teardown."""
    made: list[Cluster] = []

    def make(
        extra: dict[str, str] | None = None, start: bool = True, size: int = 3, brokers: int = 0
    ) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(made)}", size, extra, brokers)
        made.append(cluster)
        if start:
            cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.kill_all()
