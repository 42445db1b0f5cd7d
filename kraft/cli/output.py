"""Output and exit codes shared by the client commands: tables for people, `--json` for
programs, and one place that turns errors into a message on stderr and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from .kafka_admin import CliError, KafkaAdmin, NotFound, Unreachable

EXIT_OK = 0
EXIT_CLUSTER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4


class UsageError(CliError):
    """Arguments argparse accepts but that do not make sense together."""


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-server",
        default="127.0.0.1:9092",
        help="host:port[,host:port...] of brokers to bootstrap from (default 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a broker to connect or answer (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [[str(h) for h in headers]] + [
        ["-" if v is None else str(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def fail(message: str, code: int) -> int:
    print(f"kraft: {message}", file=sys.stderr, flush=True)
    return code


def run(
    args: argparse.Namespace, command: Callable[[KafkaAdmin, argparse.Namespace], Awaitable[int]]
) -> int:
    """Connect to the cluster, run one command, map its errors to an exit code."""

    async def go() -> int:
        async with KafkaAdmin(args.bootstrap_server, args.timeout) as admin:
            return await command(admin, args)

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader went away (`kraft consume ... | head`): stop quietly, and keep Python's
        # final flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as e:
        return fail(str(e), EXIT_USAGE)
    except ValueError as e:
        return fail(str(e), EXIT_USAGE)
    except Unreachable as e:
        return fail(str(e), EXIT_UNREACHABLE)
    except NotFound as e:
        return fail(str(e), EXIT_NOT_FOUND)
    except CliError as e:
        return fail(str(e), EXIT_CLUSTER_ERROR)
