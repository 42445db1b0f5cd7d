"""A single broker+controller node on the test's own event loop, bound to 127.0.0.1 with
port-0 listeners: for tests that drive a real node in-process (with aiokafka, which shares
the loop, or raw requests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from kraft.config import build_config
from kraft.node import Node

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def running_node(directory: Path, **extra: str) -> AsyncIterator[Node]:
    """Started on entry, stopped on exit; `extra` keys override the defaults."""
    props = {
        "node.id": "1",
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://{HOST}:0,CONTROLLER://{HOST}:0",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.voters": f"1@{HOST}:0",
        "log.dirs": str(directory / "logs"),
        "num.partitions": "1",
        **extra,
    }
    node = Node(build_config(props))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
