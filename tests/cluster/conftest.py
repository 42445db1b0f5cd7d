"""A cluster of real `kraft serve` processes on 127.0.0.1, for process tests.

Every node is a child process of its own (own session), so a test can kill -9 any one of them
and start it again on the same data dir. The configs are the files `kraft up` writes
(`kraft.up.write_configs`), on free ports, with a test's extra keys appended (a later key wins).
Requests are raw Kafka requests through `net.client.KafkaConnection`, each on a fresh
connection and bounded in time, so asking a dead node costs a refused connect, never a hang.
Waits poll with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import functools
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from kraft.net.client import KafkaConnection
from kraft.net.protocol import (
    CreateTopicsRequest,
    CreateTopicsResponse,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    Message,
    MetadataRequest,
    MetadataResponse,
)
from kraft.up import NodeSpec, write_configs

T = TypeVar("T")

METADATA_TOPIC = "__cluster_metadata"
READY_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.02
# Errors a poll treats as "not yet": the node is down, starting, or closed the connection.
TRANSIENT = (OSError, ConnectionError, TimeoutError, EOFError)


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


def poll_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL_S,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """The first truthy result of `probe`, polled until `timeout` seconds; transient network
    errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except TRANSIENT as e:
            last = e
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.1f} s waiting for {what}: {last!r}\n{extra}"
            )
        time.sleep(interval)


def call(port: int, message: Message, timeout: float = REQUEST_TIMEOUT_S) -> Message:
    """One request on a fresh connection to 127.0.0.1:`port`, bounded by `timeout`."""

    async def run() -> Message:
        conn = KafkaConnection("127.0.0.1", port, client_id="cluster-test")
        try:
            async with asyncio.timeout(timeout):
                await conn.connect()
                return await conn.request(message)
        finally:
            await conn.close()

    return asyncio.run(run())


def describe_quorum_request() -> DescribeQuorumRequest:
    return DescribeQuorumRequest(
        topics=[
            DescribeQuorumRequest.TopicData(
                topic_name=METADATA_TOPIC,
                partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)],
            )
        ]
    )


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


class ClusterNode:
    """One `kraft serve` child; its data dir survives kills and restarts."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.node_id = spec.node_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(spec.directory) / "node.log"
        self.starts = 0

    @property
    def kafka_port(self) -> int:
        return self.spec.kafka_port

    @property
    def controller_port(self) -> int:
        return self.spec.controller_port

    @property
    def raft_port(self) -> int:
        return self.spec.raft_port

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process; `wait_ready` waits for its ready line."""
        assert not self.alive, f"node {self.node_id} is already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- test harness: start #{self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kraft.cli", "serve", "--config", self.spec.config_path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                # faulthandler: `diagnose` gets every thread's stack out of a stuck node.
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
                start_new_session=True,  # a kill -9 here hits this node only
                bufsize=0,  # unbuffered: select() sees the ready line
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the node prints its ready line (it is registered and unfenced)."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        started = time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        if b"ready" not in line:
            raise AssertionError(
                f"node {self.node_id} (pid {proc.pid}) not ready after "
                f"{time.monotonic() - started:.1f} s (exit {proc.poll()}, said {line!r}, "
                f"{self._pipe_check()})\n{self.diagnose()}"
            )

    def _pipe_check(self) -> str:
        """Whether our end of the stdout pipe is still the pipe the child writes to."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        try:
            ours = os.fstat(proc.stdout.fileno()).st_ino
            theirs = os.stat(f"/proc/{proc.pid}/fd/1").st_ino
        except (OSError, ValueError) as e:
            return f"pipe check: {e}"
        return f"pipe inode ours {ours} / child's {theirs}"

    def diagnose(self) -> str:
        """For a node that stopped making progress: where each thread waits in the kernel,
        then every thread's Python stack (SIGABRT makes faulthandler print them to the log;
        the node dies), then the log's tail."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return self.log_tail()
        waits = []
        for task in sorted(Path(f"/proc/{proc.pid}/task").glob("*")):
            try:
                comm = (task / "comm").read_text().strip()
                state = (task / "stat").read_text().rsplit(") ", 1)[1].split()[0]
                wchan = (task / "wchan").read_text().strip()
            except OSError:
                continue
            waits.append(f"  thread {task.name} {comm}: state {state}, wchan {wchan}")
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return f"---- node {self.node_id} threads\n" + "\n".join(waits) + "\n" + self.log_tail(80)

    def pause(self) -> None:
        """SIGSTOP: every thread of the node freezes (a hung process, not a dead one)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.proc = None

    def terminate(self) -> None:
        """SIGTERM: a clean stop (controlled shutdown first); `wait_exit` reaps it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after `timeout` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(node {self.node_id}: no log)"
        return f"---- node {self.node_id} log (last {lines} lines)\n" + "\n".join(text[-lines:])


class Cluster:
    """`size` combined nodes (broker + controller), then `brokers` broker-only nodes (ids
    size+1...), like `kraft up --nodes size --brokers brokers`."""

    def __init__(
        self, root: Path, size: int = 3, extra: dict[str, str] | None = None, brokers: int = 0
    ) -> None:
        self.root = root
        ports = free_ports(3 * size + brokers)
        specs = [
            NodeSpec(
                i,
                ports[3 * (i - 1)],
                ports[3 * (i - 1) + 1],
                ports[3 * (i - 1) + 2],
                str(root / f"node-{i}"),
            )
            for i in range(1, size + 1)
        ]
        broker_specs = [
            NodeSpec(size + 1 + k, ports[3 * size + k], 0, 0, str(root / f"node-{size + 1 + k}"))
            for k in range(brokers)
        ]
        self.cluster_id = uuid.uuid4().hex[:22]
        write_configs(
            specs, self.cluster_id, "cluster test secret " + uuid.uuid4().hex, broker_specs
        )
        specs += broker_specs
        for spec in specs:
            with open(spec.config_path, "a") as f:
                f.write("# test overrides\n")
                f.write("".join(f"{k}={v}\n" for k, v in (extra or {}).items()))
        self.nodes = {spec.node_id: ClusterNode(spec) for spec in specs}

    # ------------------------------------------------------------ processes

    def start(self, wait: bool = True) -> None:
        for node in self.nodes.values():
            if not node.alive:
                node.start()
        if wait:
            deadline = time.monotonic() + READY_TIMEOUT_S
            try:
                for node in self.nodes.values():
                    node.wait_ready(max(0.1, deadline - time.monotonic()))
            except AssertionError as e:
                others = [n.diagnose() for n in self.nodes.values() if n.alive]
                raise AssertionError("\n".join([str(e), *others])) from None

    def alive_ids(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.alive]

    def kill(self, node_id: int) -> None:
        self.nodes[node_id].kill()

    def pause(self, node_id: int) -> None:
        self.nodes[node_id].pause()

    def resume(self, node_id: int) -> None:
        self.nodes[node_id].resume()

    def kill_all(self) -> None:
        for node in self.nodes.values():
            node.kill()

    def logs(self, lines: int = 40) -> str:
        return "\n".join(n.log_tail(lines) for n in self.nodes.values())

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.kafka_port}" for n in self.nodes.values())

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
