"""`kraft storage`: format a node's log dirs, as Kafka's `kafka-storage.sh`.

    kraft storage random-uuid                          print a new cluster id
    kraft storage format -t ID -c CONFIG [--ignore-formatted]
    kraft storage info -c CONFIG

`format` writes `meta.properties` (cluster.id, node.id, version=1, a directory.id) in each of
the config's `log.dirs` and its `metadata.log.dir`; a dir already formatted is an error unless
`--ignore-formatted`. `info` shows each dir's `meta.properties` and the problems found.
Exit codes: 0 success, 1 a dir is formatted already / a problem was found, 2 usage or an
invalid config or cluster id.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "storage", help="format a node's log dirs (Kafka's kafka-storage.sh)"
    )
    tools = p.add_subparsers(dest="storage_command", required=True)
    uuid = tools.add_parser("random-uuid", help="print a new random cluster id")
    uuid.set_defaults(run=_random_uuid)
    fmt = tools.add_parser("format", help="write meta.properties in every log dir of CONFIG")
    fmt.add_argument("-t", "--cluster-id", required=True, help="the cluster id (random-uuid)")
    fmt.add_argument("-c", "--config", required=True, help="the node's server.properties")
    fmt.add_argument(
        "-g",
        "--ignore-formatted",
        action="store_true",
        help="leave dirs already formatted as they are and format the others",
    )
    fmt.set_defaults(run=_format)
    info = tools.add_parser("info", help="show the meta.properties of CONFIG's log dirs")
    info.add_argument("-c", "--config", required=True, help="the node's server.properties")
    info.set_defaults(run=_info)


def _random_uuid(args: argparse.Namespace) -> int:
    from kraft.storage import random_uuid

    print(random_uuid())
    return 0


def _format(args: argparse.Namespace) -> int:
    from kraft.config import ConfigError, load_config
    from kraft.storage import StorageError, check_uuid, format_dirs

    try:
        check_uuid(args.cluster_id)
        config = load_config(args.config)
    except (ConfigError, ValueError) as e:
        print(f"kraft storage: {e}", file=sys.stderr)
        return 2
    try:
        formatted = format_dirs(config, args.cluster_id, args.ignore_formatted)
    except (StorageError, OSError) as e:
        print(f"kraft storage: {e}", file=sys.stderr)
        return 1
    if not formatted:
        print("All of the log directories are already formatted.")
    for directory in formatted:
        print(f"Formatting {directory} for cluster {args.cluster_id}, node {config.node_id}.")
    return 0


def _info(args: argparse.Namespace) -> int:
    from kraft.config import ConfigError, load_config
    from kraft.storage import describe

    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"kraft storage: {e}", file=sys.stderr)
        return 2
    lines, problems = describe(config)
    print("Found log directories:")
    print("".join(f"  {d}\n" for d in config.all_log_dirs))
    if lines:
        print("Found metadata:")
        print("".join(f"  {line}\n" for line in lines))
    if problems:
        print(f"Found problem{'s' if len(problems) > 1 else ''}:")
        print("".join(f"  {p}\n" for p in problems), end="")
        return 1
    return 0
