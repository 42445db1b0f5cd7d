"""Simulated time and a deterministic event heap.

Time is an integer number of microseconds since the start of the run, so that sums of delays
are exact and the order of events never depends on floating-point rounding; `Clock` gives
the millisecond view (an int, as kraft's injected clocks take it) and the second view (a
float from an origin, as `time.monotonic` gives it).

The heap orders events by (time, sequence number): two events due at the same microsecond
run in the order they were scheduled, so a run is a function of its seed alone. Whatever
random choices a simulation makes come from `stream(seed, name)`, one generator per concern
(faults, elections, each link...), so that drawing more from one does not shift another.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

US_PER_MS = 1_000
US_PER_S = 1_000_000


def stream(seed: int, name: str) -> random.Random:
    """The seeded generator of one concern of a run (string seeds hash the same in every
    process, whatever PYTHONHASHSEED says)."""
    return random.Random(f"{seed}/{name}")


class Clock:
    """Simulated time: `us` microseconds since the start; `ms()` and `seconds()` read it."""

    def __init__(self, origin_s: float = 0.0) -> None:
        self.us = 0
        self.origin_s = origin_s  # what `seconds()` reads at the start

    def ms(self) -> int:
        return self.us // US_PER_MS

    def seconds(self) -> float:
        return self.origin_s + self.us / US_PER_S

    # `time.monotonic` on this clock (what pysyncobj and kraft.quorum read, very often).
    monotonic = seconds

    @property
    def elapsed_s(self) -> float:
        return self.us / US_PER_S


def ms(delay_ms: float) -> int:
    """Milliseconds as kernel time."""
    return round(delay_ms * US_PER_MS)


def seconds(delay_s: float) -> int:
    """Seconds as kernel time."""
    return round(delay_s * US_PER_S)


@dataclass(slots=True)
class Timer:
    label: str
    fn: Callable[[], None]
    when: int
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class Kernel:
    """The event heap of one run, on its `clock`.

    `after_event`, when set, runs after every event (the simulations' invariant checks);
    `trace` keeps the last events (step, time in µs, label) for failure messages."""

    def __init__(self, clock: Clock | None = None, trace: int = 40) -> None:
        self.clock = clock or Clock()
        self.step = 0  # events run so far
        self.after_event: Callable[[], None] | None = None
        self.trace: deque[tuple[int, int, str]] = deque(maxlen=trace)
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = 0

    @property
    def now(self) -> int:
        return self.clock.us

    def at(self, when: int, label: str, fn: Callable[[], None]) -> Timer:
        """Run `fn` at kernel time `when` (at once, after what is already due now, if it is
        in the past)."""
        timer = Timer(label, fn, max(when, self.clock.us))
        self._seq += 1
        heapq.heappush(self._heap, (timer.when, self._seq, timer))
        return timer

    def after(self, delay: int, label: str, fn: Callable[[], None]) -> Timer:
        return self.at(self.clock.us + delay, label, fn)

    def after_ms(self, delay_ms: float, label: str, fn: Callable[[], None]) -> Timer:
        return self.after(ms(delay_ms), label, fn)

    def after_s(self, delay_s: float, label: str, fn: Callable[[], None]) -> Timer:
        return self.after(seconds(delay_s), label, fn)

    def next_due(self) -> int | None:
        """When the next pending event is due (cancelled timers are dropped on the way)."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_until(self, until: int, stop: Callable[[], bool] | None = None) -> bool:
        """Run the events due up to kernel time `until`, in order; the clock then reads
        `until`. With `stop`, return True as soon as `stop()` holds after an event (the
        clock reads that event's time); False when `until` was reached."""
        heap = self._heap
        clock = self.clock
        while heap and heap[0][0] <= until:
            when, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            clock.us = when
            self.step += 1
            self.trace.append((self.step, when, timer.label))
            timer.fn()
            if self.after_event is not None:
                self.after_event()
            if stop is not None and stop():
                return True
        clock.us = max(clock.us, until)
        return False

    def run_until_ms(self, until_ms: int) -> None:
        self.run_until(ms(until_ms))

    def recent(self, unit_us: int = US_PER_MS) -> str:
        """The traced events, one per line, times in `unit_us` (ms by default)."""
        return "\n".join(
            f"  step {step} t={when / unit_us:g}: {label}" for step, when, label in self.trace
        )
