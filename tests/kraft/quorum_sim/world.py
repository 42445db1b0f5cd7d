"""The quorum's world: time, chance, fsync and what the journal keeps through a crash."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pysyncobj.syncobj as _syncobj

from kraft.quorum.journal import LOG_FILE, DurableJournal
from kraft.quorum.raft import RaftNode
from tests.sim.kernel import Clock

# -- time, chance and fsync -----------------------------------------------------------------------


class _SimTime:
    """Stands in for the `time` module: `monotonic()` is simulated, the rest is real."""

    def __init__(self, clock: Clock) -> None:
        self.monotonic = clock.monotonic

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _no_sync(fd: int) -> None:
    pass


@contextmanager
def simulated_world(clock: Clock, rng: random.Random) -> Iterator[None]:
    """While inside: pysyncobj and kraft.quorum read `clock`, pysyncobj draws its election
    timeouts from `rng`, and fsync does nothing (`SimJournal` decides what a crash keeps).
    Everything is restored on exit."""
    saved: list[tuple[object, str, object]] = []

    def patch(target: object, name: str, value: object) -> None:
        saved.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    sim_time = _SimTime(clock)
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("pysyncobj", "kraft.quorum")):
            continue
        if getattr(module, "time", None) is time:
            patch(module, "time", sim_time)
        if getattr(module, "monotonic", None) is time.monotonic:
            patch(module, "monotonic", clock.monotonic)
        if hasattr(module, "monotonicTime"):
            patch(module, "monotonicTime", clock.monotonic)
    patch(_syncobj, "random", rng)
    patch(os, "fsync", _no_sync)
    patch(os, "fdatasync", _no_sync)
    try:
        yield
    finally:
        for target, name, value in reversed(saved):
            setattr(target, name, value)


# -- the journal: what survives a crash -----------------------------------------------------------


class SimJournal(DurableJournal):
    """A `DurableJournal` that remembers what ``raft.log`` held at its last sync, i.e. what a
    power loss leaves of it. (The state file is always durable: it is replaced atomically.)"""

    def __init__(self, directory: str, tag: str = "") -> None:
        super().__init__(directory, tag)
        self._log_file = os.path.join(directory, LOG_FILE)
        self._capture()  # what loading left is on disk (a torn tail is cut and synced)

    def _capture(self) -> None:
        with open(self._log_file, "rb") as f:
            self.durable = f.read()
            self.durable_inode = os.fstat(f.fileno()).st_ino

    def sync(self) -> None:
        if self.dirty:
            super().sync()
            self._capture()

    def crash(self, power_loss: bool, rng: random.Random) -> int:
        """kill -9 (and, with `power_loss`, the machine): close the file without syncing;
        with power loss, roll ``raft.log`` back to its last synced content plus a random
        prefix of whatever was appended since. Returns the bytes lost."""
        os.close(self._fd)
        if not power_loss:
            return 0
        with open(self._log_file, "rb") as f:
            current = f.read()
            inode = os.fstat(f.fileno()).st_ino
        if inode != self.durable_inode:
            return 0  # replaced atomically (compaction) since: that rename is durable
        kept = self.durable
        if current.startswith(kept):
            kept = current[: len(kept) + rng.randint(0, len(current) - len(kept))]
        with open(self._log_file, "wb") as f:
            f.write(kept)
        return len(current) - len(kept) if len(current) > len(kept) else 0


class ForgetfulJournal(SimJournal):
    """Broken on purpose: after a restart, the voter does not know whom it voted for."""

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return None


def close_pipe_notifier(raft: RaftNode) -> None:
    # pysyncobj opens a pipe per SyncObj (appendEntriesUseBatch=False) and never closes it.
    notifier = getattr(raft, "_SyncObj__pipeNotifier", None)
    for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
        fd = getattr(notifier, name, None)
        if fd is not None:
            os.close(fd)
