"""Start-up time of an embedded kraft: from `kraft.Cluster(...)` entry to the first successful
produce (confluent-kafka, acks=all, to a topic the produce auto-creates), for 1 and 3 nodes,
and for the in-loop node (`kraft.embedded.node`) when it is installed. Also the resident
memory (RSS, from /proc) of each idle node process.

    python bench/startup_bench.py [--runs 10] [--nodes 1,3] [--skip-in-loop]

Each run starts a fresh cluster (a new temporary data dir) and stops it afterwards; the stop
is not timed. Targets (issue 12): 1 node <= 1 s, 3 nodes <= 2.5 s, in-loop node <= 0.3 s.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from kraft import Cluster

TOPIC = "startup-bench"
PRODUCE_TIMEOUT_S = 30.0


def produce_once(bootstrap: str) -> None:
    """One record with acks=all, until it is acknowledged (or the deadline passes)."""
    delivered: list[KafkaError | None] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        delivered.append(err)

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "log_level": 3}
    )
    producer.produce(TOPIC, b"first", on_delivery=on_delivery)
    deadline = time.monotonic() + PRODUCE_TIMEOUT_S
    while not delivered and time.monotonic() < deadline:
        producer.poll(0.01)
    if not delivered or delivered[0] is not None:
        raise RuntimeError(f"first produce to {bootstrap} failed: {delivered or 'timeout'}")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def bench_cluster(nodes: int, runs: int) -> dict[str, Any]:
    ready: list[float] = []
    first_produce: list[float] = []
    rss: list[int] = []
    for _ in range(runs):
        entered = time.monotonic()
        with Cluster(nodes=nodes) as cluster:
            started = time.monotonic()
            produce_once(cluster.bootstrap_servers)
            produced = time.monotonic()
            rss.extend(rss_kib(n.pid) for n in cluster.nodes if n.pid is not None)
        ready.append(started - entered)
        first_produce.append(produced - entered)
    return {
        "nodes": nodes,
        "runs": runs,
        "ready_s": summary(ready),
        "first_produce_s": summary(first_produce),
        "idle_node_rss_mib": summary([r / 1024 for r in rss]),
    }


def bench_in_loop(runs: int) -> dict[str, Any] | None:
    """The in-loop node: `kraft.embedded.node` entry to the first produce. Its import (the
    node's modules, which a Cluster's node processes load in their own start-up) is timed
    apart; RSS growth is this process's, import included."""
    before = rss_kib(os.getpid())
    imported = time.monotonic()
    try:
        from kraft.embedded import node as embedded_node
    except ImportError:
        return None  # kraft.embedded.node is not in this tree
    import_s = time.monotonic() - imported
    start_fn: Callable[..., Any] = embedded_node

    async def one() -> float:
        entered = time.monotonic()
        async with start_fn({}) as n:
            await asyncio.to_thread(produce_once, n.bootstrap_servers)
            return time.monotonic() - entered

    times = [asyncio.run(one()) for _ in range(runs)]
    return {
        "runs": runs,
        "import_s": round(import_s, 4),
        "first_produce_s": summary(times),
        "first_run_s": round(times[0], 4),
        "process_rss_growth_mib": round((rss_kib(os.getpid()) - before) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--nodes", default="1,3", help="comma-separated cluster sizes")
    parser.add_argument("--skip-in-loop", action="store_true")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"bench": "startup", "runs": args.runs, "clusters": []}
    for nodes in (int(n) for n in args.nodes.split(",")):
        figures = bench_cluster(nodes, args.runs)
        result["clusters"].append(figures)
        print(
            f"{nodes} node(s): first produce median {figures['first_produce_s']['median']:.3f} s "
            f"(min {figures['first_produce_s']['min']:.3f}, "
            f"max {figures['first_produce_s']['max']:.3f}); ready "
            f"{figures['ready_s']['median']:.3f} s; idle RSS per node "
            f"{figures['idle_node_rss_mib']['median']:.1f} MiB",
            flush=True,
        )
    in_loop = None if args.skip_in_loop else bench_in_loop(args.runs)
    result["in_loop_node"] = in_loop
    if in_loop is None:
        print("in-loop node: kraft.embedded.node not available (skipped)")
    else:
        print(
            f"in-loop node: first produce median {in_loop['first_produce_s']['median']:.3f} s "
            f"(first run {in_loop['first_run_s']:.3f} s; import {in_loop['import_s']:.3f} s "
            f"before it; process RSS +{in_loop['process_rss_growth_mib']:.1f} MiB)"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
