"""Raft snapshots on disk, and the rules that tie them to the journal (KIP-630 in spirit).

A snapshot is the caller's state machine as of a committed Raft index: bytes the quorum
never looks into. It replaces the journal prefix up to that index, so the journal does not
grow forever and a restart replays only what follows the snapshot.

One file per snapshot in the quorum's data directory, named
``{index:020d}-{term:010d}.snapshot`` (the index and term of the last entry it includes)::

    magic    6s    b"KRQSNP"
    version  u16   1
    index    u64   Raft index of the last entry the snapshot includes
    term     u64   that entry's term
    length   u64   length of `data`
    crc      u32   zlib.crc32 of the 30 bytes above, then of `data`
    data     bytes the state machine's snapshot (opaque here)

Integers are big-endian. A file is written to ``<name>.tmp``, fsynced, renamed into place and
the directory fsynced, so a crash leaves either no snapshot or a whole one; leftover
temporary files are deleted on open. A file whose CRC, length or name does not check out is
corrupt (bit rot, not a torn write): it is renamed to ``<name>.corrupt`` and skipped.

How the journal and the snapshots move together (every step is atomic on its own, and a
crash between any two leaves a state `recover` reads back):

- Local compaction (`retain`, after a new snapshot is durable): keep the newest `keep`
  snapshots the journal reaches, delete the others, then drop the journal prefix up to the
  oldest one kept. With the default keep=2 the journal still covers the previous snapshot,
  so a corrupt newest snapshot falls back to the previous one plus the journal; before the
  second snapshot the journal is whole, so the fallback is a full replay.
- Install (`install`, a follower behind the leader's log start): write the leader's
  snapshot durably, then either drop the journal prefix up to it (the journal holds its last
  entry, same term: the entries after it are kept, as Raft's InstallSnapshot rule says) or
  reset the journal to start right after it; then delete every other snapshot.
- Start (`recover`): the newest valid snapshot whose index and term the journal holds is
  loaded; an install that crashed before its journal reset is finished here (the newest
  snapshot is durable, the journal does not hold its entry); if no snapshot is usable, the
  journal must reach back to index 1 (full replay), else the node refuses to start.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass

from kraft.log.checkpoint import write_atomically
from kraft.quorum.journal import DurableJournal, JournalError

logger = logging.getLogger(__name__)

SUFFIX = ".snapshot"
_NAME = re.compile(r"^(\d{20})-(\d{10})\.snapshot$")
_HEAD = struct.Struct(">6sHQQQ")
_CRC = struct.Struct(">I")
_MAGIC = b"KRQSNP"
_VERSION = 1
HEADER_BYTES = _HEAD.size + _CRC.size


@dataclass(frozen=True, order=True)
class SnapshotId:
    index: int
    term: int

    @property
    def file_name(self) -> str:
        return f"{self.index:020d}-{self.term:010d}{SUFFIX}"


def encode_snapshot_file(snapshot: SnapshotId, data: bytes) -> bytes:
    head = _HEAD.pack(_MAGIC, _VERSION, snapshot.index, snapshot.term, len(data))
    return head + _CRC.pack(zlib.crc32(data, zlib.crc32(head))) + data


def decode_snapshot_file(snapshot: SnapshotId, raw: bytes) -> bytes:
    """The data of a snapshot file's bytes; ValueError when they do not check out."""
    if len(raw) < HEADER_BYTES:
        raise ValueError(f"{len(raw)} bytes: shorter than the header")
    magic, version, index, term, length = _HEAD.unpack_from(raw)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError(f"not a snapshot file (magic {magic!r}, version {version})")
    if (index, term) != (snapshot.index, snapshot.term):
        raise ValueError(f"holds index {index} term {term}, not what its name says")
    if len(raw) != HEADER_BYTES + length:
        raise ValueError(f"{len(raw)} bytes for {length} bytes of data")
    (crc,) = _CRC.unpack_from(raw, _HEAD.size)
    data = raw[HEADER_BYTES:]
    if zlib.crc32(data, zlib.crc32(raw[: _HEAD.size])) != crc:
        raise ValueError("checksum mismatch")
    return data


class SnapshotStore:
    """The snapshot files of one quorum member (format in the module docstring).

    Thread-safe: the quorum writes local snapshots from a worker thread while its Raft thread
    installs, lists and deletes them.
    """

    def __init__(self, directory: str, tag: str = "") -> None:
        self.directory = directory
        self._tag = tag
        self._lock = threading.Lock()
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(SUFFIX + ".tmp"):
                # A write that crashed before its rename: never a snapshot.
                os.unlink(os.path.join(directory, name))

    def _path(self, snapshot: SnapshotId) -> str:
        return os.path.join(self.directory, snapshot.file_name)

    def list(self) -> list[SnapshotId]:
        """The snapshots present, oldest first (not validated: see `read`)."""
        with self._lock:
            names = os.listdir(self.directory)
        found = []
        for name in names:
            match = _NAME.match(name)
            if match:
                found.append(SnapshotId(int(match.group(1)), int(match.group(2))))
        return sorted(found)

    def newest(self) -> SnapshotId | None:
        found = self.list()
        return found[-1] if found else None

    def read(self, snapshot: SnapshotId) -> bytes | None:
        """The snapshot's data, or None when it is gone or corrupt (then renamed aside)."""
        path = self._path(snapshot)
        with self._lock:
            try:
                with open(path, "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                return None
            try:
                return decode_snapshot_file(snapshot, raw)
            except ValueError as e:
                logger.error("%ssnapshot %s is corrupt: %s", self._tag, path, e)
                os.replace(path, path + ".corrupt")
                return None

    def write(self, index: int, term: int, data: bytes) -> SnapshotId:
        """Write a snapshot durably (temporary file, fsync, rename, fsync of the directory)."""
        snapshot = SnapshotId(index, term)
        raw = encode_snapshot_file(snapshot, data)
        with self._lock:
            try:
                write_atomically(self._path(snapshot), raw, mode=0o600)
            except OSError as e:
                raise JournalError(f"writing snapshot {snapshot.file_name} failed: {e}") from e
        return snapshot

    def delete(self, snapshot: SnapshotId) -> None:
        with self._lock:
            try:
                os.unlink(self._path(snapshot))
            except FileNotFoundError:
                pass


def _holds(journal: DurableJournal, snapshot: SnapshotId) -> bool:
    entry = journal.entry(snapshot.index)
    return entry is not None and entry[2] == snapshot.term


def recover(
    store: SnapshotStore, journal: DurableJournal, tag: str = ""
) -> tuple[SnapshotId, bytes] | None:
    """At start: the snapshot to load before replaying the journal after it (None: replay the
    whole journal). May finish an interrupted install by resetting the journal; raises
    JournalError when the journal has lost its beginning and no snapshot can stand in."""
    newest_valid = True
    for snapshot in reversed(store.list()):
        data = store.read(snapshot)
        if data is None:
            continue
        if _holds(journal, snapshot):
            return snapshot, data
        if newest_valid and snapshot.index >= journal.first_index:
            # Written durably before the journal was reset: an install that did not finish.
            logger.warning(
                "%sjournal (%d..%d) does not hold snapshot %s: finishing its install",
                tag,
                journal.first_index,
                journal.last_index,
                snapshot,
            )
            journal.reset_to(snapshot.index, snapshot.term)
            return snapshot, data
        newest_valid = False
        logger.warning(
            "%ssnapshot %s is outside the journal (%d..%d): skipped",
            tag,
            snapshot,
            journal.first_index,
            journal.last_index,
        )
    if journal.first_index > 1:
        raise JournalError(
            f"the journal starts at index {journal.first_index} and no snapshot covers what "
            "precedes it: this member's state cannot be rebuilt"
        )
    return None


def retain(store: SnapshotStore, journal: DurableJournal, keep: int, tag: str = "") -> None:
    """After a new snapshot is durable: keep the newest `keep` snapshots that the journal
    reaches, delete the rest, then — once there are `keep` of them — drop the journal prefix
    up to the oldest one kept (until then the journal reaches back to index 1)."""
    if keep < 1:
        raise ValueError("keep at least one snapshot")
    present = store.list()
    reachable = [s for s in present if s.index >= journal.first_index]
    kept = reachable[-keep:]
    for snapshot in present:
        if snapshot not in kept:
            store.delete(snapshot)
    if len(kept) == keep and kept[0].index > journal.first_index:
        if not _holds(journal, kept[0]):
            logger.error("%sjournal does not hold snapshot %s: not compacted", tag, kept[0])
            return
        journal.compact_to(kept[0].index)


def install(
    store: SnapshotStore, journal: DurableJournal, snapshot: SnapshotId, data: bytes
) -> bool:
    """A leader's snapshot, on a follower: durable first, then the journal starts at it.
    Returns whether the journal kept entries after it (it held the snapshot's last entry)."""
    store.write(snapshot.index, snapshot.term, data)
    kept_suffix = _holds(journal, snapshot)
    if kept_suffix:
        journal.compact_to(snapshot.index)
    else:
        journal.reset_to(snapshot.index, snapshot.term)
    for other in store.list():
        if other != snapshot:
            store.delete(other)
    return kept_suffix
