"""Kafka's delayed-operation purgatory, without I/O.

A delayed operation (an acks=all produce waiting for the high watermark, a fetch waiting for
`min_bytes`) is tried once when it arrives; if it cannot complete yet it is watched under the
keys of the partitions it depends on, and tried again whenever one of those partitions
changes (`check_and_complete(key)`), until it completes or its deadline passes (`expire(now)`).

Nothing here waits or schedules: time is the injected clock, and whoever drives the purgatory
(an asyncio timer on a broker, the simulation's event queue in tests) asks `next_deadline()`
and calls `expire` then. Every operation completes exactly once, and `on_complete` runs on
the caller's stack: inside `try_complete_else_watch`, `check_and_complete` or `expire`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable

# Completed operations left in the expiry heap before it is compacted (they leave the watch
# lists of the key that completed them at once, the other lists' copies with the heap).
PURGE_THRESHOLD = 1000


class DelayedOperation:
    """One operation that waits: subclasses say when it can complete (`try_complete`, which
    calls `force_complete` when it can), what expiring means (`on_expiration`, run before
    completion so it can settle what is still pending) and how the result is delivered
    (`on_complete`)."""

    def __init__(self, delay_ms: int) -> None:
        self.delay_ms = delay_ms
        self.deadline_ms = 0  # set when the purgatory takes it
        self.completed = False

    def try_complete(self) -> bool:
        raise NotImplementedError

    def on_expiration(self) -> None:
        """Called once, on expiry, right before `on_complete`."""

    def on_complete(self) -> None:
        raise NotImplementedError

    def force_complete(self) -> bool:
        """Complete now unless already completed; True if this call completed it."""
        if self.completed:
            return False
        self.completed = True
        self.on_complete()
        return True


class DelayedOperationPurgatory:
    def __init__(self, name: str, clock: Callable[[], int]) -> None:
        self.name = name
        self.clock = clock
        self._watchers: dict[Hashable, list[DelayedOperation]] = {}
        # (deadline, arrival order, operation): equal deadlines expire in arrival order.
        self._deadlines: list[tuple[int, int, DelayedOperation]] = []
        self._arrivals = itertools.count()
        self._completed_in_heap = 0

    def try_complete_else_watch(self, op: DelayedOperation, keys: Iterable[Hashable]) -> bool:
        """Complete `op` now if it can; otherwise watch it under `keys` until a change of
        one of them completes it, or its deadline. True if it completed here."""
        if op.try_complete():
            return True
        op.deadline_ms = self.clock() + max(op.delay_ms, 0)
        for key in keys:
            self._watchers.setdefault(key, []).append(op)
        heapq.heappush(self._deadlines, (op.deadline_ms, next(self._arrivals), op))
        return False

    def check_and_complete(self, key: Hashable) -> int:
        """Try every operation watching `key` (in arrival order); the number completed."""
        watching = self._watchers.get(key)
        if not watching:
            return 0
        completed = 0
        for op in list(watching):
            if not op.completed and op.try_complete():
                completed += 1
                self._completed_in_heap += 1
        remaining = [op for op in self._watchers.get(key, ()) if not op.completed]
        if remaining:
            self._watchers[key] = remaining
        else:
            self._watchers.pop(key, None)
        if self._completed_in_heap > max(PURGE_THRESHOLD, len(self._deadlines) // 2):
            self._purge()
        return completed

    def expire(self, now_ms: int | None = None) -> int:
        """Expire every operation whose deadline is at or before `now_ms` (the clock's now by
        default): `on_expiration`, then completion. The number expired."""
        now = self.clock() if now_ms is None else now_ms
        expired = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, op = heapq.heappop(self._deadlines)
            if op.completed:
                self._completed_in_heap -= 1
                continue
            op.on_expiration()
            op.force_complete()
            expired += 1
        if expired:
            self._drop_completed_watchers()
        return expired

    def next_deadline(self) -> int | None:
        """The earliest deadline of an operation still waiting, or None."""
        while self._deadlines and self._deadlines[0][2].completed:
            heapq.heappop(self._deadlines)
            self._completed_in_heap -= 1
        return self._deadlines[0][0] if self._deadlines else None

    def watched(self) -> int:
        """Operations still waiting."""
        return sum(1 for _, _, op in self._deadlines if not op.completed)

    def _purge(self) -> None:
        self._deadlines = [entry for entry in self._deadlines if not entry[2].completed]
        heapq.heapify(self._deadlines)
        self._completed_in_heap = 0
        self._drop_completed_watchers()

    def _drop_completed_watchers(self) -> None:
        for key in list(self._watchers):
            remaining = [op for op in self._watchers[key] if not op.completed]
            if remaining:
                self._watchers[key] = remaining
            else:
                del self._watchers[key]
