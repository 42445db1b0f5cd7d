"""Checkpoint files, written atomically (temp file, fsync, rename, fsync of the directory).

Formats are Kafka's, so the layout of a log dir is familiar:

Per log dir, `recovery-point-offset-checkpoint`, `replication-offset-checkpoint` (high
watermarks), `log-start-offset-checkpoint` and `cleaner-offset-checkpoint`::

    0                      version
    2                      number of entries
    orders 0 1042          topic, partition, offset
    orders 1 977

Per partition dir, `leader-epoch-checkpoint`::

    0                      version
    2                      number of entries
    0 0                    leader epoch, start offset
    3 1042
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 0


class CheckpointError(Exception):
    pass


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path) or "."
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _format(rows: Iterable[tuple[object, ...]]) -> bytes:
    lines = [" ".join(str(x) for x in row) for row in rows]
    return (
        f"{CHECKPOINT_VERSION}\n{len(lines)}\n".encode()
        + "".join(line + "\n" for line in lines).encode()
    )


def _parse(path: str, columns: int) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    try:
        if int(lines[0]) != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path}: unknown version {lines[0]!r}")
        count = int(lines[1])
        rows = [line.split() for line in lines[2 : 2 + count]]
    except (IndexError, ValueError) as e:
        raise CheckpointError(f"{path}: malformed checkpoint ({e})") from e
    if len(rows) != count or any(len(r) != columns for r in rows):
        raise CheckpointError(f"{path}: expected {count} rows of {columns} columns")
    return rows


class OffsetCheckpointFile:
    """topic-partition → offset, one file per log dir."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, offsets: Mapping[tuple[str, int], int]) -> None:
        rows = sorted((t, p, o) for (t, p), o in offsets.items())
        write_atomically(self.path, _format(rows))

    def read(self) -> dict[tuple[str, int], int]:
        try:
            return {(t, int(p)): int(o) for t, p, o in _parse(self.path, 3)}
        except (CheckpointError, ValueError) as e:
            # A checkpoint is an optimisation of recovery: ignoring it is always safe.
            logger.warning("ignoring unreadable checkpoint %s: %s", self.path, e)
            return {}


class LeaderEpochCache:
    """Leader epoch → start offset of that epoch in this log (KIP-101/279).

    Invariant: epochs and start offsets both strictly increase. The end offset of an epoch is
    the start offset of the next one, or the log end offset for the latest.
    """

    FILE_NAME = "leader-epoch-checkpoint"

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._epochs: list[int] = []
        self._starts: list[int] = []
        if path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            rows = _parse(self.path, 2)
            pairs = [(int(e), int(o)) for e, o in rows]
        except (CheckpointError, ValueError) as e:
            logger.warning("leader epoch checkpoint %s unreadable, rebuilding: %s", self.path, e)
            pairs = []
        for epoch, start in pairs:
            self._assign(epoch, start)

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts, strict=True))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else -1

    def _assign(self, epoch: int, start_offset: int) -> bool:
        if self._epochs and epoch <= self._epochs[-1]:
            return False
        # A new epoch starting at or before existing entries supersedes them (a follower
        # that truncated and now learns a newer epoch at a lower offset).
        while self._starts and self._starts[-1] >= start_offset:
            self._epochs.pop()
            self._starts.pop()
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        return True

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that `epoch` starts at `start_offset`; True if the cache changed."""
        if epoch < 0:
            return False
        changed = self._assign(epoch, start_offset)
        if changed:
            self.flush()
        return changed

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest epoch <= `epoch`, its end offset), as OffsetForLeaderEpoch answers.

        (-1, -1) when the requested epoch is older than anything known.
        """
        if not self._epochs or epoch < self._epochs[0]:
            return -1, -1
        if epoch >= self._epochs[-1]:
            return self._epochs[-1], log_end_offset
        i = bisect_right(self._epochs, epoch) - 1
        return self._epochs[i], self._starts[i + 1]

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs starting at or after `end_offset` (the log was truncated to it)."""
        changed = False
        while self._starts and self._starts[-1] >= end_offset:
            self._epochs.pop()
            self._starts.pop()
            changed = True
        if changed:
            self.flush()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at `start_offset`: drop epochs wholly before it, clamp the rest."""
        i = bisect_right(self._starts, start_offset) - 1
        if i <= 0 and (not self._starts or self._starts[0] >= start_offset):
            return
        del self._epochs[:i]
        del self._starts[:i]
        self._starts[0] = start_offset
        self.flush()

    def clear(self) -> None:
        self._epochs.clear()
        self._starts.clear()
        self.flush()

    def flush(self) -> None:
        if self.path is not None:
            write_atomically(self.path, _format(self.entries()))
