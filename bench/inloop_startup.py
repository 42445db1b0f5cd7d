"""Start-up of the in-loop node (kraft.embedded.node): from entering `async with
kraft.embedded.node()` to the first produce acknowledged (aiokafka on the same loop, acks=all,
to a topic the produce auto-creates — what a service or a test does first).

    python bench/inloop_startup.py [--runs N] [--cold N]

warm  N nodes one after the other in this process (kraft and aiokafka already imported, as in
      a service that imports them at start-up): entry → started, entry → first produce.
cold  N fresh interpreters (`python -c`, this tree's sources), each timing its imports of
      kraft.embedded and aiokafka, then entry → first produce of its one node: what a
      short-lived script pays. Imports cost ~0.25 s with bytecode caches (an installed
      wheel has them) and ~0.45 s where none are written (PYTHONDONTWRITEBYTECODE=1 in this
      repository's sessions: every import compiles net/protocol/_generated.py again); the
      JSON's `dont_write_bytecode` says which.

Prints a table of medians, then one JSON line with every figure. `time_to_first_produce()`
is the measurement itself, for other benches (bench/startup_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

import kraft.embedded
from kraft.embedded.inloop import ConfigValue

OWN_TREE = str(Path(__file__).resolve().parent.parent)
TOPIC = "startup"


async def time_to_first_produce(
    config: Mapping[str, ConfigValue] | None = None,
) -> tuple[float, float]:
    """(entry → node started, entry → first produce acknowledged), in seconds, for one
    in-loop node started and stopped on the running loop."""
    start = time.perf_counter()
    async with kraft.embedded.node(config) as node:
        started = time.perf_counter() - start
        producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(TOPIC, b"first")
            produced = time.perf_counter() - start
        finally:
            await producer.stop()
    return started, produced


async def _warm(runs: int) -> list[tuple[float, float]]:
    return [await time_to_first_produce() for _ in range(runs)]


_COLD = """
import time
t0 = time.perf_counter()
import kraft.embedded, aiokafka
imported = time.perf_counter() - t0
import asyncio, json, sys
sys.path.insert(0, {bench!r})
from inloop_startup import time_to_first_produce
started, produced = asyncio.run(time_to_first_produce())
print(json.dumps({{"import_s": imported, "started_s": started, "produce_s": produced}}))
"""


def _cold(runs: int) -> list[dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": OWN_TREE}
    code = _COLD.format(bench=str(Path(__file__).resolve().parent))
    out = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=OWN_TREE,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="warm runs (default 20)")
    parser.add_argument("--cold", type=int, default=10, help="cold runs (default 10; 0: none)")
    args = parser.parse_args()
    warm = asyncio.run(_warm(args.runs))
    results: dict[str, Any] = {
        "dont_write_bytecode": bool(sys.flags.dont_write_bytecode),
        "warm_runs": len(warm),
        "warm_started_median_s": statistics.median(s for s, _ in warm),
        "warm_first_produce_median_s": statistics.median(p for _, p in warm),
        "warm_first_produce_max_s": max(p for _, p in warm),
    }
    rows = [
        ("warm", len(warm), "entry → started", results["warm_started_median_s"]),
        ("warm", len(warm), "entry → first produce", results["warm_first_produce_median_s"]),
    ]
    if args.cold:
        cold = _cold(args.cold)
        results["cold_runs"] = len(cold)
        for key in ("import_s", "started_s", "produce_s"):
            results[f"cold_{key[:-2]}_median_s"] = statistics.median(c[key] for c in cold)
        rows += [
            ("cold", len(cold), "imports", results["cold_import_median_s"]),
            ("cold", len(cold), "entry → first produce", results["cold_produce_median_s"]),
        ]
    for kind, runs, what, median in rows:
        print(f"{kind} ({runs} runs, median): {what:<22} {median:.4f} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
