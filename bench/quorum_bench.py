"""Control-plane figures of a 3-node cluster: metadata writes, propagation, failover, start-up.

    python bench/quorum_bench.py [--dir D] [--propagation N] [--failovers N] [--up-runs N]

Runs its own cluster of three combined nodes (`kraft serve` child processes on 127.0.0.1,
configs from `kraft.launcher.write_configs`, free ports) in a temporary directory under D (default:
the system's temp dir), removed at the end with every process it started. Phases:

  propagation   N single-partition topics, one CreateTopics each, sent to the nodes in turn;
                from each acknowledgement until every node's Metadata lists the topic, with all
                three nodes polled back to back on open connections (p50, p99).
  failover      N times: kill -9 the active controller, then until (a) a survivor answers
                DescribeQuorum as the new leader and (b) a CreateTopics sent to a survivor
                succeeds, both from the kill (p50, max); the killed node then restarts and
                rejoins before the next trial.
  create        partitions per second through a client, end to end (acknowledged after the
                quorum committed): topics of 250 RF=1 partitions, one per request; single-
                partition topics one per request, from one client and from 16 concurrent
                clients; and 100 single-partition topics per request.
  kraft up      `kraft up --nodes 3` on a fresh dir until it prints that the cluster is ready,
                then SIGTERM until it exits (p50 of each over N runs).

A table, then as the last line one JSON object with every figure. Targets: create >= 500
partitions/s (bulk), propagation p99 <= 100 ms, failover p50 <= 1 s, kraft up ready <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from _cluster import NODES, TRANSIENT, describe_quorum, node_specs, percentile

from kraft.launcher import NodeProcess, NodeSpec, node_command
from kraft.net.client import KafkaConnection
from kraft.net.protocol import (
    CreateTopicsRequest,
    CreateTopicsResponse,
    DescribeQuorumResponse,
    Message,
    MetadataRequest,
    MetadataResponse,
)

T = TypeVar("T")

READY_TIMEOUT_S = 60.0
TARGETS = {
    "create_partitions_per_s": 500.0,
    "propagation_p99_ms": 100.0,
    "failover_leader_p50_s": 1.0,
    "kraft_up_ready_p50_s": 3.0,
}


class Connections:
    """One open connection per port, reopened after any failure."""

    def __init__(self) -> None:
        self._conns: dict[int, KafkaConnection] = {}

    async def request(self, port: int, message: Message, limit_s: float = 5.0) -> Message:
        conn = self._conns.get(port)
        try:
            async with asyncio.timeout(limit_s):
                if conn is None or not conn.connected:
                    conn = KafkaConnection("127.0.0.1", port, client_id="quorum-bench")
                    self._conns[port] = conn
                    await conn.connect()
                return await conn.request(message)
        except BaseException:
            await self.drop(port)
            raise

    async def drop(self, port: int) -> None:
        conn = self._conns.pop(port, None)
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        for port in list(self._conns):
            await self.drop(port)


class BenchNode:
    """The launcher's node process, driven from this bench's event loop."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.process = NodeProcess(spec)

    async def start(self) -> None:
        self.process.start()

    async def wait_ready(self) -> None:
        await asyncio.to_thread(self.process.wait_ready, READY_TIMEOUT_S)

    async def kill(self) -> None:
        self.process.kill()

    @property
    def alive(self) -> bool:
        return self.process.alive


class BenchCluster:
    def __init__(self, root: Path) -> None:
        self.nodes = {s.node_id: BenchNode(s) for s in node_specs(root, {})}
        self.conns = Connections()

    async def start(self) -> None:
        for node in self.nodes.values():
            await node.start()
        await asyncio.gather(*(n.wait_ready() for n in self.nodes.values()))

    async def stop(self) -> None:
        await self.conns.close()
        for node in self.nodes.values():
            await node.kill()

    def kafka_port(self, node_id: int) -> int:
        return self.nodes[node_id].spec.kafka_port

    async def leader_of(self, node_id: int) -> int | None:
        """`node_id` if it answers DescribeQuorum as the active controller."""
        port = self.nodes[node_id].spec.controller_port
        response = await self.conns.request(port, describe_quorum(), limit_s=1.0)
        assert isinstance(response, DescribeQuorumResponse)
        if response.error_code or not response.topics:
            return None
        leader = response.topics[0].partitions[0].leader_id
        return leader if leader == node_id else None

    async def active_controller(self, among: list[int], limit_s: float = 20.0) -> int:
        async def probe() -> int | None:
            for n in among:
                try:
                    if await self.leader_of(n) is not None:
                        return n
                except TRANSIENT:
                    pass
            return None

        return await poll(probe, limit_s, "an active controller")

    async def create(
        self,
        node_id: int,
        topics: dict[str, int],
        limit_s: float = 30.0,
        conns: Connections | None = None,
    ) -> CreateTopicsResponse:
        """CreateTopics of RF=1 topics {name: partitions}; raises unless all succeed."""
        request = CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(
                    name=name, num_partitions=partitions, replication_factor=1
                )
                for name, partitions in topics.items()
            ],
            timeout_ms=int(limit_s * 1000),
        )
        via = conns if conns is not None else self.conns
        response = await via.request(self.kafka_port(node_id), request, limit_s + 5)
        assert isinstance(response, CreateTopicsResponse)
        failed = [t for t in response.topics if t.error_code]
        if failed:
            raise RuntimeError(f"CreateTopics failed: {failed[:3]}")
        return response

    async def has_topic(self, node_id: int, name: str) -> bool:
        request = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name=name)],
            allow_auto_topic_creation=False,
        )
        response = await self.conns.request(self.kafka_port(node_id), request)
        assert isinstance(response, MetadataResponse)
        return any(t.name == name and t.error_code == 0 for t in response.topics)

    async def broker_count(self, node_id: int) -> int:
        request = MetadataRequest(topics=[], allow_auto_topic_creation=False)
        response = await self.conns.request(self.kafka_port(node_id), request)
        assert isinstance(response, MetadataResponse)
        return len(response.brokers)


async def poll(probe: Callable[[], Awaitable[T | None]], limit_s: float, what: str) -> T:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            result = await probe()
            if result:
                return result
        except TRANSIENT:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.002)


# ----------------------------------------------------------------------------- phases


async def bench_propagation(cluster: BenchCluster, count: int) -> dict[str, float]:
    ids = list(cluster.nodes)
    delays: list[float] = []
    for i in range(count):
        name = f"prop-{i}"
        await cluster.create(ids[i % len(ids)], {name: 1})
        acked = time.perf_counter()
        seen = await asyncio.gather(*(_seen(cluster, n, name, acked) for n in ids))
        delays.append(max(seen))
    ms = [d * 1000 for d in delays]
    return {
        "propagation_p50_ms": round(percentile(ms, 50), 2),
        "propagation_p99_ms": round(percentile(ms, 99), 2),
        "propagation_max_ms": round(max(ms), 2),
    }


async def _seen(cluster: BenchCluster, node_id: int, name: str, since: float) -> float:
    """Seconds from `since` until `node_id`'s Metadata lists `name` (polled back to back)."""
    while not await cluster.has_topic(node_id, name):
        if time.perf_counter() - since > 10:
            raise RuntimeError(f"{name} did not reach node {node_id} in 10 s")
    return time.perf_counter() - since


async def bench_failover(cluster: BenchCluster, trials: int) -> dict[str, float]:
    leader_s: list[float] = []
    write_s: list[float] = []
    ids = list(cluster.nodes)
    for trial in range(trials):
        old = await cluster.active_controller(ids)
        survivors = [n for n in ids if n != old]
        await cluster.nodes[old].kill()
        await cluster.conns.drop(cluster.nodes[old].spec.controller_port)
        await cluster.conns.drop(cluster.kafka_port(old))
        killed = time.perf_counter()
        leader, write = await asyncio.gather(
            _new_leader(cluster, survivors, killed),
            _write_ok(cluster, survivors, killed, f"failover-{trial}"),
        )
        leader_s.append(leader)
        write_s.append(write)
        node = cluster.nodes[old]
        await node.start()
        await node.wait_ready()
        await poll(lambda: _all_brokers(cluster), 20.0, f"node {old} to rejoin after trial {trial}")
    return {
        "failover_leader_p50_s": round(statistics.median(leader_s), 3),
        "failover_leader_max_s": round(max(leader_s), 3),
        "failover_write_p50_s": round(statistics.median(write_s), 3),
        "failover_write_max_s": round(max(write_s), 3),
    }


async def _new_leader(cluster: BenchCluster, survivors: list[int], since: float) -> float:
    """Seconds from `since` until a survivor answers DescribeQuorum as the leader."""
    await cluster.active_controller(survivors)
    return time.perf_counter() - since


async def _write_ok(
    cluster: BenchCluster, survivors: list[int], since: float, prefix: str
) -> float:
    """Seconds from `since` until a CreateTopics sent to a survivor succeeds (each attempt a
    new topic; a request in flight through the kill is retried by the survivor itself)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            target = survivors[attempt % len(survivors)]
            await cluster.create(target, {f"{prefix}-{attempt}": 1}, 10.0)
            return time.perf_counter() - since
        except (*TRANSIENT, RuntimeError):
            if time.perf_counter() - since > 30:
                raise
            await asyncio.sleep(0.005)


async def _all_brokers(cluster: BenchCluster) -> bool:
    counts = [await cluster.broker_count(n) for n in cluster.nodes]
    return all(c == NODES for c in counts)


async def bench_create(cluster: BenchCluster) -> dict[str, float]:
    node_ids = list(cluster.nodes)
    out: dict[str, float] = {}

    async def worker(requests: list[dict[str, int]], offset: int, own: bool) -> None:
        conns = Connections() if own else cluster.conns
        try:
            for i, topics in enumerate(requests):
                await cluster.create(node_ids[(offset + i) % len(node_ids)], topics, conns=conns)
        finally:
            if own:
                await conns.close()

    async def timed(label: str, requests: list[dict[str, int]], clients: int = 1) -> None:
        partitions = sum(sum(r.values()) for r in requests)
        started = time.perf_counter()
        await asyncio.gather(
            *(worker(requests[c::clients], c, clients > 1) for c in range(clients))
        )
        elapsed = time.perf_counter() - started
        out[f"{label}_partitions_per_s"] = round(partitions / elapsed, 1)
        out[f"{label}_requests_per_s"] = round(len(requests) / elapsed, 1)

    await timed("bulk", [{f"bulk-{i}": 250} for i in range(8)])
    await timed("single", [{f"single-{i}": 1} for i in range(300)])
    await timed("concurrent", [{f"concurrent-{i}": 1} for i in range(300)], clients=16)
    await timed("batched", [{f"batch-{i}-{j}": 1 for j in range(100)} for i in range(3)])
    out["create_partitions_per_s"] = out["bulk_partitions_per_s"]
    return out


# ----------------------------------------------------------------------------- kraft up


def free_base_port() -> int:
    """A base port P with P..P+2, P+100..P+102 and P+200..P+202 free (kraft up's layout)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000)
        held = []
        try:
            for port in (base + off + i for off in (0, 100, 200) for i in range(NODES)):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no free base port")


async def kraft_up_once(data_dir: Path) -> tuple[float, float]:
    """(seconds until ready, seconds from SIGTERM to exit) of one `kraft up --nodes 3`."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *node_command(
            "up",
            "--nodes",
            str(NODES),
            "--data-dir",
            str(data_dir),
            "--base-port",
            str(free_base_port()),
        ),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pids: list[int] = []
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"kraft up exited before it was ready: see {data_dir}")
                if b"cluster file:" in line:
                    break
        ready = time.perf_counter() - started
        info = json.loads((data_dir / "cluster.json").read_text())
        pids = [int(n["pid"]) for n in info["nodes"]]
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await proc.wait()
        return ready, time.perf_counter() - stopping
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        # The nodes run in sessions of their own: whatever is left of them goes too.
        for pid in pids or serving_under(data_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def serving_under(data_dir: Path) -> list[int]:
    """Pids of `kraft serve` processes whose config lies under `data_dir` (a fresh temporary
    dir of this bench, so they are the ones it started)."""
    marker = str(data_dir).encode() + b"/node-"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"kraft.cli\0serve" in cmdline and marker in cmdline:
                pids.append(int(entry.name))
    return pids


async def bench_kraft_up(root: Path, runs: int) -> dict[str, float]:
    ready: list[float] = []
    stop: list[float] = []
    for i in range(runs):
        r, s = await kraft_up_once(root / f"up-{i}")
        ready.append(r)
        stop.append(s)
    return {
        "kraft_up_ready_p50_s": round(statistics.median(ready), 3),
        "kraft_up_ready_max_s": round(max(ready), 3),
        "kraft_up_stop_p50_s": round(statistics.median(stop), 3),
    }


# ----------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kraft-quorum-bench-", dir=args.dir))
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    cluster = BenchCluster(root / "cluster")
    try:
        started = time.perf_counter()
        await cluster.start()
        results["cluster_start_s"] = round(time.perf_counter() - started, 3)
        await cluster.active_controller(list(cluster.nodes))
        results.update(await bench_propagation(cluster, args.propagation))
        results.update(await bench_failover(cluster, args.failovers))
        results.update(await bench_create(cluster))
        await cluster.stop()
        results.update(await bench_kraft_up(root, args.up_runs))
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> None:
    rows = [
        ("partitions created / s (RF=1, 250 per topic)", "create_partitions_per_s", ">=", 500.0),
        ("  single-partition topics / s (1 per request)", "single_partitions_per_s", "", None),
        (
            "  single-partition topics / s (1 per request, 16 clients)",
            "concurrent_partitions_per_s",
            "",
            None,
        ),
        ("  single-partition topics / s (100 per request)", "batched_partitions_per_s", "", None),
        ("propagation to all nodes p50 (ms)", "propagation_p50_ms", "", None),
        ("propagation to all nodes p99 (ms)", "propagation_p99_ms", "<=", 100.0),
        ("failover: new leader answers p50 (s)", "failover_leader_p50_s", "<=", 1.0),
        ("failover: new leader answers max (s)", "failover_leader_max_s", "", None),
        ("failover: metadata write succeeds p50 (s)", "failover_write_p50_s", "", None),
        ("failover: metadata write succeeds max (s)", "failover_write_max_s", "", None),
        ("kraft up --nodes 3 ready p50 (s)", "kraft_up_ready_p50_s", "<=", 3.0),
        ("kraft up --nodes 3 SIGTERM to exit p50 (s)", "kraft_up_stop_p50_s", "", None),
    ]
    print(f"{'figure':<60}{'value':>12}  target")
    for label, key, op, target in rows:
        value = results.get(key)
        verdict = ""
        if target is not None and isinstance(value, int | float):
            ok = value >= target if op == ">=" else value <= target
            verdict = f"{op} {target:g} {'ok' if ok else 'MISSED'}"
        print(f"{label:<60}{value!s:>12}  {verdict}")
    results["targets_met"] = {
        key: (
            results[key] >= target if key == "create_partitions_per_s" else results[key] <= target
        )
        for key, target in TARGETS.items()
        if key in results
    }
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    parser.add_argument("--propagation", type=int, default=200, help="topics to time")
    parser.add_argument("--failovers", type=int, default=10, help="kill -9 trials")
    parser.add_argument("--up-runs", type=int, default=3, help="`kraft up` runs")
    args = parser.parse_args()
    report(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
