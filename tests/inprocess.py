"""A single broker+controller node on the test's own event loop, bound to 127.0.0.1 with
port-0 listeners: for tests that drive a real node in-process (with aiokafka, which shares
the loop, or raw requests). The embedded API (kraft.embedded.node) runs it; tests of the node's
internals get the node assembly itself."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from kraft.embedded.inloop import EmbeddedNode
from kraft.node import Node


@contextlib.asynccontextmanager
async def running_node(directory: Path, **extra: str) -> AsyncIterator[Node]:
    """Started on entry, stopped on exit, its logs under `directory`; `extra` keys override
    the embedded node's defaults."""
    async with EmbeddedNode({"log.dirs": str(directory / "logs"), **extra}) as embedded:
        yield embedded.node
