"""Requests from a broker to the active controller (Kafka's NodeToControllerChannelManager).

The broker knows the controllers' endpoints (`controller.quorum.bootstrap.servers`), not which
one is active: it keeps a connection to the one that last answered, and on NOT_CONTROLLER or
a broken connection tries the next. Every request is bounded by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from kraft.net.client import KafkaConnection
from kraft.net.protocol import ErrorCode, Message, ProtocolError

logger = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.05


class ControllerUnavailable(Exception):
    pass


def is_not_controller(response: Message) -> bool:
    """Top-level NOT_CONTROLLER, or every item of the response's first list carrying it."""
    if getattr(response, "error_code", 0) == ErrorCode.NOT_CONTROLLER:
        return True
    for name in ("topics", "responses", "results"):
        items = getattr(response, name, None)
        if items:
            return all(getattr(i, "error_code", 0) == ErrorCode.NOT_CONTROLLER for i in items)
    return False


class ControllerChannel:
    def __init__(self, endpoints: Sequence[tuple[str, int]], tag: str = "") -> None:
        if not endpoints:
            raise ValueError("no controller endpoints")
        self.endpoints = list(endpoints)
        self.tag = tag
        self._index = 0
        self._conn: KafkaConnection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> KafkaConnection:
        if self._conn is not None and self._conn.connected:
            return self._conn
        host, port = self.endpoints[self._index]
        conn = KafkaConnection(host, port, client_id="kraft-broker")
        await conn.connect()
        self._conn = conn
        return conn

    async def _next(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self._index = (self._index + 1) % len(self.endpoints)

    async def send(self, message: Message, version: int | None = None) -> Message:
        """Send to the active controller, retrying others until the caller's timeout."""
        api_key = type(message).API_KEY
        assert api_key is not None
        while True:
            async with self._lock:
                answer: Message | None = None
                try:
                    conn = await self._connection()
                    v = conn.version_for(api_key) if version is None else version
                    answer = await conn.send(message, v)
                except (OSError, ConnectionError, ProtocolError) as e:
                    logger.debug("%scontroller %s: %s", self.tag, self.endpoints[self._index], e)
                    await self._next()
                if answer is not None and is_not_controller(answer):
                    await self._next()
                    answer = None
            if answer is not None:
                return answer
            await asyncio.sleep(RETRY_BACKOFF_S)

    async def skip(self) -> None:
        """Give up on the current controller (it stopped answering, e.g. hung): the next
        send tries the next one."""
        async with self._lock:
            await self._next()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
