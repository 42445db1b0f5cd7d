"""`kraft up`: a whole local cluster of combined nodes (plus, with `--brokers`, broker-only
nodes) as child processes on 127.0.0.1.

Layout of the data dir (reused by the next `kraft up` on the same dir, data included)::

    DIR/cluster.json            written once the cluster is ready (removed on stop)
    DIR/node-<id>/server.properties
    DIR/node-<id>/data/         the node's log dir
    DIR/node-<id>/node.log      its log output

Ports from --base-port P: node i serves Kafka on P+i-1, its controller listener on P+100+i-1
and its Raft transport on P+200+i-1. Broker-only nodes are numbered after the combined ones
and have only the Kafka port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kraft.net.client import KafkaConnection
from kraft.net.protocol import MetadataRequest, MetadataResponse

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


@dataclass(slots=True)
class NodeSpec:
    node_id: int
    kafka_port: int
    controller_port: int
    raft_port: int
    directory: str

    @property
    def config_path(self) -> str:
        return os.path.join(self.directory, "server.properties")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"


def plan(nodes: int, data_dir: str, base_port: int, brokers: int = 0) -> list[NodeSpec]:
    """Combined nodes 1..nodes, then broker-only nodes (controller and Raft ports 0)."""
    return [
        NodeSpec(
            i,
            base_port + i - 1,
            base_port + 100 + i - 1 if i <= nodes else 0,
            base_port + 200 + i - 1 if i <= nodes else 0,
            os.path.join(data_dir, f"node-{i}"),
        )
        for i in range(1, nodes + brokers + 1)
    ]


def _kept(data_dir: str, name: str, make: str) -> str:
    """A value generated on the first `kraft up` of a dir and reused after."""
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make + "\n")
    return make


def write_configs(
    specs: list[NodeSpec], cluster_id: str, secret: str, brokers: Sequence[NodeSpec] = ()
) -> None:
    """Configs of combined nodes `specs` and of broker-only nodes `brokers` (which follow the
    metadata from the combined nodes' controllers)."""
    voters = ",".join(f"{s.node_id}@127.0.0.1:{s.raft_port}" for s in specs)
    controllers = ",".join(f"127.0.0.1:{s.controller_port}" for s in specs)
    replication = min(3, len(specs) + len(brokers))
    for spec in [*specs, *brokers]:
        os.makedirs(spec.directory, exist_ok=True)
        combined = spec not in brokers
        listeners = f"PLAINTEXT://127.0.0.1:{spec.kafka_port}"
        props = {
            "node.id": str(spec.node_id),
            "process.roles": "broker,controller" if combined else "broker",
            "cluster.id": cluster_id,
            "listeners": listeners
            + (f",CONTROLLER://127.0.0.1:{spec.controller_port}" if combined else ""),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{spec.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": voters,
            "controller.quorum.bootstrap.servers": controllers,
            # The Raft transport's secret: controllers only.
            **({"kraft.cluster.secret": secret} if combined else {}),
            "log.dirs": os.path.join(spec.directory, "data"),
            "default.replication.factor": str(replication),
            "offsets.topic.replication.factor": str(replication),
            "min.insync.replicas": "1",
            # Test setups start groups at once (Kafka's default waits 3 s).
            "group.initial.rebalance.delay.ms": "0",
        }
        with open(spec.config_path, "w") as f:
            f.write("# written by `kraft up`\n")
            f.write("".join(f"{k}={v}\n" for k, v in props.items()))


def _open_log(spec: NodeSpec) -> Any:
    return open(os.path.join(spec.directory, "node.log"), "ab")  # noqa: SIM115


class LocalCluster:
    def __init__(self, nodes: int, data_dir: str, base_port: int, brokers: int = 0) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.specs = plan(nodes, self.data_dir, base_port, brokers)
        self.nodes = nodes
        self.procs: dict[int, asyncio.subprocess.Process] = {}

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(s.bootstrap for s in self.specs)

    async def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        write_configs(
            self.specs[: self.nodes],
            _kept(self.data_dir, "cluster.id", uuid.uuid4().hex[:22]),
            _kept(self.data_dir, "cluster.secret", secrets.token_hex(16)),
            self.specs[self.nodes :],
        )
        for spec in self.specs:
            log = _open_log(spec)
            self.procs[spec.node_id] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kraft.cli",
                "serve",
                "--config",
                spec.config_path,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches `kraft up`, which stops the nodes
            )
            log.close()
        async with asyncio.timeout(READY_TIMEOUT_S):
            await asyncio.gather(*(self._wait_ready(s) for s in self.specs))
            await self._wait_all_brokers()
        self._write_cluster_json()

    async def _wait_ready(self, spec: NodeSpec) -> None:
        proc = self.procs[spec.node_id]
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(
                f"node {spec.node_id} exited before it was ready; see {spec.directory}/node.log"
            )

    async def _wait_all_brokers(self) -> None:
        """Every node's Metadata lists every broker: the quorum has a leader and all are
        registered and unfenced."""
        want = {s.node_id for s in self.specs}
        for spec in self.specs:
            while True:
                conn = KafkaConnection("127.0.0.1", spec.kafka_port)
                try:
                    await conn.connect()
                    response = await conn.request(MetadataRequest(topics=[]))
                    assert isinstance(response, MetadataResponse)
                    if {b.node_id for b in response.brokers} == want:
                        break
                except (OSError, ConnectionError):
                    pass
                finally:
                    await conn.close()
                await asyncio.sleep(0.05)

    def _write_cluster_json(self) -> None:
        info: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "nodes": [
                {
                    "id": s.node_id,
                    "kafka": s.bootstrap,
                    "controller": f"127.0.0.1:{s.controller_port}" if s.controller_port else None,
                    "pid": self.procs[s.node_id].pid,
                }
                for s in self.specs
            ],
        }
        tmp = os.path.join(self.data_dir, "cluster.json.tmp")
        with open(tmp, "w") as f:
            json.dump(info, f, indent=2)
        os.replace(tmp, os.path.join(self.data_dir, "cluster.json"))

    async def stop(self) -> None:
        try:
            os.unlink(os.path.join(self.data_dir, "cluster.json"))
        except FileNotFoundError:
            pass
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for node_id, proc in self.procs.items():
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                logger.warning("node %d did not stop in 30 s: killing it", node_id)
                proc.kill()
                await proc.wait()
        self.procs.clear()


async def run_up(nodes: int, data_dir: str, base_port: int, brokers: int = 0) -> int:
    cluster = LocalCluster(nodes, data_dir, base_port, brokers)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(cluster.start())
        waiting = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            starting.cancel()
            return 130
        waiting.cancel()
        starting.result()
    except (RuntimeError, TimeoutError) as e:
        print(f"kraft up: the cluster did not become ready: {e}", file=sys.stderr)
        await cluster.stop()
        return 1
    print(f"kraft cluster ready: {nodes} node(s)" + (f", {brokers} broker-only" if brokers else ""))
    print(f"bootstrap servers: {cluster.bootstrap_servers}")
    print(f"cluster file: {os.path.join(cluster.data_dir, 'cluster.json')}", flush=True)
    await stop.wait()
    print("stopping the cluster", flush=True)
    await cluster.stop()
    return 0
