"""The one way tests wait: for a condition, with a deadline, failing with an explanation.

A test never sleeps "long enough" for something to happen; it names what it waits for, polls
the condition, and on timeout fails saying what did not happen (plus `explain()`, for state
that helps the reader: log tails, offsets, member lists). `wait_until` is for synchronous
tests (process tests driving real clients), `wait_until_async` for tests on the event loop;
both return how long the wait took, for tests that report it as a figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_TIMEOUT_S = 30.0


def _failure(what: str, timeout_s: float, explain: Callable[[], str] | None) -> AssertionError:
    detail = explain() if explain is not None else ""
    return AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{detail}".rstrip())


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    explain: Callable[[], str] | None = None,
    interval_s: float = 0.01,
) -> float:
    """Seconds until `condition()` held; AssertionError naming `what` after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise _failure(what, timeout_s, explain)
        time.sleep(interval_s)
    return time.monotonic() - start


async def wait_until_async(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    explain: Callable[[], str] | None = None,
    interval_s: float = 0.005,
) -> float:
    """`wait_until` on the event loop: other tasks run while the condition is polled."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout_s:
            raise _failure(what, timeout_s, explain)
        await asyncio.sleep(interval_s)
    return loop.time() - start
