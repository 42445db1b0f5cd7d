"""The cluster the benches run: three combined `kraft serve` child processes on 127.0.0.1,
through `kraft.launcher` (the configs `kraft up` writes, on free ports, with a bench's extra
keys appended). Each node runs in a session of its own, so a kill -9 hits that node only; its
stderr goes to `node.log` in its directory. The benches are run as scripts
(`python bench/X.py`), which puts this directory on `sys.path`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kraft.launcher import LocalCluster, NodeProcess, NodeSpec, describe_quorum_request
from kraft.net.client import KafkaConnection
from kraft.net.protocol import DescribeQuorumRequest, Message, ProtocolError

T = TypeVar("T")

NODES = 3
# Errors a poll treats as "not yet": the node is down, starting, or closed the connection.
TRANSIENT = (OSError, ConnectionError, TimeoutError, ProtocolError, EOFError)


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
    return describe_quorum_request()


def node_specs(root: Path, extra: dict[str, str]) -> list[NodeSpec]:
    """Configs of `NODES` combined nodes under `root` (node i in `root/node-<i>`), on free
    ports, with `extra` appended to each."""
    return LocalCluster(root, NODES, extra=extra).specs


# One `kraft serve` child process: the launcher's.
BenchNode = NodeProcess


class BenchCluster:
    """`NODES` combined nodes and a confluent-kafka admin client on them; each bench adds
    the requests it times."""

    def __init__(self, root: Path, extra: dict[str, str]) -> None:
        self.local = LocalCluster(root, NODES, extra=extra)
        self.nodes = self.local.nodes
        self.bootstrap = self.local.bootstrap_servers
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def start(self) -> None:
        """Every node ready (its ready line), as the benches always waited."""
        self.local.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready()

    def stop(self) -> None:
        self.local.kill_all()
