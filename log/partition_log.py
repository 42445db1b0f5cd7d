"""The log of one partition: a directory `<topic>-<partition>` of segments.

Invariants:
- segments are sorted by base offset and do not overlap; only the last (active) one is
  appended to;
- log_start_offset <= high_watermark <= log_end_offset;
- recovery_point <= log_end_offset, and every byte below it has been fsynced;
- the leader-epoch cache has no entry at or beyond log_end_offset.

All public methods take the log's lock: the compaction cleaner swaps segments from its own
thread while the broker appends and reads from the event loop.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from kraft.log.batch import (
    CRC_START,
    LOG_OVERHEAD,
    MAX_TIMESTAMP_OFFSET,
    PREFIX,
    PREFIX_SIZE,
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
    crc32c,
    parse_header,
    validate_batch,
)
from kraft.log.batch import MAX_TIMESTAMP as MAX_TIMESTAMP_FIELD
from kraft.log.checkpoint import LeaderEpochCache
from kraft.log.config import LogConfig
from kraft.log.errors import (
    CorruptRecordError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    RecordBatchTooLargeError,
)
from kraft.log.loader import load_log, rebuild_producer_state
from kraft.log.producer_state import OutOfOrderSequenceError, ProducerStateManager
from kraft.log.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    AppendInfo,
    LogSegment,
)

logger = logging.getLogger(__name__)

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
MAX_TIMESTAMP = -3

Clock = Callable[[], int]
# Space reserved ahead of the active segment's writes (Redpanda reserves in steps too).
PREALLOCATE_STEP = 16 << 20


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_dir_name(name: str) -> tuple[str, int] | None:
    """`orders-3` → ("orders", 3); topic names may contain '-', the partition is after the last."""
    topic, sep, partition = name.rpartition("-")
    if not sep or not topic or not partition.isdigit():
        return None
    return topic, int(partition)


@dataclass(slots=True)
class AppendResult:
    first_offset: int
    last_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    log_append_time: int  # -1 unless message.timestamp.type=LogAppendTime
    batches: list[BatchHeader]
    valid_bytes: int
    duplicate: bool = False  # a retried idempotent batch: not appended again


@dataclass(slots=True)
class ReadResult:
    records: memoryview  # whole batches, ready for a socket; empty when nothing to return
    first_offset: int  # base offset of the first returned batch (or the requested offset)
    next_offset: int  # offset after the last returned batch
    log_start_offset: int
    log_end_offset: int
    high_watermark: int


@dataclass(slots=True)
class TimestampOffset:
    offset: int
    timestamp: int
    leader_epoch: int


class PartitionLog:
    def __init__(
        self,
        directory: str,
        config: LogConfig,
        *,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        high_watermark: int = 0,
        clean_shutdown: bool = False,
        clock: Clock = wall_clock_ms,
    ) -> None:
        parsed = parse_dir_name(os.path.basename(os.path.normpath(directory)))
        if parsed is None:
            raise ValueError(f"{directory}: not a <topic>-<partition> directory")
        self.topic, self.partition = parsed
        self.directory = directory
        self.config = config
        self.clock = clock
        # Told how long each flush took, in seconds (the owner's flush-time metric).
        self.on_flush: Callable[[float], None] | None = None
        self._lock = threading.RLock()
        os.makedirs(directory, exist_ok=True)
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.leader_epoch_cache = LeaderEpochCache(
            os.path.join(directory, LeaderEpochCache.FILE_NAME)
        )
        self.producer_state = ProducerStateManager(directory)
        self._rolled = False
        self._unflushed_messages = 0
        self._last_flush_ms = clock()
        self._load(recovery_point, log_start_offset, clean_shutdown)
        self.high_watermark = min(max(high_watermark, self.log_start_offset), self.log_end_offset)

    # ------------------------------------------------------------------ load (log.loader)

    def _load(self, recovery_point: int, log_start_offset: int, clean_shutdown: bool) -> None:
        loaded = load_log(
            self.directory,
            self.config,
            self.clock(),
            self._preallocate_bytes(),
            self.leader_epoch_cache,
            self._new_segment,
            recovery_point=recovery_point,
            log_start_offset=log_start_offset,
            clean_shutdown=clean_shutdown,
        )
        self.segments = loaded.segments
        self._bases = [s.base_offset for s in self.segments]
        self.log_start_offset = loaded.log_start_offset
        # After a clean shutdown everything was flushed; after recovery everything left was
        # validated and fsynced.
        self.recovery_point = self.log_end_offset
        self._rebuild_producer_state()

    def _rebuild_producer_state(self) -> None:
        rebuild_producer_state(
            self.producer_state,
            self.segments,
            self._bases,
            self.log_start_offset,
            self.log_end_offset,
        )

    def _new_segment(self, base_offset: int) -> LogSegment:
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            path = os.path.join(self.directory, f"{base_offset:020d}{suffix}")
            if os.path.exists(path):
                os.unlink(path)
        return LogSegment(
            self.directory,
            base_offset,
            self.config.index_interval_bytes,
            self.clock(),
            self._preallocate_bytes(),
        )

    def _preallocate_bytes(self) -> int:
        return min(PREALLOCATE_STEP, self.config.segment_bytes)

    # ----------------------------------------------------------------- state

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def active_segment(self) -> LogSegment:
        return self.segments[-1]

    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def set_high_watermark(self, offset: int) -> None:
        with self._lock:
            self.high_watermark = min(max(offset, self.log_start_offset), self.log_end_offset)

    def update_config(self, config: LogConfig) -> None:
        with self._lock:
            self.config = config
            self.active_segment.preallocate_bytes = self._preallocate_bytes()

    # ---------------------------------------------------------------- append

    def append_as_leader(
        self, data: bytes | bytearray | memoryview, leader_epoch: int
    ) -> AppendResult:
        """Validate the producer's batches, assign offsets and the epoch, and write them.

        Nothing is written unless every batch is valid.
        """
        with self._lock:
            view = memoryview(data)
            config = self.config
            headers = self._validate(view, True, config)
            producers = len(headers) > 1 or headers[0].producer_id >= 0
            if producers:
                duplicate = self._check_producers(headers)
                if duplicate is not None:
                    return duplicate
            now = self.clock()
            base = first = self.log_end_offset
            chunks: list[bytes | bytearray | memoryview] = []
            infos: list[AppendInfo] = []
            append_time = now if config.log_append_time else -1
            max_ts = offset_of_max = -1
            pos = 0
            pack = PREFIX.pack
            # Fields by index: the header is a tuple and this loop is the hot path.
            # h[1] batch_length, h[6] last_offset_delta, h[8] max_timestamp.
            for h in headers:
                size = LOG_OVERHEAD + h[1]
                last = base + h[6]
                ts = h[8]
                if append_time >= 0:
                    ts = now
                    chunks.append(
                        self._with_log_append_time(view[pos : pos + size], base, leader_epoch, now)
                    )
                else:
                    chunks.append(pack(base, h[1], leader_epoch, 2))
                    chunks.append(view[pos + PREFIX_SIZE : pos + size])
                infos.append(AppendInfo(base, last, ts, size))
                if ts > max_ts:
                    max_ts, offset_of_max = ts, last
                base = last + 1
                pos += size
            # The epoch goes into the cache before the data: a crash in between leaves an entry
            # past the log end, which loading removes; the other order could lose the entry.
            if leader_epoch > self.leader_epoch_cache.latest_epoch:
                self.leader_epoch_cache.assign(leader_epoch, first)
            self._write(chunks, infos, now, 1 if append_time >= 0 else 2, pos)
            if producers:
                for h, info in zip(headers, infos, strict=True):
                    if h.producer_id >= 0:
                        self.producer_state.update(h, info.base_offset, info.max_timestamp)
            if self._rolled:
                self._snapshot_if_rolled()
            return AppendResult(first, base - 1, max_ts, offset_of_max, append_time, headers, pos)

    def _snapshot_if_rolled(self) -> None:
        # Like Kafka, snapshot producer state when a segment rolls, so a restart replays at
        # most about one segment; taken after the whole append is in the state.
        if self._rolled and self.producer_state.producers:
            self.producer_state.write_snapshot(self.log_end_offset)
        self._rolled = False

    def _check_producers(self, headers: list[BatchHeader]) -> AppendResult | None:
        """Sequence checks for idempotent batches; a retried batch returns its original."""
        state = self.producer_state
        if len(headers) == 1 and headers[0].producer_id >= 0:
            original = state.find_duplicate(headers[0])
            if original is not None:
                h = headers[0]
                return AppendResult(
                    original.first_offset,
                    original.last_offset,
                    h.max_timestamp,
                    original.last_offset,
                    -1,
                    headers,
                    0,
                    duplicate=True,
                )
        previous: dict[int, BatchHeader] = {}
        for header in headers:
            if header.producer_id < 0:
                continue
            before = previous.get(header.producer_id)
            if before is None:
                state.check(header)
            elif header.producer_epoch != before.producer_epoch or (
                header.base_sequence != ((before.last_sequence + 1) & 0x7FFFFFFF)
            ):
                raise OutOfOrderSequenceError(
                    f"producer {header.producer_id}: batches of one request out of sequence"
                )
            previous[header.producer_id] = header
        return None

    def append_as_follower(
        self, data: bytes | bytearray | memoryview, allow_gaps: bool = False
    ) -> AppendResult:
        """Append batches that already carry offsets and epochs (replication).

        Offsets must continue the log: the first batch at the log end offset and each next
        batch right after the previous one; with `allow_gaps` (a compacted leader's log) they
        need only increase.
        """
        with self._lock:
            view = memoryview(data)
            headers = self._validate(view, False, self.config)
            expected = self.log_end_offset
            for header in headers:
                if header.base_offset != expected and not (
                    allow_gaps and header.base_offset > expected
                ):
                    raise InvalidRecordError(
                        f"{self.topic}-{self.partition}: batch at offset {header.base_offset} "
                        f"does not continue the log at {expected}"
                    )
                expected = header.next_offset
            infos = [
                AppendInfo(h.base_offset, h.last_offset, h.max_timestamp, h.size) for h in headers
            ]
            if allow_gaps and infos[0].base_offset > self.log_end_offset:
                self._roll_to(infos[0].base_offset)
            pos = 0
            chunks: list[bytes | bytearray | memoryview] = []
            for h in headers:
                chunks.append(view[pos : pos + h.size])
                pos += h.size
            for h in headers:
                self.leader_epoch_cache.assign(h.partition_leader_epoch, h.base_offset)
            self._write(chunks, infos, self.clock(), 1, pos)
            for h in headers:
                if h.producer_id >= 0 and not h.is_control:
                    self.producer_state.update(h, h.base_offset, h.max_timestamp)
            self._snapshot_if_rolled()
            return self._result(infos, headers, -1, pos)

    def _validate(self, view: memoryview, leader: bool, config: LogConfig) -> list[BatchHeader]:
        headers: list[BatchHeader] = []
        pos = 0
        end = len(view)
        if end == 0:
            raise InvalidRecordError("no record batch to append")
        limit = config.max_message_bytes if leader else config.segment_bytes
        limit = min(limit, config.segment_bytes)
        while pos < end:
            header = validate_batch(view, pos, end)
            size = LOG_OVERHEAD + header[1]
            if size > limit:
                raise RecordBatchTooLargeError(
                    f"batch of {size} bytes exceeds the limit ({config.max_message_bytes} "
                    f"max.message.bytes, {config.segment_bytes} segment.bytes)"
                )
            # header[12] records_count, header[6] last_offset_delta
            if leader and header[12] != header[6] + 1:
                raise InvalidRecordError(
                    f"record count {header.records_count} does not match last offset delta "
                    f"{header.last_offset_delta}"
                )
            headers.append(header)
            pos += size
        if leader and config.compact:
            self._check_keys(view)
        return headers

    def _check_keys(self, view: memoryview) -> None:
        from kraft.log.records import decode_records  # decoding is off the hot path

        pos = 0
        while pos < len(view):
            header = parse_header(view, pos)
            if not header.is_control:
                for record in decode_records(view[pos : pos + header.size]):
                    if record.key is None:
                        raise InvalidRecordError(
                            "compacted topic cannot accept a record without a key"
                        )
            pos += header.size

    @staticmethod
    def _with_log_append_time(
        batch: memoryview, base_offset: int, leader_epoch: int, now: int
    ) -> bytes:
        # LogAppendTime changes attributes and max_timestamp, inside the CRC: recompute it.
        buf = bytearray(batch)
        header = parse_header(buf)
        PREFIX.pack_into(buf, 0, base_offset, header.batch_length, leader_epoch, 2)
        attributes = header.attributes | TIMESTAMP_TYPE_MASK
        buf[21:23] = attributes.to_bytes(2, "big", signed=True)
        MAX_TIMESTAMP_FIELD.pack_into(buf, MAX_TIMESTAMP_OFFSET, now)
        buf[17:21] = crc32c(memoryview(buf)[CRC_START:]).to_bytes(4, "big")
        return bytes(buf)

    def _write(
        self,
        chunks: list[bytes | bytearray | memoryview],
        infos: list[AppendInfo],
        now: int,
        per_batch_chunks: int,
        total: int,
    ) -> None:
        segment = self.segments[-1]
        last = infos[-1]
        if (
            segment.size + total <= self.config.segment_bytes
            and last.last_offset - segment.base_offset <= 0xFFFFFFFF
            and not self._should_roll(segment, infos[0], now)
        ):
            segment.append(chunks, infos, total)  # the common case: it all fits
        else:
            self._write_rolling(chunks, infos, now, per_batch_chunks)
        self._unflushed_messages += last.last_offset - infos[0].base_offset + 1
        if (
            self._unflushed_messages >= self.config.flush_messages
            or now - self._last_flush_ms >= self.config.flush_ms
        ):
            self._flush_locked()

    def _write_rolling(
        self,
        chunks: list[bytes | bytearray | memoryview],
        infos: list[AppendInfo],
        now: int,
        per_batch_chunks: int,
    ) -> None:
        start = 0
        while start < len(infos):
            segment = self.active_segment
            if self._should_roll(segment, infos[start], now):
                self._roll_to(infos[start].base_offset)
                segment = self.active_segment
            # Take as many batches as fit in this segment (at least one).
            stop = start + 1
            room = self.config.segment_bytes - segment.size - infos[start].size
            while (
                stop < len(infos)
                and infos[stop].size <= room
                and (infos[stop].last_offset - segment.base_offset <= 0xFFFFFFFF)
            ):
                room -= infos[stop].size
                stop += 1
            part = infos[start:stop]
            segment.append(
                chunks[start * per_batch_chunks : stop * per_batch_chunks],
                part,
                sum(i.size for i in part),
            )
            start = stop

    def _should_roll(self, segment: LogSegment, info: AppendInfo, now: int) -> bool:
        if segment.is_empty:
            return False
        # Like Kafka, segment.ms compares the new batch's timestamp with the segment's first
        # timestamp (record time, not wall time) when both exist.
        first = segment.first_timestamp
        if first is not None and first >= 0 and info.max_timestamp >= 0:
            waited = info.max_timestamp - first
        else:
            waited = now - segment.created_ms
        return (
            segment.size + info.size > self.config.segment_bytes
            or waited > self.config.segment_ms
            or info.last_offset - segment.base_offset > 0xFFFFFFFF
        )

    def _result(
        self,
        infos: list[AppendInfo],
        headers: list[BatchHeader],
        append_time: int,
        valid_bytes: int,
    ) -> AppendResult:
        max_ts = -1
        offset_of_max = infos[0].base_offset
        for info in infos:
            if info.max_timestamp > max_ts:
                max_ts, offset_of_max = info.max_timestamp, info.last_offset
        return AppendResult(
            infos[0].base_offset,
            infos[-1].last_offset,
            max_ts,
            offset_of_max,
            append_time,
            headers,
            valid_bytes,
        )

    def roll(self) -> None:
        with self._lock:
            if not self.active_segment.is_empty:
                self._roll_to(self.log_end_offset)

    def _roll_to(self, base_offset: int) -> None:
        old = self.active_segment
        if old.is_empty:
            # Nothing in it: replace it rather than leaving an empty segment behind.
            old.delete()
            self.segments.pop()
            self._bases.pop()
        else:
            old.on_roll()
            self._rolled = True
        segment = self._new_segment(base_offset)
        self.segments.append(segment)
        self._bases.append(base_offset)

    # ------------------------------------------------------------------ read

    def read(
        self,
        offset: int,
        max_bytes: int,
        max_offset: int | None = None,
        min_one_batch: bool = True,
    ) -> ReadResult:
        """Whole batches from the one holding `offset`, up to `max_bytes` (at least one batch
        when `min_one_batch`), never a batch reaching `max_offset` (e.g. the high watermark)."""
        with self._lock:
            leo = self.log_end_offset
            if offset < self.log_start_offset or offset > leo:
                raise OffsetOutOfRangeError(
                    f"{self.topic}-{self.partition}: offset {offset} outside "
                    f"[{self.log_start_offset}, {leo}]"
                )
            i = max(bisect_right(self._bases, offset) - 1, 0)
            while i < len(self.segments):
                got = self.segments[i].read(offset, max_bytes, max_offset, min_one_batch)
                if got is not None:
                    records, next_offset = got
                    first = parse_header(records).base_offset
                    return ReadResult(
                        records, first, next_offset, self.log_start_offset, leo, self.high_watermark
                    )
                i += 1
            return ReadResult(
                memoryview(b""), offset, offset, self.log_start_offset, leo, self.high_watermark
            )

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        """ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first record
        with timestamp >= `timestamp`."""
        with self._lock:
            if timestamp == EARLIEST_TIMESTAMP:
                epoch = self.epoch_at(self.log_start_offset)
                return TimestampOffset(self.log_start_offset, -1, epoch)
            if timestamp == LATEST_TIMESTAMP:
                return TimestampOffset(
                    self.log_end_offset, -1, self.leader_epoch_cache.latest_epoch
                )
            if timestamp == MAX_TIMESTAMP:
                return self._max_timestamp_offset()
            if timestamp < 0:
                return None
            for segment in self.segments:
                if segment.max_timestamp < timestamp:
                    continue
                start = max(segment.time_index.lookup(timestamp), self.log_start_offset)
                found = segment.find_batch(start)
                if found is None:
                    continue
                for pos, header in segment.batch_headers(found[0]):
                    if header.max_timestamp >= timestamp and header.last_offset >= start:
                        batch = segment.read_batch(pos, header)
                        hit = _first_record_at_or_after(batch, header, timestamp, start)
                        if hit is not None:
                            offset, ts = hit
                            return TimestampOffset(offset, ts, header.partition_leader_epoch)
            return None

    def _max_timestamp_offset(self) -> TimestampOffset | None:
        best: LogSegment | None = None
        for segment in self.segments:
            if segment.max_timestamp >= 0 and (
                best is None or segment.max_timestamp > best.max_timestamp
            ):
                best = segment
        if best is None:
            return None
        found = best.find_batch(best.offset_of_max_timestamp)
        if found is None:
            return None
        pos, header = found
        batch = best.read_batch(pos, header)
        hit = _first_record_at_or_after(batch, header, best.max_timestamp, header.base_offset)
        if hit is None:
            return TimestampOffset(header.last_offset, header.max_timestamp, -1)
        return TimestampOffset(hit[0], hit[1], header.partition_leader_epoch)

    def epoch_at(self, offset: int) -> int:
        epoch = -1
        for e, start in self.leader_epoch_cache.entries():
            if start <= offset:
                epoch = e
        return epoch

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= `epoch`, its end offset) or (-1, -1)."""
        with self._lock:
            return self.leader_epoch_cache.end_offset_for(epoch, self.log_end_offset)

    # -------------------------------------------------------------- truncate

    def truncate_to(self, offset: int) -> int:
        """Remove everything at or above `offset` (a follower's diverging suffix).

        A batch holding `offset` is removed whole. Returns the new log end offset.
        """
        with self._lock:
            if offset >= self.log_end_offset:
                # Nothing to remove, but the leader-epoch cache may hold an epoch starting at
                # the log end with no batch (this broker led it without appending): that entry
                # is the divergence, and keeping it would make the leader report it forever.
                self.leader_epoch_cache.truncate_from_end(self.log_end_offset)
                return self.log_end_offset
            if offset < self.log_start_offset:
                self._truncate_fully_locked(offset)
                return offset
            logger.info(
                "%s-%d: truncating from %d to %d",
                self.topic,
                self.partition,
                self.log_end_offset,
                offset,
            )
            while len(self.segments) > 1 and self.segments[-1].base_offset >= offset:
                self.segments.pop().delete()
                self._bases.pop()
            self.active_segment.truncate_to(offset)
            leo = self.log_end_offset
            self.leader_epoch_cache.truncate_from_end(leo)
            self._rebuild_producer_state()
            self.high_watermark = min(self.high_watermark, leo)
            self.recovery_point = min(self.recovery_point, leo)
            return leo

    def truncate_fully_and_start_at(self, offset: int) -> None:
        with self._lock:
            self._truncate_fully_locked(offset)

    def _truncate_fully_locked(self, offset: int) -> None:
        logger.info("%s-%d: truncating fully, restarting at %d", self.topic, self.partition, offset)
        for segment in self.segments:
            segment.delete()
        self.segments = [self._new_segment(offset)]
        self._bases = [offset]
        self.log_start_offset = offset
        self.high_watermark = offset
        self.recovery_point = offset
        self.leader_epoch_cache.clear()
        self.producer_state.truncate()

    # ----------------------------------------------------------------- flush

    def flush(self) -> None:
        """fsync everything appended so far; the recovery point moves to the log end."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        start = time.perf_counter()
        for segment in self.segments:
            if segment.next_offset > self.recovery_point or segment is self.active_segment:
                segment.flush()
        if self.on_flush is not None:
            self.on_flush(time.perf_counter() - start)
        self.recovery_point = self.log_end_offset
        self._unflushed_messages = 0
        self._last_flush_ms = self.clock()

    def maybe_flush(self, now: int) -> None:
        with self._lock:
            if self._unflushed_messages and now - self._last_flush_ms >= self.config.flush_ms:
                self._flush_locked()

    # ------------------------------------------------------------- retention

    def delete_old_segments(self, now: int | None = None) -> int:
        """Retention: delete closed segments below the log start offset, and (with
        cleanup.policy=delete) beyond `retention.ms` / `retention.bytes`. Never the active
        segment, never data at or above the high watermark. Returns segments deleted."""
        with self._lock:
            now = self.clock() if now is None else now
            deletable = 0
            n = len(self.segments) - 1  # the active segment is never deleted
            total = self.size_bytes()
            cfg = self.config
            while deletable < n:
                seg = self.segments[deletable]
                upper = self.segments[deletable + 1].base_offset
                if upper > self.high_watermark:
                    break
                by_start = upper <= self.log_start_offset
                by_time = (
                    cfg.delete
                    and cfg.retention_ms >= 0
                    and (now - _largest_time(seg) > cfg.retention_ms)
                )
                by_size = (
                    cfg.delete
                    and cfg.retention_bytes >= 0
                    and (total - seg.size >= cfg.retention_bytes)
                )
                if not (by_start or by_time or by_size):
                    break
                total -= seg.size
                deletable += 1
            if deletable:
                self._delete_first_segments(deletable)
            return deletable

    def _delete_first_segments(self, count: int) -> None:
        doomed = self.segments[:count]
        self.segments = self.segments[count:]
        self._bases = self._bases[count:]
        self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
        # Files first, then the cache: a crash in between leaves a cache that still covers
        # the whole log.
        for seg in doomed:
            logger.info("%s: deleting segment (retention)", seg.log_path)
            seg.delete()
        self.leader_epoch_cache.truncate_from_start(self.log_start_offset)

    def advance_log_start_offset(self, offset: int) -> int:
        """DeleteRecords: records below `offset` (<= high watermark) become unreadable, and
        whole segments below it are deleted. Returns the new log start offset."""
        with self._lock:
            if offset > self.high_watermark:
                raise OffsetOutOfRangeError(
                    f"cannot delete records up to {offset}: above the high watermark "
                    f"{self.high_watermark}"
                )
            if offset > self.log_start_offset:
                self.log_start_offset = offset
                self.leader_epoch_cache.truncate_from_start(offset)
                count = 0
                while (
                    count < len(self.segments) - 1
                    and self.segments[count + 1].base_offset <= offset
                ):
                    count += 1
                if count:
                    self._delete_first_segments(count)
            return self.log_start_offset

    # ------------------------------------------------------------- lifecycle

    def close(self) -> None:
        with self._lock:
            self._flush_locked()
            self.producer_state.write_snapshot(self.log_end_offset)
            for segment in self.segments:
                segment.close()

    def delete(self) -> None:
        """Remove the partition directory (the topic was deleted)."""
        with self._lock:
            for segment in self.segments:
                segment.delete()
            shutil.rmtree(self.directory, ignore_errors=True)

    # Used by the compaction cleaner, under the lock.
    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def replace_segment(self, index: int, segment: LogSegment) -> None:
        self.segments[index] = segment
        self._bases[index] = segment.base_offset


def _largest_time(segment: LogSegment) -> int:
    return segment.max_timestamp if segment.max_timestamp >= 0 else segment.last_modified_ms()


def _first_record_at_or_after(
    batch: bytes, header: BatchHeader, timestamp: int, min_offset: int
) -> tuple[int, int] | None:
    from kraft.log.records import decode_records  # decoding is off the hot path

    if header.timestamp_type == 1:
        # LogAppendTime: every record carries the batch's max timestamp.
        if header.max_timestamp >= timestamp:
            return max(header.base_offset, min_offset), header.max_timestamp
        return None
    try:
        records = decode_records(batch)
    except CorruptRecordError:
        return None
    for record in records:
        offset = header.base_offset + record.offset_delta
        ts = header.base_timestamp + record.timestamp_delta
        if ts >= timestamp and offset >= min_offset:
            return offset, ts
    return None
