"""The cluster the benches run: three combined `kraft serve` child processes on 127.0.0.1.

Configs are the files `kraft up` writes (`kraft.up.write_configs`) on free ports, with a
bench's extra keys appended (a later key wins). Each node runs in a session of its own, so a
kill -9 hits that node only; its stderr goes to `node.log` in its directory. The benches are
run as scripts (`python bench/X.py`), which puts this directory on `sys.path`.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kraft.net.client import KafkaConnection
from kraft.net.protocol import DescribeQuorumRequest, Message, ProtocolError
from kraft.up import NodeSpec, write_configs

T = TypeVar("T")

NODES = 3
# Errors a poll treats as "not yet": the node is down, starting, or closed the connection.
TRANSIENT = (OSError, ConnectionError, TimeoutError, ProtocolError, EOFError)


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


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def poll(probe: Callable[[], T | None], limit_s: float, what: str, every: float = 0.02) -> T:
    """The first truthy result of `probe`, polled every `every` seconds for up to `limit_s`;
    transient network errors and client exceptions count as "not yet"."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            result = probe()
            if result:
                return result
        except (*TRANSIENT, KafkaException):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit_s} s waiting for {what}")
        time.sleep(every)


def request(port: int, message: Message, limit_s: float, client_id: str) -> Message:
    """One request on a fresh connection to 127.0.0.1:`port`, bounded by `limit_s`."""

    async def run() -> Message:
        conn = KafkaConnection("127.0.0.1", port, client_id=client_id)
        try:
            async with asyncio.timeout(limit_s):
                await conn.connect()
                return await conn.request(message)
        finally:
            await conn.close()

    return asyncio.run(run())


def describe_quorum() -> DescribeQuorumRequest:
    return DescribeQuorumRequest(
        topics=[
            DescribeQuorumRequest.TopicData(
                topic_name="__cluster_metadata",
                partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)],
            )
        ]
    )


def node_specs(root: Path, extra: dict[str, str]) -> list[NodeSpec]:
    """Configs of `NODES` combined nodes under `root` (node i in `root/n<i>`), on free
    ports, with `extra` appended to each."""
    ports = free_ports(3 * NODES)
    specs = [
        NodeSpec(i, ports[3 * i - 3], ports[3 * i - 2], ports[3 * i - 1], str(root / f"n{i}"))
        for i in range(1, NODES + 1)
    ]
    write_configs(specs, uuid.uuid4().hex[:22], uuid.uuid4().hex)
    if extra:
        for spec in specs:
            with open(spec.config_path, "a") as f:
                f.write("".join(f"{k}={v}\n" for k, v in extra.items()))
    return specs


class BenchNode:
    """One `kraft serve` child process."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(os.path.join(self.spec.directory, "node.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kraft.cli", "serve", "--config", self.spec.config_path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                bufsize=0,  # unbuffered: select() sees the ready line
            )

    def wait_ready(self, limit_s: float = 60.0) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], limit_s)
        if not ready or b"ready" not in self.proc.stdout.readline():
            raise RuntimeError(f"node {self.spec.node_id} did not start; see its node.log")

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.proc = None


class BenchCluster:
    """`NODES` combined nodes and a confluent-kafka admin client on them; each bench adds
    the requests it times."""

    def __init__(self, root: Path, extra: dict[str, str]) -> None:
        specs = node_specs(root, extra)
        self.nodes = {s.node_id: BenchNode(s) for s in specs}
        self.bootstrap = ",".join(s.bootstrap for s in specs)
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill()
