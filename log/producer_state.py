"""Idempotent producer state of one partition (KIP-98): sequence checks and deduplication.

Per producer id the state holds its epoch and the metadata of its last five batches (first and
last sequence, first and last offset, max timestamp). A leader checks every batch carrying a
producer id before appending it:

- epoch older than the known one → INVALID_PRODUCER_EPOCH;
- same epoch, batch equal to one of the last five → a duplicate: not appended, answered with
  the original offsets;
- same epoch, first sequence != last sequence + 1 (int32 wrap-around) →
  OUT_OF_ORDER_SEQUENCE_NUMBER;
- newer epoch → the first sequence must be 0 (unless the producer was unknown).

The state is rebuilt from batch headers alone (producer fields live in the 61-byte header),
and snapshotted to `<offset:020d>.snapshot` in the partition directory so a restart replays
only the batches after the snapshot. Snapshot format (JSON lines would be larger; this is
simple and fixed-width)::

    magic  b"KPS1"                      4 bytes
    count  uint32                       number of entries, then for each entry:
      producer_id int64, epoch int16, last_timestamp int64, n_batches uint8,
      n_batches × (first_seq int32, last_seq int32, first_offset int64, last_offset int64)
    crc32c uint32                       of everything before it
"""

from __future__ import annotations

import logging
import os
import struct
from collections import deque
from dataclasses import dataclass, field

from kraft.log.batch import BatchHeader, crc32c
from kraft.log.checkpoint import write_atomically
from kraft.log.errors import LogError

logger = logging.getLogger(__name__)

NUM_BATCHES_TO_RETAIN = 5
SNAPSHOT_SUFFIX = ".snapshot"
_MAGIC = b"KPS1"
_ENTRY = struct.Struct(">qhqB")
_BATCH = struct.Struct(">iiqq")
_COUNT = struct.Struct(">I")


class OutOfOrderSequenceError(LogError):
    error_code = 45  # OUT_OF_ORDER_SEQUENCE_NUMBER


class InvalidProducerEpochError(LogError):
    error_code = 47  # INVALID_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int
    last_timestamp: int = -1
    batches: deque[BatchMetadata] = field(
        default_factory=lambda: deque(maxlen=NUM_BATCHES_TO_RETAIN)
    )

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


def _in_sequence(last_seq: int, first_seq: int) -> bool:
    return first_seq == last_seq + 1 or (first_seq == 0 and last_seq == 0x7FFFFFFF)


class ProducerStateManager:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.producers: dict[int, ProducerEntry] = {}
        self.snapshot_offset = 0  # state reflects every batch below this offset

    # ---------------------------------------------------------------- checks

    def find_duplicate(self, header: BatchHeader) -> BatchMetadata | None:
        """The original of a retried batch, if this batch is one of the last five."""
        entry = self.producers.get(header.producer_id)
        if entry is None or entry.epoch != header.producer_epoch:
            return None
        for b in entry.batches:
            if b.first_seq == header.base_sequence and b.last_seq == header.last_sequence:
                return b
        return None

    def check(self, header: BatchHeader) -> None:
        """Raise if the batch may not be appended (call after `find_duplicate`)."""
        entry = self.producers.get(header.producer_id)
        if entry is None:
            return  # unknown (new or expired) producer: any sequence is accepted
        if header.producer_epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"producer {header.producer_id} epoch {header.producer_epoch} is older than "
                f"the current epoch {entry.epoch}"
            )
        if header.producer_epoch > entry.epoch:
            if header.base_sequence != 0:
                raise OutOfOrderSequenceError(
                    f"producer {header.producer_id}: new epoch {header.producer_epoch} must "
                    f"start at sequence 0, not {header.base_sequence}"
                )
            return
        if entry.batches and not _in_sequence(entry.last_seq, header.base_sequence):
            raise OutOfOrderSequenceError(
                f"producer {header.producer_id}: sequence {header.base_sequence} does not "
                f"follow {entry.last_seq}"
            )

    # ---------------------------------------------------------------- update

    def update(self, header: BatchHeader, base_offset: int, timestamp: int) -> None:
        """Record an appended batch (leader or follower) that carries a producer id."""
        if header.producer_id < 0:
            return
        entry = self.producers.get(header.producer_id)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = ProducerEntry(header.producer_id, header.producer_epoch)
            self.producers[header.producer_id] = entry
        elif header.producer_epoch < entry.epoch:
            return
        last_offset = base_offset + header.last_offset_delta
        entry.batches.append(
            BatchMetadata(header.base_sequence, header.last_sequence, base_offset, last_offset)
        )
        entry.last_timestamp = max(entry.last_timestamp, timestamp)
        self.snapshot_offset = max(self.snapshot_offset, last_offset + 1)

    def replay(self, headers: list[BatchHeader]) -> None:
        for h in headers:
            if h.producer_id >= 0 and not h.is_control:
                self.update(h, h.base_offset, h.max_timestamp)
            self.snapshot_offset = max(self.snapshot_offset, h.next_offset)

    def remove_expired_producers(self, now_ms: int, expiration_ms: int) -> list[int]:
        """Forget the producers whose last write (the newest batch timestamp) is at least
        `expiration_ms` (`producer.id.expiration.ms`) before `now_ms`, as Kafka's
        ProducerStateManager.removeExpiredProducers does; their ids, sorted. A forgotten
        producer's next batch is accepted at any sequence, as from a new producer. (Kafka
        keeps a producer with an open transaction; kraft has no transactions yet.)"""
        expired = sorted(
            pid for pid, e in self.producers.items() if now_ms - e.last_timestamp >= expiration_ms
        )
        for pid in expired:
            del self.producers[pid]
        return expired

    def truncate(self) -> None:
        """Forget everything (after a log truncation the state is rebuilt by replay)."""
        self.producers.clear()
        self.snapshot_offset = 0
        for name in self._snapshot_files():
            os.unlink(os.path.join(self.directory, name))

    # -------------------------------------------------------------- snapshot

    def _snapshot_files(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(
            n for n in names if n.endswith(SNAPSHOT_SUFFIX) and n[: -len(SNAPSHOT_SUFFIX)].isdigit()
        )

    def write_snapshot(self, offset: int) -> str:
        """Persist the state as of `offset` (the log end offset: every batch below it)."""
        self.snapshot_offset = offset
        parts = [_MAGIC, _COUNT.pack(len(self.producers))]
        for e in self.producers.values():
            parts.append(_ENTRY.pack(e.producer_id, e.epoch, e.last_timestamp, len(e.batches)))
            for b in e.batches:
                parts.append(_BATCH.pack(b.first_seq, b.last_seq, b.first_offset, b.last_offset))
        body = b"".join(parts)
        path = os.path.join(self.directory, f"{self.snapshot_offset:020d}{SNAPSHOT_SUFFIX}")
        write_atomically(path, body + _COUNT.pack(crc32c(body)))
        for name in self._snapshot_files():
            full = os.path.join(self.directory, name)
            if full != path:
                os.unlink(full)
        return path

    def load_snapshot(self, max_offset: int) -> int:
        """Load the newest valid snapshot at or below `max_offset`; returns its offset
        (0 when none). Newer or unreadable snapshots are deleted."""
        self.producers.clear()
        self.snapshot_offset = 0
        for name in reversed(self._snapshot_files()):
            path = os.path.join(self.directory, name)
            offset = int(name[: -len(SNAPSHOT_SUFFIX)])
            if offset > max_offset:
                os.unlink(path)
                continue
            try:
                self._read(path)
            except (ValueError, struct.error) as e:
                logger.warning("%s: ignoring unreadable producer snapshot: %s", path, e)
                self.producers.clear()
                os.unlink(path)
                continue
            self.snapshot_offset = offset
            return offset
        return 0

    def _read(self, path: str) -> None:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 12 or data[:4] != _MAGIC:
            raise ValueError("bad magic or size")
        body, (crc,) = data[:-4], _COUNT.unpack(data[-4:])
        if crc32c(body) != crc:
            raise ValueError("checksum mismatch")
        (count,) = _COUNT.unpack_from(body, 4)
        pos = 8
        for _ in range(count):
            pid, epoch, last_ts, n = _ENTRY.unpack_from(body, pos)
            pos += _ENTRY.size
            entry = ProducerEntry(pid, epoch, last_ts)
            for _ in range(n):
                entry.batches.append(BatchMetadata(*_BATCH.unpack_from(body, pos)))
                pos += _BATCH.size
            self.producers[pid] = entry
        if pos != len(body):
            raise ValueError("trailing bytes")
