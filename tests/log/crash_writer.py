"""The writer half of the crash test (tests/log/test_crash.py), and the workload both halves share.

Run as `python -m tests.log.crash_writer --dir D --seed S --epoch E --start-batch N
--expect-leo L [--segment-bytes B] [--huge-appends]`: it opens (recovering) the log dir D with
a LogManager, checks the log ends at L, then appends batches N, N+1, ... as leader epoch E
until it is killed. A batch's records are a pure function of (seed, batch number), and its
producer id and sequence follow from E and N (see FIRST_PRODUCER_ID), so the parent can
regenerate what must be on disk.

Protocol on stdout, one line per event, flushed as it happens::

    S                          imports done; opening (and recovering) the log next
    R <leo> <recovery_ms>      the log is open and ends at <leo>
    B <first> <end>            about to append batches [first, end) in one append_as_leader call
    A <end> <leo>              that call returned: batches < <end> are in the log
    F <end> <leo>              flush() returned: batches < <end> (offsets < <leo>) are durable

After a flush the writer also, now and then, checkpoints (recovery point, high watermark, log
start) and runs size-based retention, so crashes land in those paths too.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass

from kraft.log.compression import CompressionType
from kraft.log.config import LogConfig
from kraft.log.manager import LogManager
from kraft.log.records import build_simple_batch

TOPIC = "crash"
PARTITION = 0
BASE_TIMESTAMP = 1_700_000_000_000  # batch n carries timestamp BASE_TIMESTAMP + n
SEGMENT_BYTES = 128 * 1024
# Each writer process is a new idempotent producer (as a client restarted with the broker
# would be): id FIRST_PRODUCER_ID + epoch, sequences from 0 at its first batch. Recovery must
# rebuild every producer's state from snapshots and batches.
FIRST_PRODUCER_ID = 4000
MAX_RUNTIME_S = 30.0  # the parent kills the writer long before; this only bounds an orphan

_CODECS = [c for c in CompressionType if c != CompressionType.NONE]


def crash_config(segment_bytes: int = SEGMENT_BYTES) -> LogConfig:
    # Small segments roll every ~15 batches; a small index interval gives each segment
    # several index entries. Retention keeps the log around 3 MiB however long the test
    # runs (size only: batch timestamps are in 2023, time retention would delete everything).
    # Big segments (some rounds) turn a ~6 MiB append into one writev that a kill can tear.
    return LogConfig(
        segment_bytes=segment_bytes,
        index_interval_bytes=512,
        max_message_bytes=SEGMENT_BYTES,
        retention_bytes=3 << 20,
        retention_ms=-1,
    )


@dataclass(frozen=True, slots=True)
class BatchSpec:
    records: int
    value_size: int
    compression: CompressionType
    keyed: bool
    compressible: bool


def batch_spec(seed: int, n: int) -> BatchSpec:
    """Shape of batch n: 100 B to 20 KiB (log-uniform), 1 in 20 is 48-112 KiB."""
    rng = random.Random(f"spec:{seed}:{n}")
    if rng.random() < 0.05:
        total = rng.randint(48 << 10, 112 << 10)
    else:
        total = int(math.exp(rng.uniform(math.log(100), math.log(20 << 10))))
    records = rng.randint(1, max(1, min(64, total // 64)))
    compression = rng.choice(_CODECS) if rng.random() < 0.25 else CompressionType.NONE
    return BatchSpec(
        records=records,
        value_size=max(0, total // records - 12),
        compression=compression,
        keyed=rng.random() < 0.5,
        compressible=rng.random() < 0.5,
    )


def record_count(seed: int, n: int) -> int:
    return batch_spec(seed, n).records


def producer_batch(seed: int, n: int, producer_id: int, base_sequence: int) -> bytes:
    """Batch n exactly as an idempotent producer sends it (base offset 0, no leader epoch)."""
    spec = batch_spec(seed, n)
    rng = random.Random(f"values:{seed}:{n}")
    values: list[bytes | None] = []
    for _ in range(spec.records):
        if spec.compressible:
            pattern = rng.randbytes(16)
            values.append((pattern * (spec.value_size // 16 + 1))[: spec.value_size])
        else:
            values.append(rng.randbytes(spec.value_size))
    keys: list[bytes | None] | None = None
    if spec.keyed:
        keys = [f"{n}-{i}".encode() for i in range(spec.records)]
    return build_simple_batch(
        values,
        keys,
        timestamp=BASE_TIMESTAMP + n,
        compression=spec.compression,
        producer_id=producer_id,
        producer_epoch=0,
        base_sequence=base_sequence,
    )


def group_size(seed: int, first: int, huge: bool = False) -> int:
    """How many batches the append starting at batch `first` carries (grouping changes no
    batch's bytes or offsets)."""
    rng = random.Random(f"group:{seed}:{first}")
    r = rng.random()
    if r < 0.08:
        # ~1 MiB on average: spans several segment rolls. Huge: ~6 MiB, one long writev in a
        # big segment, that a kill can cut short.
        return rng.randint(400, 1200) if huge else rng.randint(16, 160)
    if r < 0.25:
        return rng.randint(2, 8)
    return 1


@dataclass(frozen=True, slots=True)
class AfterAppend:
    flush: bool
    checkpoint: bool
    retention: bool


def after_append(seed: int, end: int) -> AfterAppend:
    rng = random.Random(f"after:{seed}:{end}")
    flush = rng.random() < 0.35
    return AfterAppend(flush, flush and rng.random() < 0.3, flush and rng.random() < 0.3)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--start-batch", type=int, required=True)
    parser.add_argument("--expect-leo", type=int, required=True)
    parser.add_argument("--segment-bytes", type=int, default=SEGMENT_BYTES)
    parser.add_argument("--huge-appends", action="store_true")
    args = parser.parse_args(argv)
    seed: int = args.seed

    _say("S")
    started = time.perf_counter()
    manager = LogManager([args.dir], crash_config(args.segment_bytes))
    manager.startup()
    log = manager.get_or_create_log(TOPIC, PARTITION)
    if log.log_end_offset != args.expect_leo:
        print(
            f"recovered log ends at {log.log_end_offset}, the parent saw {args.expect_leo}",
            file=sys.stderr,
        )
        return 3
    _say(f"R {log.log_end_offset} {(time.perf_counter() - started) * 1000:.3f}")

    n: int = args.start_batch
    producer_id = FIRST_PRODUCER_ID + args.epoch
    sequence = 0
    deadline = time.monotonic() + MAX_RUNTIME_S
    while time.monotonic() < deadline:
        end = n + group_size(seed, n, args.huge_appends)
        parts = []
        for k in range(n, end):
            parts.append(producer_batch(seed, k, producer_id, sequence))
            sequence += record_count(seed, k)
        data = b"".join(parts)
        _say(f"B {n} {end}")
        log.append_as_leader(data, args.epoch)
        n = end
        _say(f"A {n} {log.log_end_offset}")
        then = after_append(seed, n)
        if then.flush:
            log.flush()
            # A single-replica leader: everything durable is committed.
            log.set_high_watermark(log.log_end_offset)
            _say(f"F {n} {log.log_end_offset}")
            if then.checkpoint:
                manager.checkpoint()
            if then.retention:
                manager.run_retention()
    print("writer ran out of time without being killed", file=sys.stderr)
    return 4


if __name__ == "__main__":
    sys.exit(main())
