"""Log compaction (`cleanup.policy=compact`): keep the latest record of every key.

This is the one place besides timestamp lookup and key validation where records are decoded.

A pass over a log:
1. The cleanable range is the closed segments wholly below the high watermark whose records
   are all older than `min.compaction.lag.ms`; the active segment is never touched.
2. An offset map (key → offset of its latest record) is built over that range, plus each
   idempotent producer's last batch in it.
3. Each segment is rewritten into `<base>.log.cleaned`: a batch whose records all survive is
   copied byte for byte; otherwise it is re-encoded with the surviving records, keeping its
   base offset, last offset delta, producer fields, epoch and codec. Tombstones (null values)
   survive until their segment is older than `delete.retention.ms`. A batch left with no
   records is dropped, unless it is its producer's last batch: its empty header keeps the
   producer's sequence state.
4. Swap, crash-safe: fsync `.cleaned`, rename it to `.log.swap` (from now on start-up
   completes the swap), delete the old indexes, rename over the `.log`, rebuild the indexes.
   The swap happens under the log's lock and only if the segment is still in the log.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kraft.log.batch import BatchHeader
from kraft.log.checkpoint import fsync_dir
from kraft.log.errors import LogError
from kraft.log.partition_log import Clock, PartitionLog, wall_clock_ms
from kraft.log.records import Record, build_batch, decode_records
from kraft.log.segment import LogSegment

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class CleanStats:
    segments: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    records_removed: int = 0
    batches_removed: int = 0
    skipped: list[str] = field(default_factory=list)


class LogCleaner:
    def __init__(self, clock: Clock = wall_clock_ms, backoff_ms: int = 15_000) -> None:
        self.clock = clock
        self.backoff_ms = backoff_ms
        # Log → offset up to which it was cleaned by this process: the rest is "dirty".
        self._cleaned_upto: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ scheduling

    def dirty_ratio(self, log: PartitionLog) -> float:
        segments = self._cleanable_segments(log, self.clock())
        total = sum(s.size for s in segments)
        if total == 0:
            return 0.0
        upto = self._cleaned_upto.get(log.directory, -1)
        dirty = sum(s.size for s in segments if s.next_offset > upto)
        return dirty / total

    def start(self, logs: Callable[[], Iterable[PartitionLog]]) -> None:
        """Clean, in a daemon thread, every compacted log that `logs()` returns once its
        dirty ratio reaches `min.cleanable.dirty.ratio`."""

        def run() -> None:
            while not self._stop.wait(self.backoff_ms / 1000):
                for log in list(logs()):
                    if self._stop.is_set():
                        return
                    if not log.config.compact:
                        continue
                    try:
                        if self.dirty_ratio(log) >= log.config.min_cleanable_dirty_ratio:
                            self.clean(log)
                    except (OSError, LogError) as e:
                        logger.error("cleaning %s failed: %s", log.directory, e)

        self._thread = threading.Thread(target=run, name="log-cleaner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------------ pass

    def _cleanable_segments(self, log: PartitionLog, now: int) -> list[LogSegment]:
        with log.lock:
            segments = list(log.segments)
            hw = log.high_watermark
        out: list[LogSegment] = []
        lag = log.config.min_compaction_lag_ms
        for seg, nxt in zip(segments, segments[1:], strict=False):
            if nxt.base_offset > hw or (lag > 0 and seg.max_timestamp > now - lag):
                break
            out.append(seg)
        return out

    def clean(self, log: PartitionLog) -> CleanStats:
        now = self.clock()
        stats = CleanStats()
        segments = self._cleanable_segments(log, now)
        if not segments:
            return stats
        latest, producer_last = self._build_offset_map(segments)
        horizon = now - log.config.delete_retention_ms
        for seg in segments:
            drop_tombstones = 0 <= seg.max_timestamp < horizon
            path = seg.log_path + ".cleaned"
            written, removed_records, removed_batches = self._rewrite(
                seg, path, latest, producer_last, drop_tombstones
            )
            stats.bytes_read += seg.size
            if removed_records == 0 and removed_batches == 0:
                os.unlink(path)
                continue
            if not self._swap(log, seg, path):
                stats.skipped.append(seg.log_path)
                continue
            stats.segments += 1
            stats.bytes_written += written
            stats.records_removed += removed_records
            stats.batches_removed += removed_batches
        self._cleaned_upto[log.directory] = segments[-1].next_offset
        if stats.segments:
            logger.info(
                "%s: compacted %d segments, %d -> %d bytes, %d records removed",
                log.directory,
                stats.segments,
                stats.bytes_read,
                stats.bytes_written,
                stats.records_removed,
            )
        return stats

    @staticmethod
    def _build_offset_map(
        segments: list[LogSegment],
    ) -> tuple[dict[bytes, int], dict[int, int]]:
        latest: dict[bytes, int] = {}
        producer_last: dict[int, int] = {}
        for seg in segments:
            for pos, header in seg.batch_headers(0):
                if header.producer_id >= 0:
                    producer_last[header.producer_id] = header.base_offset
                if header.is_control:
                    continue
                for record in decode_records(seg.read_batch(pos, header)):
                    if record.key is not None:
                        latest[record.key] = header.base_offset + record.offset_delta
        return latest, producer_last

    @staticmethod
    def _rewrite(
        seg: LogSegment,
        path: str,
        latest: dict[bytes, int],
        producer_last: dict[int, int],
        drop_tombstones: bool,
    ) -> tuple[int, int, int]:
        removed_records = 0
        removed_batches = 0
        written = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for pos, header in seg.batch_headers(0):
                batch = seg.read_batch(pos, header)
                if header.is_control:
                    out: bytes | None = batch
                else:
                    records = decode_records(batch)
                    kept = [
                        r
                        for r in records
                        if _survives(
                            r, header.base_offset + r.offset_delta, latest, drop_tombstones
                        )
                    ]
                    removed_records += len(records) - len(kept)
                    if len(kept) == len(records):
                        out = batch
                    elif kept or producer_last.get(header.producer_id) == header.base_offset:
                        out = _rebuild(header, kept)
                    else:
                        out = None
                if out is None:
                    removed_batches += 1
                    continue
                view = memoryview(out)
                while view:
                    view = view[os.write(fd, view) :]
                written += len(out)
            os.fsync(fd)
        finally:
            os.close(fd)
        return written, removed_records, removed_batches

    @staticmethod
    def _swap(log: PartitionLog, seg: LogSegment, cleaned: str) -> bool:
        swap = seg.log_path + ".swap"
        os.replace(cleaned, swap)
        fsync_dir(seg.directory)
        with log.lock:
            try:
                index = next(i for i, s in enumerate(log.segments) if s is seg)
            except StopIteration:
                # Truncated or deleted meanwhile: the cleaned copy is stale.
                os.unlink(swap)
                return False
            seg.delete()  # old .log, .index, .timeindex
            os.replace(swap, seg.log_path)
            fsync_dir(seg.directory)
            fresh = LogSegment(
                seg.directory, seg.base_offset, seg.index_interval_bytes, seg.created_ms
            )
            fresh.rebuild_indexes()
            log.replace_segment(index, fresh)
        return True


def _survives(record: Record, offset: int, latest: dict[bytes, int], drop_tombstones: bool) -> bool:
    if record.key is None:
        return True  # only possible for data written before the topic became compacted
    if latest.get(record.key, offset) > offset:
        return False
    return not (drop_tombstones and record.value is None)


def _rebuild(header: BatchHeader, kept: list[Record]) -> bytes:
    data = build_batch(
        kept,
        base_offset=header.base_offset,
        compression=header.compression,
        partition_leader_epoch=header.partition_leader_epoch,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        timestamp_type=header.timestamp_type,
        base_timestamp=header.base_timestamp,
        max_timestamp=header.max_timestamp,
        last_offset_delta=header.last_offset_delta,
    )
    return data
