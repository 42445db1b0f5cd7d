"""`kraft chaos toxiproxy --listen HOST:PORT`: run the Toxiproxy-compatible server.

Prints `toxiproxy API listening on HOST:PORT` (the bound port, for `--listen 127.0.0.1:0`) once
it serves, and stops on SIGINT or SIGTERM, closing every proxy and connection first.
Exit codes: 0 stopped by a signal, 1 the address cannot be bound, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "chaos", help="chaos tools: a Toxiproxy-compatible server for network faults"
    )
    tools = p.add_subparsers(dest="chaos_command", required=True)
    t = tools.add_parser("toxiproxy", help="serve Toxiproxy's HTTP API and its TCP proxies")
    t.add_argument(
        "--listen", default="127.0.0.1:8474", help="HOST:PORT of the HTTP API (default %(default)s)"
    )
    t.add_argument("--seed", type=int, help="seed for toxicity rolls and jitter")
    t.add_argument("--log-level", default="INFO")
    t.set_defaults(run=_run_toxiproxy)


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
