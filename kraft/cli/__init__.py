"""`kraft` command line.

Node commands: `kraft serve --config server.properties` runs one node, `kraft up` a local
cluster, `kraft storage random-uuid|format|info` format a node's log dirs first (as Kafka's
kafka-storage.sh; `kraft serve` without --config, `kraft up` and the launcher format theirs).
Client commands, over the Kafka protocol only (they work against any Kafka-compatible
cluster, Apache Kafka included; see `kafka_admin`): `kraft topics`, `kraft groups`,
`kraft cluster`, `kraft produce`, `kraft consume`, each with Kafka's tool option names
(`--bootstrap-server`, `--topic`, `--describe`...), tables by default and `--json`.
Chaos tools: `kraft chaos toxiproxy` runs a Toxiproxy-compatible server.

Exit codes of the client commands:
    0  success
    1  the cluster answered with an error (e.g. TOPIC_ALREADY_EXISTS, INVALID_CONFIG)
    2  usage: bad or missing arguments
    3  no broker reachable, or no answer, within `--timeout`
    4  unknown topic, partition or group
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from importlib import resources
from typing import TYPE_CHECKING

from kraft.config import ConfigError, load_config

from . import chaos, cluster, consume, groups, produce, storage, topics

if TYPE_CHECKING:
    from kraft.node import Node

logger = logging.getLogger("kraft")

# `kraft serve`'s config without --config: package data (a copy of config/server.properties).
DEFAULT_CONFIG = "server.properties"


def _setup_logging(level: str, node_id: int | None) -> None:
    tag = ""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _serve(node: Node) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    print(
        f"kraft node {node.config.node_id} ready: bootstrap servers {node.bootstrap_servers}",
        flush=True,
    )
    await stop.wait()
    logger.info("shutting down")
    await node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kraft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one node from a server.properties file")
    serve.add_argument(
        "--config",
        default=None,
        help="path of the node's properties file (default: the packaged single-node config, "
        "kraft/server.properties: 127.0.0.1:9092, data in ./data/node-1)",
    )
    serve.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable)",
    )
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--lifeline-fd",
        type=int,
        default=None,
        metavar="FD",
        help="stop when this inherited pipe reads EOF, i.e. when the launcher that started the "
        "node is gone (set by kraft.launcher)",
    )
    up = sub.add_parser("up", help="start a local cluster of combined nodes on 127.0.0.1")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--data-dir", default="./data/cluster", help="where the nodes keep data")
    up.add_argument("--base-port", type=int, default=9092, help="Kafka port of node 1")
    up.add_argument(
        "--brokers", type=int, default=0, help="broker-only nodes besides them (default 0)"
    )
    for family in (topics, groups, cluster, produce, consume, chaos, storage):
        family.add_parser(sub)
    args = parser.parse_args(argv)

    if hasattr(args, "run"):
        code: int = args.run(args)
        return code

    if args.command == "up":
        if args.nodes < 1:
            parser.error("--nodes must be at least 1")
        if args.brokers < 0:
            parser.error("--brokers must not be negative")
        if args.brokers and args.nodes < 2:
            parser.error("--brokers needs --nodes of at least 2 (a quorum to follow)")
        from kraft.up import run_up

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        return run_up(args.nodes, args.data_dir, args.base_port, args.brokers)

    if args.command == "serve":
        if args.lifeline_fd is not None:
            from kraft import lifeline

            lifeline.watch(args.lifeline_fd)
        overrides = {}
        for item in args.override:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"--override {item!r}: expected KEY=VALUE")
            overrides[key.strip()] = value.strip()
        _setup_logging(args.log_level, None)
        try:
            if args.config is None:
                with resources.as_file(resources.files("kraft") / DEFAULT_CONFIG) as path:
                    config = load_config(str(path), overrides)
            else:
                config = load_config(args.config, overrides)
        except ConfigError as e:
            print(f"kraft: invalid configuration: {e}", file=sys.stderr)
            return 2
        logging.getLogger().handlers.clear()
        _setup_logging(args.log_level, config.node_id)
        # Imported here so the client commands never load the node.
        from kraft.allocator import keep_freed_memory
        from kraft.node import Node

        keep_freed_memory()

        try:
            # The packaged config is a quick start: it formats its own dir on first run.
            asyncio.run(_serve(Node(config, auto_format=args.config is None)))
        except ConfigError as e:
            print(f"kraft: invalid configuration: {e}", file=sys.stderr)
            return 2
        except (RuntimeError, OSError) as e:
            print(f"kraft: {e}", file=sys.stderr)
            return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
