"""The durable Raft log and Raft's persistent state, behind pysyncobj's `Journal` interface.

pysyncobj keeps the Raft log in a `Journal` object; it reads and truncates it in memory and
calls `add`, `deleteEntriesFrom`, `setCurrentTerm` and friends as the protocol runs. This
journal keeps the same in-memory list but writes every change to disk, and exposes `sync()`:
the quorum calls it before anything that a crash must not take back leaves the node (an
append acknowledgement, a vote request or grant) and before the leader counts its own log
toward the commit index. Nothing here fsyncs per entry: one `sync()` covers every entry added
since the previous one.

Two files live in the data directory:

``raft.log`` — the log. An 8-byte header (``b"KRQLOG"`` + format version as u16 big-endian),
then one record per entry, back to back::

    crc      u32   zlib.crc32 of the rest of the record (length .. command)
    length   u32   length of `command`
    index    u64   Raft log index (contiguous: each record's index is the previous one + 1)
    term     u64   Raft term the entry was created in
    command  bytes pysyncobj's command: a 1-byte command type, then the payload

Records are only ever appended at the end or cut off the end (Raft truncates a conflicting
suffix), so a crash leaves at most a torn last record: loading stops at the first record that
is incomplete, fails its CRC or breaks the index sequence, and truncates the file there. Such a
tail was never acknowledged (acknowledgements wait for `sync()`), so dropping it is safe.

The first record is the log start. It is index 1 (pysyncobj's bootstrap no-op) until a
snapshot replaces a prefix (`compact_to`, `reset_to`; see snapshots.py): then it is a
placeholder at the snapshot's index with that entry's term and a no-op command — pysyncobj
uses it only as the `prevLogIndex`/`prevLogTerm` of the next entry and never applies or
sends it. Dropping a prefix rewrites the file through a temporary file + fsync + rename +
fsync of the directory (the kept records are copied as they are on disk), so a crash leaves
the old log or the new one, both readable: the durable log start is the first record.

``raft.state`` — Raft's persistent state other than the log, as JSON::

    {"current_term": 7, "voted_for": 2, "commit_index": 41}

`voted_for` is a node id or null. It is replaced atomically (temporary file, fsync, rename,
fsync of the directory) every time the term or the vote changes — before pysyncobj sends
the vote request or grant that follows — so a restarted voter can never vote twice in a term
or go back to an older term. `commit_index` is written lazily (once a second at most): it only
lets a restarted node replay its own committed entries before a leader tells it the current
commit index, and is clamped to the end of the log on load.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from typing import Any, overload

from pysyncobj.journal import Journal

from kraft.log.checkpoint import write_atomically

logger = logging.getLogger(__name__)

LOG_FILE = "raft.log"
STATE_FILE = "raft.state"

_HEADER = b"KRQLOG" + struct.pack(">H", 1)
# crc, length, index, term — the crc covers everything after its own 4 bytes.
_RECORD = struct.Struct(">IIQQ")
_CRC_COVERED = struct.Struct(">IQQ")

Entry = tuple[bytes, int, int]
# The command of the log-start placeholder after a compaction: pysyncobj's no-op type.
LOG_START_COMMAND = b"\x01"


class JournalError(Exception):
    """The journal's files are unreadable, or a write or fsync failed.

    After a failed fsync the page cache can no longer be trusted to reflect the disk, so the
    only safe reaction is to stop the node; the quorum does.
    """


def write_file_atomically(path: str, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new content
    (the Raft state is the node's vote: readable by its owner only)."""
    write_atomically(path, data, mode=0o600)


def encode_record(command: bytes, index: int, term: int) -> bytes:
    covered = _CRC_COVERED.pack(len(command), index, term)
    crc = zlib.crc32(command, zlib.crc32(covered))
    return _RECORD.pack(crc, len(command), index, term) + command


class DurableJournal(Journal):  # pysyncobj is untyped (Any)
    """pysyncobj's `Journal` interface over ``raft.log`` and ``raft.state`` (formats above).

    pysyncobj calls it from its tick thread only; so does the quorum. Not thread-safe.
    """

    def __init__(self, directory: str, tag: str = "") -> None:
        self._dir = directory
        self._tag = tag
        self._log_path = os.path.join(directory, LOG_FILE)
        self._state_path = os.path.join(directory, STATE_FILE)
        os.makedirs(directory, exist_ok=True)
        self._entries: list[Entry] = []
        # _offsets[i] is the file offset of _entries[i]'s record.
        self._offsets: list[int] = []
        self._end = len(_HEADER)
        self._dirty = False
        self._current_term = 0
        self._voted_for: int | None = None
        self._commit_index = 0
        self._saved_commit_index = 0
        self._load_state()
        self._fd = self._open_log()

    # -- loading ----------------------------------------------------------------------------

    def _load_state(self) -> None:
        try:
            with open(self._state_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        try:
            state = json.loads(raw)
            term = state["current_term"]
            voted_for = state["voted_for"]
            commit_index = state["commit_index"]
        except (ValueError, KeyError, TypeError) as e:
            # Written atomically, so this is not a torn write: refuse to guess a term.
            raise JournalError(f"{self._state_path} is corrupt: {e}") from e
        if not (isinstance(term, int) and isinstance(commit_index, int)) or not (
            voted_for is None or isinstance(voted_for, int)
        ):
            raise JournalError(f"{self._state_path} has invalid values: {state!r}")
        self._current_term = term
        self._voted_for = voted_for
        self._commit_index = self._saved_commit_index = commit_index

    def _open_log(self) -> int:
        if not os.path.exists(self._log_path) or os.path.getsize(self._log_path) < len(_HEADER):
            # New, or torn while being created (it never held an entry).
            write_file_atomically(self._log_path, _HEADER)
        fd = os.open(self._log_path, os.O_RDWR)
        try:
            self._scan(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _scan(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        if data[: len(_HEADER)] != _HEADER:
            raise JournalError(f"{self._log_path}: not a raft log (header {data[:8]!r})")
        pos = len(_HEADER)
        expected_index: int | None = None
        while pos + _RECORD.size <= size:
            crc, length, index, term = _RECORD.unpack_from(data, pos)
            end = pos + _RECORD.size + length
            if end > size:
                break
            command = bytes(data[pos + _RECORD.size : end])
            covered = _CRC_COVERED.pack(length, index, term)
            if zlib.crc32(command, zlib.crc32(covered)) != crc:
                break
            if expected_index is not None and index != expected_index:
                break
            self._entries.append((command, index, term))
            self._offsets.append(pos)
            expected_index = index + 1
            pos = end
        self._end = pos
        if pos != size:
            logger.warning(
                "%s%s: dropping %d bytes of torn or corrupt tail after %d entries",
                self._tag,
                self._log_path,
                size - pos,
                len(self._entries),
            )
            os.ftruncate(fd, pos)
            os.fsync(fd)

    # -- durability ---------------------------------------------------------------------------

    def sync(self) -> None:
        """Make every change to the log so far durable (a no-op when there is none)."""
        if self._dirty:
            try:
                os.fdatasync(self._fd)
            except OSError as e:
                raise JournalError(f"fdatasync of {self._log_path} failed: {e}") from e
            self._dirty = False

    flush = sync

    @property
    def dirty(self) -> bool:
        return self._dirty

    def _save_state(self) -> None:
        state = {
            "current_term": self._current_term,
            "voted_for": self._voted_for,
            "commit_index": self._commit_index,
        }
        try:
            write_file_atomically(self._state_path, json.dumps(state).encode() + b"\n")
        except OSError as e:
            raise JournalError(f"writing {self._state_path} failed: {e}") from e
        self._saved_commit_index = self._commit_index

    def _write(self, data: bytes, offset: int) -> None:
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as e:
            raise JournalError(f"writing {self._log_path} failed: {e}") from e

    def _truncate(self, offset: int) -> None:
        try:
            os.ftruncate(self._fd, offset)
        except OSError as e:
            raise JournalError(f"truncating {self._log_path} failed: {e}") from e
        self._end = offset
        self._dirty = True

    # -- pysyncobj's Journal interface ----------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        if self._entries and idx != self._entries[-1][1] + 1:
            raise JournalError(f"non-contiguous append: {idx} after {self._entries[-1][1]}")
        record = encode_record(command, idx, term)
        self._write(record, self._end)
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._end += len(record)
        self._dirty = True

    def clear(self) -> None:
        self._entries = []
        self._offsets = []
        self._truncate(len(_HEADER))

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Drop the entries at list positions >= entryFrom (Raft's conflicting suffix)."""
        if entryFrom >= len(self._entries):
            return
        offset = self._offsets[entryFrom]
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        self._truncate(offset)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the entries at list positions < entryTo (pysyncobj's compaction), atomically."""
        if entryTo <= 0:
            return
        if entryTo >= len(self._entries):
            self._rewrite([], b"")
            return
        self._rewrite(self._entries[entryTo:], self._records_from(entryTo))

    # -- log start (snapshots) ----------------------------------------------------------------

    @property
    def first_index(self) -> int:
        """Index of the log start: 1, or the index of the snapshot the log follows."""
        return self._entries[0][1] if self._entries else 0

    def compact_to(self, index: int) -> None:
        """Make `index` the log start: drop every entry before it and replace it by the
        placeholder (its term kept), atomically. A snapshot must cover `index` already."""
        pos = index - self.first_index
        if not self._entries or not 0 <= pos < len(self._entries):
            raise JournalError(f"cannot compact to {index}: the log holds {self._span()}")
        if pos == 0 and self._entries[0][0] == LOG_START_COMMAND:
            return
        start = (LOG_START_COMMAND, index, self._entries[pos][2])
        records = encode_record(*start) + self._records_from(pos + 1)
        self._rewrite([start, *self._entries[pos + 1 :]], records)

    def reset_to(self, index: int, term: int) -> None:
        """Replace the whole log by a log start at `index` (a snapshot of that index and term
        is durable, and the log does not hold that entry), atomically."""
        start = (LOG_START_COMMAND, index, term)
        self._rewrite([start], encode_record(*start))
        self._commit_index = max(self._commit_index, index)

    def _span(self) -> str:
        return f"{self.first_index}..{self.last_index}" if self._entries else "nothing"

    def _records_from(self, pos: int) -> bytes:
        """The on-disk records of the entries at list positions >= pos."""
        if pos >= len(self._offsets):
            return b""
        start = self._offsets[pos]
        try:
            return os.pread(self._fd, self._end - start, start)
        except OSError as e:
            raise JournalError(f"reading {self._log_path} failed: {e}") from e

    def _rewrite(self, entries: list[Entry], records: bytes) -> None:
        """Replace the file by `entries`, whose encoded records are `records`."""
        self.sync()
        data = _HEADER + records
        try:
            write_file_atomically(self._log_path, data)
            fd = os.open(self._log_path, os.O_RDWR)
        except OSError as e:
            raise JournalError(f"rewriting {self._log_path} failed: {e}") from e
        os.close(self._fd)
        self._fd = fd
        self._entries = entries
        self._offsets = []
        pos = len(_HEADER)
        for command, _, _ in entries:
            self._offsets.append(pos)
            pos += _RECORD.size + len(command)
        self._end = pos
        if pos != len(data):
            raise JournalError(f"rewrote {len(data)} bytes of {self._log_path}, expected {pos}")

    @overload
    def __getitem__(self, item: int) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> list[Entry]: ...

    def __getitem__(self, item: int | slice) -> Entry | list[Entry]:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, index: int) -> Entry | None:
        """The entry with Raft index `index`, if the log holds it."""
        if not self._entries:
            return None
        pos = index - self._entries[0][1]
        if 0 <= pos < len(self._entries):
            return self._entries[pos]
        return None

    @property
    def last_index(self) -> int:
        return self._entries[-1][1] if self._entries else 0

    def _destroy(self) -> None:
        try:
            self.sync()
            if self._commit_index != self._saved_commit_index:
                self._save_state()
        finally:
            os.close(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._commit_index = raftCommitIndex

    def getRaftCommitIndex(self) -> int:
        # pysyncobj's own default is 1 (the bootstrap no-op). Never beyond what the log holds,
        # never before its start (a snapshot's index is committed).
        return max(1, self.first_index, min(self._commit_index, self.last_index))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        voted_for = None if votedForNodeId is None else int(votedForNodeId)
        if term == self._current_term and voted_for == self._voted_for:
            return
        self._current_term = term
        self._voted_for = voted_for
        self._save_state()

    def getCurrentTerm(self) -> int:
        return self._current_term

    def getVotedForNodeId(self) -> str | None:
        # pysyncobj's node ids are strings; the quorum's are str(node_id).
        return None if self._voted_for is None else str(self._voted_for)

    def onOneSecondTimer(self) -> None:
        if self._commit_index != self._saved_commit_index:
            self._save_state()
