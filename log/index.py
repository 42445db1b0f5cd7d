"""Sparse per-segment indexes: offset → file position, and timestamp → offset.

`.index` file format (Kafka's): a sequence of 8-byte entries, big-endian::

    relative_offset: uint32   batch base offset - segment base offset
    position:        uint32   byte position of that batch in the `.log` file

`.timeindex` file format (Kafka's): a sequence of 12-byte entries, big-endian::

    timestamp:       int64    largest timestamp seen in the segment up to this entry
    relative_offset: uint32   offset at which that timestamp was reached (batch last offset)

An offset-index entry is added for a batch once `index.interval.bytes` have been appended since
the previous entry; it maps the batch's *base* offset to its position, so a lookup of offset `o`
finds the greatest indexed base offset <= o and scans batch headers forward from there.

Both indexes are held in memory (arrays) and appended to their files lazily on flush and close:
after an unclean shutdown they are rebuilt (or checked) from the `.log`, so their files never
need to be durable ahead of the data. Entries are strictly increasing in offset and position
(offset index) and in timestamp and offset (time index).
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable

_OFFSET_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")


class IndexCorruptError(Exception):
    """An index file whose content cannot belong to its segment."""


class OffsetIndex:
    def __init__(self, path: str, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._relative = array("q")
        self._positions = array("q")
        self._persisted = 0  # entries already in the file

    def __len__(self) -> int:
        return len(self._relative)

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        if self._relative and (rel <= self._relative[-1] or position <= self._positions[-1]):
            return  # never out of order; a duplicate entry adds nothing
        self._relative.append(rel)
        self._positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(base offset, position) of the greatest entry <= offset, or (segment base, 0)."""
        i = bisect_right(self._relative, offset - self.base_offset)
        if i == 0:
            return self.base_offset, 0
        return self.base_offset + self._relative[i - 1], self._positions[i - 1]

    def position_at_or_after(self, position: int) -> int:
        """Number of entries whose position is < `position` (truncation helper)."""
        return bisect_right(self._positions, position - 1)

    def truncate_entries(self, count: int) -> None:
        if count >= len(self._relative):
            return
        del self._relative[count:]
        del self._positions[count:]
        if self._persisted > count:
            self._persisted = count
            _truncate_file(self.path, count * _OFFSET_ENTRY.size)

    def entries(self) -> list[tuple[int, int]]:
        return [
            (self.base_offset + r, p) for r, p in zip(self._relative, self._positions, strict=True)
        ]

    def load(self, log_size: int) -> None:
        """Read the file; raise IndexCorruptError if it cannot describe a log of `log_size`."""
        data = _read_file(self.path)
        if len(data) % _OFFSET_ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(data)} is not a multiple of 8")
        rel = array("q")
        pos = array("q")
        for r, p in _OFFSET_ENTRY.iter_unpack(data):
            if (rel and (r <= rel[-1] or p <= pos[-1])) or p >= log_size:
                raise IndexCorruptError(f"{self.path}: entry ({r}, {p}) out of order or range")
            rel.append(r)
            pos.append(p)
        self._relative, self._positions = rel, pos
        self._persisted = len(rel)

    def flush(self, fsync: bool = False) -> None:
        _append_entries(
            self.path,
            self._persisted,
            _OFFSET_ENTRY.size,
            lambda i: _OFFSET_ENTRY.pack(self._relative[i], self._positions[i]),
            len(self._relative),
            fsync,
        )
        self._persisted = len(self._relative)

    def reset(self) -> None:
        self._relative = array("q")
        self._positions = array("q")
        self._persisted = 0
        _truncate_file(self.path, 0)


class TimeIndex:
    def __init__(self, path: str, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._timestamps = array("q")
        self._relative = array("q")
        self._persisted = 0

    def __len__(self) -> int:
        return len(self._timestamps)

    @property
    def last_timestamp(self) -> int:
        return self._timestamps[-1] if self._timestamps else -1

    def append(self, timestamp: int, offset: int) -> None:
        rel = offset - self.base_offset
        if self._timestamps and (timestamp <= self._timestamps[-1] or rel <= self._relative[-1]):
            return
        self._timestamps.append(timestamp)
        self._relative.append(rel)

    def lookup(self, timestamp: int) -> int:
        """Offset from which to scan for the first batch with max timestamp >= `timestamp`.

        Entry i says "by offset o_i the largest timestamp was t_i", so every batch before
        o_i's batch has max timestamp <= t_i. For the greatest t_i < timestamp, scanning from
        o_i is enough.
        """
        i = bisect_left(self._timestamps, timestamp)
        if i == 0:
            return self.base_offset
        return self.base_offset + self._relative[i - 1]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries at or after `offset`."""
        keep = bisect_right(self._relative, offset - self.base_offset - 1)
        if keep >= len(self._relative):
            return
        del self._timestamps[keep:]
        del self._relative[keep:]
        if self._persisted > keep:
            self._persisted = keep
            _truncate_file(self.path, keep * _TIME_ENTRY.size)

    def entries(self) -> list[tuple[int, int]]:
        return [
            (t, self.base_offset + r) for t, r in zip(self._timestamps, self._relative, strict=True)
        ]

    def load(self, max_relative_offset: int) -> None:
        data = _read_file(self.path)
        if len(data) % _TIME_ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(data)} is not a multiple of 12")
        ts = array("q")
        rel = array("q")
        for t, r in _TIME_ENTRY.iter_unpack(data):
            if (ts and (t <= ts[-1] or r <= rel[-1])) or r > max_relative_offset:
                raise IndexCorruptError(f"{self.path}: entry ({t}, {r}) out of order or range")
            ts.append(t)
            rel.append(r)
        self._timestamps, self._relative = ts, rel
        self._persisted = len(ts)

    def flush(self, fsync: bool = False) -> None:
        _append_entries(
            self.path,
            self._persisted,
            _TIME_ENTRY.size,
            lambda i: _TIME_ENTRY.pack(self._timestamps[i], self._relative[i]),
            len(self._timestamps),
            fsync,
        )
        self._persisted = len(self._timestamps)

    def reset(self) -> None:
        self._timestamps = array("q")
        self._relative = array("q")
        self._persisted = 0
        _truncate_file(self.path, 0)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _truncate_file(path: str, size: int) -> None:
    try:
        os.truncate(path, size)
    except FileNotFoundError:
        pass


def _append_entries(
    path: str,
    persisted: int,
    entry_size: int,
    pack: Callable[[int], bytes],
    count: int,
    fsync: bool,
) -> None:
    if persisted >= count and not fsync and os.path.exists(path):
        return
    payload = b"".join(pack(i) for i in range(persisted, count))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # Write at the entry boundary: a previous lazy write may have been cut by a crash.
        os.pwrite(fd, payload, persisted * entry_size)
        os.ftruncate(fd, count * entry_size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
