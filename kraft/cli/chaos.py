"""`kraft chaos ...`: the chaos suite's commands.

- `kraft chaos run --scenario NAME --seed S --duration D [--out DIR]`: one run and its report
  directory (verdict.json, history.jsonl, index.html); exit code 0 valid, 1 invalid.
- `kraft chaos list`: the scenarios.
- `kraft chaos campaign --runs N [--scenarios A B ...] [--duration D] [--out DIR]`: many seeded
  runs across scenarios and their summary table; exit code 0 when every run is valid.
- `kraft chaos toxiproxy --listen HOST:PORT`: run the Toxiproxy-compatible server.

The toxiproxy server prints `toxiproxy API listening on HOST:PORT` (the bound port, for
`--listen 127.0.0.1:0`) once it serves, and stops on SIGINT or SIGTERM, closing every proxy and
connection first. Exit codes: 0 stopped by a signal, 1 the address cannot be bound, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "chaos", help="chaos suite: faulted runs with a consistency checker; a toxiproxy server"
    )
    tools = p.add_subparsers(dest="chaos_command", required=True)
    r = tools.add_parser("run", help="one chaos run: workload, fault, checker, HTML report")
    r.add_argument("--scenario", required=True, help="a name `kraft chaos list` prints")
    r.add_argument("--seed", type=int, default=1, help="picks the fault's target and timing")
    r.add_argument(
        "--duration", type=float, default=60.0, help="steady + impact + recovery, in seconds"
    )
    r.add_argument("--out", help="report directory (default chaos-reports/NAME-SEED)")
    r.set_defaults(run=_run_one)
    ls = tools.add_parser("list", help="the scenarios")
    ls.set_defaults(run=_list)
    c = tools.add_parser("campaign", help="many seeded runs across scenarios, summarised")
    c.add_argument("--runs", type=int, required=True, help="runs in all (round-robin)")
    c.add_argument("--scenarios", nargs="+", help="scenario names (default: all)")
    c.add_argument("--duration", type=float, default=30.0, help="per run, in seconds")
    c.add_argument("--first-seed", type=int, default=1)
    c.add_argument("--out", default="chaos-reports/campaign", help="(default %(default)s)")
    c.set_defaults(run=_run_campaign)
    t = tools.add_parser("toxiproxy", help="serve Toxiproxy's HTTP API and its TCP proxies")
    t.add_argument(
        "--listen", default="127.0.0.1:8474", help="HOST:PORT of the HTTP API (default %(default)s)"
    )
    t.add_argument("--seed", type=int, help="seed for toxicity rolls and jitter")
    t.add_argument("--log-level", default="INFO")
    t.set_defaults(run=_run_toxiproxy)


def _quiet_clients() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # kafka-python logs every connection at INFO: the run's own lines are what a user reads.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def _run_one(args: argparse.Namespace) -> int:
    from kraft.chaos.runner import run, summary_line
    from kraft.chaos.scenarios import SCENARIOS

    if args.scenario not in SCENARIOS:
        print(f"kraft: no scenario {args.scenario!r}; see `kraft chaos list`", file=sys.stderr)
        return 2
    if args.duration <= 0:
        print("kraft: --duration must be positive", file=sys.stderr)
        return 2
    _quiet_clients()
    out = Path(args.out or f"chaos-reports/{args.scenario}-{args.seed}")
    result = run(SCENARIOS[args.scenario], args.seed, args.duration, out)
    print(summary_line(result))
    print(result.verdict.describe())
    print(f"report: {out / 'index.html'}")
    return 0 if result.valid else 1


def _list(args: argparse.Namespace) -> int:
    from kraft.chaos.scenarios import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for name, scenario in SCENARIOS.items():
        print(f"{name:<{width}}  {scenario.description}")
    return 0


def _run_campaign(args: argparse.Namespace) -> int:
    from kraft.chaos.campaign import campaign, table
    from kraft.chaos.runner import summary_line
    from kraft.chaos.scenarios import SCENARIOS

    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or args.runs < 1 or args.duration <= 0:
        print(
            f"kraft: unknown scenarios {unknown}" if unknown else "kraft: bad --runs/--duration",
            file=sys.stderr,
        )
        return 2
    _quiet_clients()
    rows = campaign(
        [SCENARIOS[n] for n in names],
        args.runs,
        args.duration,
        Path(args.out),
        first_seed=args.first_seed,
        progress=lambda result: print(summary_line(result), flush=True),
    )
    print(table(rows))
    return 0 if all(r.valid for row in rows for r in row.results) else 1


def _run_toxiproxy(args: argparse.Namespace) -> int:
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        print(f"kraft: --listen {args.listen!r}: expected HOST:PORT", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(_serve(host.strip("[]"), int(port), args.seed))
    except OSError as e:
        print(f"kraft: toxiproxy: {e}", file=sys.stderr)
        return 1
    return 0


async def _serve(host: str, port: int, seed: int | None) -> None:
    # Imported here so the other commands never load aiohttp's server side.
    from kraft.chaos.toxiproxy import ToxiproxyServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = ToxiproxyServer(host, port, seed)
    await server.start()
    try:
        print(f"toxiproxy API listening on {server.address}", flush=True)
        await stop.wait()
    finally:
        await server.stop()
