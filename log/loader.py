"""Loading a partition's directory at start-up, and crash recovery (Kafka's LogLoader).

What a load does, in order:
1. finish or undo a compaction swap a crash interrupted (`*.log.swap` complete: renamed into
   place; `.cleaned`, `.deleted`, `.tmp` leftovers: removed — see `log.cleaner`);
2. delete index files whose segment is gone;
3. open every segment. After a clean shutdown each segment only checks its indexes. After an
   unclean one, the segments from the one holding the recovery point on are scanned batch by
   batch: the first torn or corrupt batch truncates its segment there, every later segment
   is deleted, and indexes are rebuilt; the leader-epoch cache is rebuilt from the epochs of
   the recovered batches (a crash may have lost its last entries);
4. clamp the log start offset to the first segment, the recovery point to the log end, and the
   leader-epoch cache to [log start, log end);
5. rebuild the producer state: its newest snapshot at or below the log end, then the batch
   headers after it (`rebuild_producer_state`, which truncation uses too).

The loader only reads and repairs files; `PartitionLog` owns the result.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from kraft.log.batch import BatchHeader
from kraft.log.checkpoint import LeaderEpochCache
from kraft.log.config import LogConfig
from kraft.log.producer_state import ProducerStateManager
from kraft.log.segment import INDEX_SUFFIX, LOG_SUFFIX, TIMEINDEX_SUFFIX, LogSegment

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedLog:
    segments: list[LogSegment]  # never empty, sorted by base offset
    log_start_offset: int

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset


def load_log(
    directory: str,
    config: LogConfig,
    now: int,
    preallocate_bytes: int,
    epoch_cache: LeaderEpochCache,
    new_segment: Callable[[int], LogSegment],
    *,
    recovery_point: int,
    log_start_offset: int,
    clean_shutdown: bool,
) -> LoadedLog:
    """Steps 1-4 above; `new_segment(base)` creates the first segment of an empty log."""
    complete_interrupted_swaps(directory)
    bases = sorted(
        int(name[: -len(LOG_SUFFIX)])
        for name in os.listdir(directory)
        if name.endswith(LOG_SUFFIX) and name[: -len(LOG_SUFFIX)].isdigit()
    )
    remove_orphan_indexes(directory, set(bases))
    segments = [
        LogSegment(directory, base, config.index_interval_bytes, now, preallocate_bytes)
        for base in bases
    ]
    # Segments from the one holding the recovery point on are scanned batch by batch after
    # an unclean shutdown; earlier ones only get their indexes checked.
    recover_from = len(segments)
    if not clean_shutdown:
        recover_from = 0
        for i, seg in enumerate(segments):
            if seg.base_offset <= recovery_point:
                recover_from = i
    expected = segments[0].base_offset if segments else 0
    kept: list[LogSegment] = []
    max_batch = max(config.max_message_bytes, 1 << 20) * 64

    # Recovered batches may carry epochs whose cache entry a crash lost (Kafka does this
    # too): the cache is rebuilt from them.
    def assign_epoch(header: BatchHeader) -> None:
        if header.partition_leader_epoch > epoch_cache.latest_epoch:
            epoch_cache.assign(header.partition_leader_epoch, header.base_offset)

    if recover_from == 0 and segments:
        # Every batch is about to be read: the cache is rebuilt from them alone.
        epoch_cache.clear()
    for i, seg in enumerate(segments):
        if i < recover_from and seg.load(check_indexes=not clean_shutdown):
            kept.append(seg)
            expected = seg.next_offset
            continue
        result = seg.recover(expected, max_batch, assign_epoch)
        kept.append(seg)
        expected = seg.next_offset
        if result.truncated_bytes:
            for later in segments[i + 1 :]:
                logger.warning(
                    "%s: deleting segment %s after a truncated one", directory, later.log_path
                )
                later.delete()
            break
    if not kept:
        kept = [new_segment(log_start_offset)]
    loaded = LoadedLog(kept, min(max(log_start_offset, kept[0].base_offset), kept[-1].next_offset))
    epoch_cache.truncate_from_end(loaded.log_end_offset)
    epoch_cache.truncate_from_start(loaded.log_start_offset)
    return loaded


def rebuild_producer_state(
    state: ProducerStateManager,
    segments: list[LogSegment],
    bases: list[int],
    log_start_offset: int,
    log_end_offset: int,
) -> None:
    """Newest snapshot at or below the log end, then the batch headers after it."""
    start = max(state.load_snapshot(log_end_offset), log_start_offset)
    i = max(bisect_right(bases, start) - 1, 0)
    for segment in segments[i:]:
        found = segment.find_batch(start)
        if found is None:
            continue
        state.replay([h for _, h in segment.batch_headers(found[0]) if h.base_offset >= start])


def complete_interrupted_swaps(directory: str) -> None:
    """Finish or undo a compaction swap that a crash interrupted (see log.cleaner)."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith((".cleaned", ".deleted", ".tmp")):
            os.unlink(path)
        elif name.endswith(LOG_SUFFIX + ".swap"):
            # The .swap file was complete and fsynced before it got this name.
            target = path[: -len(".swap")]
            base = target[: -len(LOG_SUFFIX)]
            for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                if os.path.exists(base + suffix):
                    os.unlink(base + suffix)
            os.replace(path, target)
            logger.info("%s: completed an interrupted compaction swap", target)


def remove_orphan_indexes(directory: str, bases: set[int]) -> None:
    """Delete index files whose segment is gone."""
    for name in os.listdir(directory):
        for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            stem = name[: -len(suffix)]
            if name.endswith(suffix) and stem.isdigit() and int(stem) not in bases:
                os.unlink(os.path.join(directory, name))
