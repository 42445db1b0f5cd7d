"""Warnings about peers' faults (failed authentications, refused requests), at most `burst`
per `window_s`; the rest are counted and reported in one line, naming the last peer, at the
next fault after the window (or at `flush`). Hostile clients cannot fill the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class PeerFaultLog:
    def __init__(
        self,
        logger: logging.Logger,
        prefix: str = "",
        *,
        burst: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._prefix = prefix
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._window_start = clock()
        self._logged = 0
        self.suppressed = 0
        self._last_peer = ""

    def warn(self, peer: str, msg: str, *args: object) -> None:
        now = self._clock()
        if now - self._window_start >= self.window_s:
            self.flush()
            self._window_start = now
            self._logged = 0
        if self._logged < self.burst:
            self._logged += 1
            self._logger.warning("%s" + msg, self._prefix, *args)
        else:
            self.suppressed += 1
            self._last_peer = peer

    def flush(self) -> None:
        if self.suppressed:
            self._logger.warning(
                "%s%d more connections refused for their peers' faults in the last %d s "
                "(not logged one by one; the last from %s)",
                self._prefix,
                self.suppressed,
                round(self.window_s),
                self._last_peer,
            )
            self.suppressed = 0
