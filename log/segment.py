"""One log segment: `<base offset:020d>.log` plus its `.index` and `.timeindex`.

The `.log` file is a plain concatenation of RecordBatch v2 batches, exactly as appended (see
`log.batch`). Batches are in increasing offset order; offsets are contiguous on append, and may
have gaps after compaction. The segment's base offset (its file name) is <= the base offset of
its first batch.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from kraft.log.batch import (
    HEADER_SIZE,
    LAST_OFFSET_DELTA,
    LAST_OFFSET_DELTA_OFFSET,
    LOG_OVERHEAD,
    OFFSET_LENGTH,
    BatchHeader,
    iter_headers,
    parse_header,
    validate_batch,
)
from kraft.log.errors import LogError, LogStorageError
from kraft.log.index import IndexCorruptError, OffsetIndex, TimeIndex

logger = logging.getLogger(__name__)

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
# Header bytes needed to know a batch's offsets and length: up to last_offset_delta.
_OFFSETS_PREFIX = LAST_OFFSET_DELTA_OFFSET + 4
_SCAN_CHUNK = 1 << 20
_IOV_MAX = 1024
_PAGE = mmap.ALLOCATIONGRANULARITY
# Appends up to this size are copied into the mapping; bigger ones are one pwritev (the
# syscall is cheap next to their size, and page faults on fresh mapped pages are not).
_MAP_MAX_APPEND = 256 * 1024


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


class AppendInfo(NamedTuple):
    """What the log knows of one batch it is about to write."""

    base_offset: int
    last_offset: int
    max_timestamp: int
    size: int


@dataclass(slots=True)
class RecoveryResult:
    truncated_bytes: int
    reason: str | None


class LogSegment:
    def __init__(
        self,
        directory: str,
        base_offset: int,
        index_interval_bytes: int,
        created_ms: int,
        preallocate_bytes: int = 0,
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.created_ms = created_ms
        self.log_path = os.path.join(directory, segment_file_name(base_offset, LOG_SUFFIX))
        self.offset_index = OffsetIndex(
            os.path.join(directory, segment_file_name(base_offset, INDEX_SUFFIX)), base_offset
        )
        self.time_index = TimeIndex(
            os.path.join(directory, segment_file_name(base_offset, TIMEINDEX_SUFFIX)), base_offset
        )
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT, 0o644)
        # `size` is the logical end (the bytes of whole batches appended); while the segment
        # is active the file may be longer: space reserved ahead by fallocate, written through
        # a shared memory map (see `append`). Rolling, closing and truncating trim it.
        self.size = os.fstat(self._fd).st_size
        self._allocated = self.size
        self.preallocate_bytes = preallocate_bytes
        self._map: mmap.mmap | None = None
        self._map_start = 0
        self._map_end = 0
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self._bytes_since_index = 0
        self._first_timestamp: int | None = None

    # ----------------------------------------------------------------- state

    @property
    def is_empty(self) -> bool:
        return self.size == 0

    @property
    def first_timestamp(self) -> int | None:
        """Max timestamp of the first batch (the start of `segment.ms`), if any."""
        return self._first_timestamp

    def last_modified_ms(self) -> int:
        return int(os.fstat(self._fd).st_mtime * 1000)

    # ------------------------------------------------------------------ write

    def append(
        self,
        chunks: Sequence[bytes | bytearray | memoryview],
        infos: list[AppendInfo],
        total: int,
    ) -> None:
        """Write `chunks` (the batches' bytes, in order, `total` bytes) described by `infos`.

        With preallocation the bytes are copied into a shared mapping of space reserved by
        fallocate: no system call per append, and as crash-safe as a write(2) — the bytes
        are in the page cache once copied, so a killed process loses nothing that an append
        returned. Reserving the space first turns a full disk into an OSError here rather
        than a SIGBUS later. Without preallocation (or for huge appends) it is one writev.
        """
        end = self.size + total
        if 0 < total <= _MAP_MAX_APPEND and self.preallocate_bytes > 0:
            if end > self._map_end:
                self._map_for(end)
            assert self._map is not None
            mapped = self._map
            at = self.size - self._map_start
            for chunk in chunks:
                n = len(chunk)
                mapped[at : at + n] = chunk
                at += n
            written = at - (self.size - self._map_start)
        else:
            written = self._pwritev(chunks, total)
            self._allocated = max(self._allocated, end)
        if written != total:
            raise LogStorageError(f"{self.log_path}: wrote {written} of {total} bytes")
        self._index_batches(self.size, infos)
        self.size = end

    def _pwritev(self, chunks: Sequence[bytes | bytearray | memoryview], total: int) -> int:
        written = 0
        for i in range(0, len(chunks), _IOV_MAX):
            part = chunks[i : i + _IOV_MAX]
            at = self.size + written
            written += _finish_short_write(self._fd, part, os.pwritev(self._fd, part, at), at)
        return written

    def _map_for(self, end: int) -> None:
        """Reserve space up to at least `end` (a preallocation step ahead) and map it."""
        self._unmap()
        target = max(end, self.size + self.preallocate_bytes)
        target = -(-target // _PAGE) * _PAGE
        if target > self._allocated:
            os.posix_fallocate(self._fd, self._allocated, target - self._allocated)
            self._allocated = target
        start = self.size // _PAGE * _PAGE
        self._map = mmap.mmap(self._fd, self._allocated - start, offset=start)
        self._map_start = start
        self._map_end = self._allocated

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self._map_end = 0

    def _trim(self) -> None:
        """Give back the space reserved past the logical end."""
        self._unmap()
        if self._allocated != self.size:
            os.ftruncate(self._fd, self.size)
            self._allocated = self.size

    def flush(self) -> None:
        os.fdatasync(self._fd)
        self.offset_index.flush(fsync=True)
        self.time_index.flush(fsync=True)

    def flush_indexes(self) -> None:
        self.offset_index.flush()
        self.time_index.flush()

    def on_roll(self) -> None:
        """The segment becomes read-only: record the final max timestamp, persist indexes."""
        self._trim()
        if self.max_timestamp > self.time_index.last_timestamp:
            self.time_index.append(self.max_timestamp, self.offset_of_max_timestamp)
        self.flush()

    # ------------------------------------------------------------------- read

    def pread(self, length: int, position: int) -> bytes:
        return os.pread(self._fd, length, position)

    def find_batch(self, offset: int) -> tuple[int, BatchHeader] | None:
        """(position, header) of the first batch whose last offset >= `offset`."""
        _, position = self.offset_index.lookup(offset)
        while position + HEADER_SIZE <= self.size:
            buf = os.pread(self._fd, HEADER_SIZE, position)
            if len(buf) < HEADER_SIZE:
                return None
            header = parse_header(buf)
            if header.last_offset >= offset:
                return position, header
            position += header.size
        return None

    def read(
        self, start_offset: int, max_bytes: int, max_offset: int | None, min_one_batch: bool
    ) -> tuple[memoryview, int] | None:
        """Whole batches from the one holding `start_offset`, within `max_bytes`.

        Only batches whose last offset < `max_offset` (exclusive bound, e.g. the high
        watermark) are returned. At least one batch when `min_one_batch`, even above
        `max_bytes`. Returns (bytes, next offset after the returned batches) or None.
        """
        found = self.find_batch(start_offset)
        if found is None:
            return None
        position, first = found
        if max_offset is not None and first.last_offset >= max_offset:
            return None
        want = min(max_bytes, self.size - position)
        if want < first.size:
            if not min_one_batch:
                return None
            want = first.size
        data = os.pread(self._fd, want, position)
        view = memoryview(data)
        end = 0
        next_offset = first.base_offset
        limit = len(data)
        while end + _OFFSETS_PREFIX <= limit:
            base, length = OFFSET_LENGTH.unpack_from(data, end)
            size = LOG_OVERHEAD + length
            if end + size > limit:
                break
            last = base + LAST_OFFSET_DELTA.unpack_from(data, end + LAST_OFFSET_DELTA_OFFSET)[0]
            if max_offset is not None and last >= max_offset:
                break
            end += size
            next_offset = last + 1
        if end == 0:
            return None
        return view[:end], next_offset

    def batch_headers(self, start_position: int = 0) -> list[tuple[int, BatchHeader]]:
        """(position, header) of every batch from `start_position`; reads in 1 MiB chunks."""
        out: list[tuple[int, BatchHeader]] = []
        position = start_position
        while position < self.size:
            buf = os.pread(self._fd, max(_SCAN_CHUNK, HEADER_SIZE), position)
            found = iter_headers(buf)
            if not found:
                # A batch larger than the chunk: read just its header.
                if len(buf) < HEADER_SIZE:
                    break
                header = parse_header(buf)
                if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
                    break
                if position + header.size > self.size:
                    break  # a partial batch is not a batch
                out.append((position, header))
                position += header.size
                continue
            for pos, header in found:
                out.append((position + pos, header))
            last_pos, last = found[-1]
            position += last_pos + last.size
        return out

    def read_batch(self, position: int, header: BatchHeader) -> bytes:
        return os.pread(self._fd, header.size, position)

    # ---------------------------------------------------------------- recovery

    def load(self, check_indexes: bool) -> bool:
        """Load a segment written by a clean shutdown (or before the recovery point).

        Index files are trusted only if they pass a sanity check. Returns False when anything
        does not add up (a bad index, a tail that is not a whole batch): the caller then runs
        `recover`, which validates every batch.
        """
        try:
            self.offset_index.load(self.size)
            self.time_index.load(1 << 32)
            if check_indexes:
                self._check_index_entries()
        except IndexCorruptError as e:
            logger.warning("%s: index does not match the log: %s", self.log_path, e)
            return False
        if self.size == 0:
            return True
        if not os.path.exists(self.offset_index.path):
            return False
        # Tail state (next offset, max timestamp) comes from the batches after the last entry.
        entries = self.offset_index.entries()
        start = entries[-1][1] if entries else 0
        headers_tail = self.batch_headers(start)
        if not headers_tail:
            return False
        last_pos, last = headers_tail[-1]
        if last_pos + last.size != self.size:
            logger.warning(
                "%s: the last batch does not end at the end of the file (%d != %d)",
                self.log_path,
                last_pos + last.size,
                self.size,
            )
            return False
        first = parse_header(os.pread(self._fd, HEADER_SIZE, 0))
        self._first_timestamp = first.max_timestamp
        self.next_offset = last.next_offset
        time_entries = self.time_index.entries()
        if time_entries:
            self.max_timestamp, self.offset_of_max_timestamp = time_entries[-1]
        for _, h in headers_tail:
            if h.max_timestamp > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = h.max_timestamp, h.last_offset
        self._bytes_since_index = self.size - start
        return True

    def _check_index_entries(self) -> None:
        for offset, position in self.offset_index.entries():
            buf = os.pread(self._fd, HEADER_SIZE, position)
            if len(buf) < HEADER_SIZE or parse_header(buf).base_offset != offset:
                raise IndexCorruptError(f"entry ({offset}, {position}) does not point at its batch")

    def rebuild_indexes(self) -> None:
        self.offset_index.reset()
        self.time_index.reset()
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self._bytes_since_index = 0
        self.next_offset = self.base_offset
        self._first_timestamp = None
        infos = [
            AppendInfo(h.base_offset, h.last_offset, h.max_timestamp, h.size)
            for _, h in self.batch_headers(0)
        ]
        self._index_batches(0, infos)
        self.flush_indexes()

    def _index_batches(self, position: int, infos: list[AppendInfo]) -> None:
        for info in infos:
            if self._bytes_since_index > self.index_interval_bytes:
                self.offset_index.append(info.base_offset, position)
                if self.max_timestamp > self.time_index.last_timestamp:
                    self.time_index.append(self.max_timestamp, self.offset_of_max_timestamp)
                self._bytes_since_index = 0
            if info.max_timestamp > self.max_timestamp:
                self.max_timestamp = info.max_timestamp
                self.offset_of_max_timestamp = info.last_offset
            if self._first_timestamp is None:
                self._first_timestamp = info.max_timestamp
            position += info.size
            self._bytes_since_index += info.size
            self.next_offset = info.last_offset + 1

    def recover(
        self,
        start_offset: int,
        max_batch_bytes: int,
        on_batch: Callable[[BatchHeader], None] | None = None,
    ) -> RecoveryResult:
        """Validate every batch (CRC included), truncate at the first bad one, rebuild indexes.

        `start_offset` is the smallest offset the first batch may carry (the previous
        segment's next offset).
        """
        self.offset_index.reset()
        self.time_index.reset()
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self._bytes_since_index = 0
        self.next_offset = self.base_offset
        self._first_timestamp = None
        expected = max(start_offset, self.base_offset)
        position = 0
        reason: str | None = None
        buf = b""
        buf_start = 0
        while position < self.size:
            at = position - buf_start
            if at + LOG_OVERHEAD > len(buf):
                buf, buf_start, at = os.pread(self._fd, _SCAN_CHUNK, position), position, 0
                if len(buf) < LOG_OVERHEAD:
                    reason = f"torn batch header ({len(buf)} bytes)"
                    break
            _, length = OFFSET_LENGTH.unpack_from(buf, at)
            if length < HEADER_SIZE - LOG_OVERHEAD or length > max_batch_bytes:
                reason = f"impossible batch length {length}"
                break
            if at + LOG_OVERHEAD + length > len(buf):
                want = max(_SCAN_CHUNK, LOG_OVERHEAD + length)
                buf, buf_start, at = os.pread(self._fd, want, position), position, 0
            try:
                header = validate_batch(buf, at, len(buf))
            except LogError as e:
                reason = str(e)
                break
            if header.base_offset < expected:
                reason = f"offset {header.base_offset} goes back (expected >= {expected})"
                break
            self._index_batches(
                position,
                [
                    AppendInfo(
                        header.base_offset, header.last_offset, header.max_timestamp, header.size
                    )
                ],
            )
            if on_batch is not None:
                on_batch(header)
            expected = header.next_offset
            position += header.size
        truncated = self.size - position
        if truncated and self._all_zero(position):
            # Space reserved ahead of the writes (see `append`) that was never written.
            logger.info(
                "%s: dropping %d bytes of unused preallocated space", self.log_path, truncated
            )
            truncated, reason = 0, None
            os.ftruncate(self._fd, position)
            self.size = self._allocated = position
        elif truncated:
            logger.warning(
                "%s: truncating %d bytes at position %d: %s",
                self.log_path,
                truncated,
                position,
                reason,
            )
            os.ftruncate(self._fd, position)
            self.size = self._allocated = position
        self.flush()
        return RecoveryResult(truncated, reason if truncated else None)

    def _all_zero(self, position: int) -> bool:
        while position < self.size:
            chunk = os.pread(self._fd, min(_SCAN_CHUNK, self.size - position), position)
            if not chunk or chunk.count(0) != len(chunk):
                return False
            position += len(chunk)
        return True

    # -------------------------------------------------------------- truncate

    def truncate_to(self, offset: int) -> int:
        """Remove every batch holding an offset >= `offset`; returns bytes removed.

        A batch straddling `offset` goes whole: a batch is never split.
        """
        if offset <= self.base_offset:
            position = 0
        else:
            found = self.find_batch(offset)
            if found is None:
                return 0
            position = found[0]
        removed = self.size - position
        if removed <= 0:
            return 0
        self._unmap()
        os.ftruncate(self._fd, position)
        self.size = self._allocated = position
        self.offset_index.truncate_entries(self.offset_index.position_at_or_after(position))
        # Recompute tail state: time-index entry (t, o) is the running max up to o, so only
        # batches after o need a look.
        self.time_index.truncate_to_offset(offset)
        time_entries = self.time_index.entries()
        if time_entries:
            self.max_timestamp, self.offset_of_max_timestamp = time_entries[-1]
            found = self.find_batch(self.offset_of_max_timestamp)
            scan_from = found[0] if found else 0
        else:
            self.max_timestamp, self.offset_of_max_timestamp = -1, -1
            scan_from = 0
        headers = self.batch_headers(scan_from)
        for _, h in headers:
            if h.max_timestamp > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = h.max_timestamp, h.last_offset
        self.next_offset = headers[-1][1].next_offset if headers else self.base_offset
        if position == 0:
            self.next_offset = self.base_offset
            self._first_timestamp = None
        entries = self.offset_index.entries()
        self._bytes_since_index = position - (entries[-1][1] if entries else 0)
        return removed

    # -------------------------------------------------------------- lifecycle

    def close(self) -> None:
        if self._fd >= 0:
            self._trim()
            self.flush_indexes()
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self._unmap()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _finish_short_write(
    fd: int, chunks: Sequence[bytes | bytearray | memoryview], done: int, at: int
) -> int:
    """After a short pwritev (signals, a full disk), write the rest piece by piece."""
    total = done
    skip = done
    for chunk in chunks:
        view = memoryview(chunk)
        if skip >= len(view):
            skip -= len(view)
            continue
        view = view[skip:]
        skip = 0
        while view:
            n = os.pwrite(fd, view, at + total)
            if n == 0:
                raise LogStorageError("write returned 0 bytes")
            view = view[n:]
            total += n
    return total
