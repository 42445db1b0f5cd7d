"""Keyed one-shot timers for the group coordinator: session, rebalance and sync deadlines.

Scheduling a key that is already pending replaces it (a heartbeat pushes its member's session
deadline back). `ManualTimer` is the deterministic clock the pure tests drive; `LoopTimer`
runs the same actions on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable, Hashable
from typing import Protocol

logger = logging.getLogger(__name__)

Action = Callable[[], None]


class Timer(Protocol):
    def schedule(self, key: Hashable, delay_ms: int, action: Action) -> None:
        """Run `action` after `delay_ms`, replacing any pending timer of `key`."""
        ...

    def cancel(self, key: Hashable) -> None: ...


class ManualTimer:
    """Time moves only when the test calls `advance`; due actions run in deadline order
    (ties in scheduling order), each with `now()` set to its deadline."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms
        self._heap: list[tuple[int, int, Hashable]] = []
        self._pending: dict[Hashable, tuple[int, int, Action]] = {}
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    def schedule(self, key: Hashable, delay_ms: int, action: Action) -> None:
        deadline = self._now + max(delay_ms, 0)
        seq = next(self._seq)
        self._pending[key] = (deadline, seq, action)
        heapq.heappush(self._heap, (deadline, seq, key))

    def cancel(self, key: Hashable) -> None:
        self._pending.pop(key, None)

    def deadline(self, key: Hashable) -> int | None:
        entry = self._pending.get(key)
        return entry[0] if entry else None

    def advance(self, ms: int) -> None:
        """Move the clock forward by `ms`, running every action that falls due."""
        target = self._now + ms
        while self._heap and self._heap[0][0] <= target:
            deadline, seq, key = heapq.heappop(self._heap)
            entry = self._pending.get(key)
            if entry is None or entry[1] != seq:
                continue  # cancelled or rescheduled
            del self._pending[key]
            self._now = deadline
            entry[2]()
        self._now = target


class LoopTimer:
    """Timers on the running asyncio loop. An action that raises is logged, never lost
    silently, and cannot stop the other timers."""

    def __init__(self, tag: str = "") -> None:
        self._handles: dict[Hashable, asyncio.TimerHandle] = {}
        self.tag = tag

    def schedule(self, key: Hashable, delay_ms: int, action: Action) -> None:
        old = self._handles.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._handles[key] = loop.call_later(max(delay_ms, 0) / 1000, self._fire, key, action)

    def _fire(self, key: Hashable, action: Action) -> None:
        self._handles.pop(key, None)
        try:
            action()
        except Exception:
            logger.exception("%sgroup coordinator timer %s failed", self.tag, key)

    def cancel(self, key: Hashable) -> None:
        handle = self._handles.pop(key, None)
        if handle is not None:
            handle.cancel()
