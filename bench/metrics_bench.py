"""What metrics cost the produce path: produce_consume.py's produce case (acks=all,
idempotence off; 100 B by default, the most requests per byte) on one kraft node, with
`/metrics` scraped every second and not, in alternating rounds; optionally also on a node of
another source tree (e.g. main, without the instrumentation), in the same rotation so drift
of the machine hits every variant alike.

Each variant has its own node (`kraft serve` child, its own data dir), started once; every
round produces to a fresh one-partition topic. Prints a table of the medians, then one JSON
line with every figure (the ratios are medians of per-round ratios).

    python bench/metrics_bench.py [--rounds N] [--count N] [--size B] [--baseline /work/main]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from produce_consume import produce

from kraft.launcher import LocalCluster, free_ports, process

# The tree this bench belongs to: its node runs these sources, whichever kraft the script
# itself imported (an editable install may point elsewhere).
OWN_TREE = str(Path(__file__).resolve().parent.parent)

SCRAPE_INTERVAL_S = 1.0


class Scraper:
    """GET /metrics every second on a thread, until stopped; counts the scrapes."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.scrapes = 0
        self.bytes = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    self.bytes += len(response.read())
                self.scrapes += 1
                self._stop.wait(SCRAPE_INTERVAL_S)
        except OSError as e:  # refused, reset, an HTTP error status
            self.error = e

    @contextlib.contextmanager
    def running(self) -> Iterator[Scraper]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
        if self.error is not None or not self.scrapes:
            raise SystemExit(f"scraping {self.url} failed: {self.error or 'no scrape'}")


@contextlib.contextmanager
def node(tree: str, root: Path, admin_port: int | None) -> Iterator[LocalCluster]:
    """One node whose `kraft serve` runs the sources of `tree` (the launcher starts the
    child on the tree named by `process.KRAFT_ROOT` when it spawns it)."""
    extra = {"kraft.admin.listener": f"127.0.0.1:{admin_port}"} if admin_port else {}
    cluster = LocalCluster(root, 1, extra=extra, serve_args=("--log-level", "WARNING"))
    default = process.KRAFT_ROOT
    process.KRAFT_ROOT = str(Path(tree).resolve())
    try:
        cluster.start()
    finally:
        process.KRAFT_ROOT = default
    try:
        yield cluster
    finally:
        cluster.stop(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=4_000_000, help="messages per round")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
    parser.add_argument("--baseline", help="another source tree (e.g. /work/main) to compare")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="kraft-metrics-bench-"))
    (admin_port,) = free_ports(1)
    mb_s: dict[str, list[float]] = {"unscraped": [], "scraped": []}
    if args.baseline:
        mb_s["baseline"] = []
    scrapes = 0
    try:
        with contextlib.ExitStack() as stack:
            nodes = {"instrumented": stack.enter_context(node(OWN_TREE, data / "own", admin_port))}
            if args.baseline:
                nodes["baseline"] = stack.enter_context(
                    node(args.baseline, data / "baseline", None)
                )
            admins = {
                k: AdminClient({"bootstrap.servers": n.bootstrap_servers}) for k, n in nodes.items()
            }
            for r in range(args.rounds):
                variants = list(mb_s)
                # Alternate the order too: the first of a round must not always be the same.
                if r % 2:
                    variants.reverse()
                for variant in variants:
                    which = "baseline" if variant == "baseline" else "instrumented"
                    bootstrap = nodes[which].bootstrap_servers
                    topic = f"bench-{variant}-{r}"
                    for f in admins[which].create_topics([NewTopic(topic, 1, 1)]).values():
                        f.result()
                    if variant == "scraped":
                        with Scraper(admin_port).running() as scraper:
                            elapsed = produce(bootstrap, topic, args.size, args.count, False)
                        scrapes += scraper.scrapes
                    else:
                        elapsed = produce(bootstrap, topic, args.size, args.count, False)
                    mb_s[variant].append(round(args.size * args.count / 1e6 / elapsed, 1))
                    # Disk space: the round's data is not needed any more.
                    for f in admins[which].delete_topics([topic]).values():
                        f.result()
                print(f"round {r}: " + ", ".join(f"{v} {mb_s[v][-1]} MB/s" for v in mb_s))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    results: dict[str, Any] = {
        "rounds": args.rounds,
        "count": args.count,
        "size": args.size,
        "scrapes": scrapes,
        "mb_s": mb_s,
        "median_mb_s": {v: statistics.median(xs) for v, xs in mb_s.items()},
        "scraped_vs_unscraped": round(
            statistics.median(
                s / u for s, u in zip(mb_s["scraped"], mb_s["unscraped"], strict=True)
            ),
            3,
        ),
    }
    if args.baseline:
        results["instrumented_vs_baseline"] = round(
            statistics.median(
                u / b for u, b in zip(mb_s["unscraped"], mb_s["baseline"], strict=True)
            ),
            3,
        )
    for variant, value in results["median_mb_s"].items():
        print(f"{variant:<12}{value:>10.1f} MB/s (median of {args.rounds})")
    print(f"scraped/unscraped: {results['scraped_vs_unscraped']}")
    if args.baseline:
        print(f"instrumented/baseline: {results['instrumented_vs_baseline']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
