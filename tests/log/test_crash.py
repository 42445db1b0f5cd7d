"""Crash consistency of the partition log.

`test_sigkill_at_random_moments_loses_nothing_acknowledged`: a writer process
(tests/log/crash_writer.py) appends deterministic batches and is SIGKILLed at a moment picked
per round: during its start-up recovery, inside an append spanning several segment rolls,
inside a ~6 MiB writev (which a kill can cut mid-batch), after some appends, or at a random
time. The parent then recovers the directory with a fresh LogManager (no clean-shutdown
marker) and checks it against a raw scan of the segment files and the regenerated workload:
only whole valid batches, contiguous offsets, every batch byte for byte, nothing lost that an
append returned (a process kill loses nothing the kernel accepted), indexes, reads, timestamp
lookups, producer state and leader-epoch cache. The next round's writer continues in the same
directory, so rounds recover on top of earlier recoveries; in two rounds out of three the
parent checks a copy and leaves the crashed files to the writer's own recovery (which must
reach the same log end offset).

`test_recovery_from_corrupted_files` (and a seeded fuzz): damage done to the files directly
(a flipped byte, a segment cut mid-batch, garbage after or deletion of index files): recovery
never raises, truncates at the first bad batch with a WARNING naming file, position and
reason, keeps every batch before it byte for byte, and leaves indexes that agree with files.

Three log/ bugs this test found are pinned by regression tests at the end of the file.
Rounds and seed: KRAFT_CRASH_ROUNDS (default 60) and KRAFT_CRASH_SEED;
a failure names both, and the crashed directory stays under pytest's tmp_path.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kraft.log.batch import BatchHeader, validate_batch
from kraft.log.compression import CompressionType
from kraft.log.config import LogConfig
from kraft.log.errors import LogError
from kraft.log.manager import LogManager
from kraft.log.partition_log import PartitionLog
from kraft.log.records import build_simple_batch

from .crash_writer import (
    FIRST_PRODUCER_ID,
    PARTITION,
    TOPIC,
    crash_config,
    producer_batch,
    record_count,
)

ROUNDS = int(os.environ.get("KRAFT_CRASH_ROUNDS", "60"))
SEED = int(os.environ.get("KRAFT_CRASH_SEED", "20241124"))
REPO = Path(__file__).resolve().parents[2]
LINE_TIMEOUT_S = 20.0  # a writer that says nothing for this long is stuck

# The stored form of a producer batch: the leader rewrites base offset (bytes 0-8) and
# partition leader epoch (12-16) and keeps every other byte, CRC included.
_OFFSET = struct.Struct(">q")
_EPOCH = struct.Struct(">i")


def stored_form(producer: bytes, base_offset: int, epoch: int) -> bytes:
    return _OFFSET.pack(base_offset) + producer[8:12] + _EPOCH.pack(epoch) + producer[16:]


# --------------------------------------------------------------------------- raw file scan


@dataclass(frozen=True, slots=True)
class ScannedBatch:
    segment: int  # base offset in the segment's file name
    position: int
    header: BatchHeader
    data: bytes


def scan_segments(directory: str) -> dict[int, list[ScannedBatch]]:
    """Every `.log` file read whole and walked batch by batch, independently of the log.

    Fails on anything but whole valid batches (length, magic, CRC) up to the exact end.
    """
    out: dict[int, list[ScannedBatch]] = {}
    for name in sorted(os.listdir(directory)):
        stem, _, suffix = name.partition(".")
        if suffix != "log" or not stem.isdigit():
            continue
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            data = f.read()
        batches: list[ScannedBatch] = []
        pos = 0
        while pos < len(data):
            try:
                header = validate_batch(data, pos, len(data))
            except LogError as e:
                raise AssertionError(
                    f"{path}: not a whole valid batch at position {pos} of {len(data)}: {e}"
                ) from e
            batches.append(ScannedBatch(int(stem), pos, header, data[pos : pos + header.size]))
            pos += header.size
        out[int(stem)] = batches
    return out


def expected_index_entries(batches: list[ScannedBatch], interval: int) -> list[tuple[int, int]]:
    """The sparse offset index the documented rule gives: an entry for a batch once more
    than `interval` bytes were written since the previous entry (or the segment start)."""
    entries = []
    since = 0
    for b in batches:
        if since > interval:
            entries.append((b.header.base_offset, b.position))
            since = 0
        since += b.header.size
    return entries


def check_log_against_files(
    log: PartitionLog, rng: random.Random, timestamp_probes: int = 8
) -> list[ScannedBatch]:
    """The open log agrees with a raw scan of its files; returns the scanned batches in order.

    Segments, sizes and next offsets match; offsets are contiguous from the log start to the
    log end; every offset-index entry points at a batch with that base offset (and the index
    holds exactly the entries its rule gives); time-index entries name real batches; read()
    at each batch's base offset and at a random offset inside it returns that batch first.
    """
    scan = scan_segments(log.directory)
    assert [s.base_offset for s in log.segments] == sorted(scan), "segments differ from files"
    interval = log.config.index_interval_bytes
    batches: list[ScannedBatch] = []
    for seg in log.segments:
        found = scan[seg.base_offset]
        where = seg.log_path
        assert seg.size == sum(b.header.size for b in found), f"{where}: size"
        assert seg.next_offset == (found[-1].header.next_offset if found else seg.base_offset), (
            f"{where}: next offset {seg.next_offset}"
        )
        if found:
            assert found[0].header.base_offset >= seg.base_offset, f"{where}: below its base"
        by_position = {b.position: b for b in found}
        entries = seg.offset_index.entries()
        for offset, position in entries:
            hit = by_position.get(position)
            assert hit is not None and hit.header.base_offset == offset, (
                f"{where}: offset index entry ({offset}, {position}) does not point at its batch"
            )
        assert entries == expected_index_entries(found, interval), f"{where}: offset index"
        running_max = -1
        max_ts_at: dict[int, tuple[int, int]] = {}  # last offset -> (batch max ts, running max)
        for b in found:
            running_max = max(running_max, b.header.max_timestamp)
            max_ts_at[b.header.last_offset] = (b.header.max_timestamp, running_max)
        assert seg.max_timestamp == running_max, f"{where}: max timestamp"
        for ts, offset in seg.time_index.entries():
            assert max_ts_at.get(offset) == (ts, ts), (
                f"{where}: time index entry ({ts}, {offset}) is not a running max of a batch"
            )
        batches.extend(found)

    assert log.recovery_point == log.log_end_offset
    if batches:
        assert batches[0].header.base_offset == log.log_start_offset, "log start offset"
    expected = log.log_start_offset
    for b in batches:
        assert b.header.base_offset == expected, (
            f"offset gap: batch at {b.header.base_offset} (segment {b.segment} position "
            f"{b.position}), expected {expected}"
        )
        expected = b.header.next_offset
    assert expected == log.log_end_offset, "log end offset"

    for b in batches:
        h = b.header
        for offset in (h.base_offset, rng.randint(h.base_offset, h.last_offset)):
            got = log.read(offset, 1)
            assert (got.first_offset, got.next_offset) == (h.base_offset, h.next_offset), (
                f"read({offset}) returned [{got.first_offset}, {got.next_offset})"
            )
            assert bytes(got.records) == b.data, f"read({offset}) returned other bytes"
    assert not log.read(log.log_end_offset, 1 << 20).records
    for b in rng.sample(batches, min(timestamp_probes, len(batches))):
        # Batch timestamps increase strictly in every log this module writes.
        at = log.offset_for_timestamp(b.header.max_timestamp)
        assert at is not None and at.offset == b.header.base_offset, (
            f"offset_for_timestamp({b.header.max_timestamp}) = {at}"
        )
    return batches


def leader_epoch_problems(log: PartitionLog, batches: list[ScannedBatch]) -> str | None:
    """How the leader-epoch cache disagrees with the batches, or None.

    It must hold exactly (epoch, base offset of its first batch) for every epoch with a batch
    in the log, as Kafka's recovery leaves it (LogSegment.recover assigns every batch's epoch).
    """
    first_of_epoch: dict[int, int] = {}
    for b in batches:
        first_of_epoch.setdefault(b.header.partition_leader_epoch, b.header.base_offset)
    expected = sorted(first_of_epoch.items())
    actual = log.leader_epoch_cache.entries()
    if actual == expected:
        return None
    return f"leader-epoch cache {actual}, batches say {expected}"


def producer_state_problems(log: PartitionLog, batches: list[ScannedBatch]) -> str | None:
    """How the producer state disagrees with the batches in the log, or None.

    Per producer it holds the metadata of its last five batches. Retention may have deleted
    some of a producer's batches (the state remembers them, as Kafka's does): then the state
    must end with those still in the log.
    """
    in_log: dict[int, list[tuple[int, int, int, int]]] = {}
    for b in batches:
        h = b.header
        if h.producer_id >= 0:
            last = in_log.setdefault(h.producer_id, [])
            last.append((h.base_sequence, h.last_sequence, h.base_offset, h.last_offset))
            del last[:-5]
    problems = []
    for pid, expected in in_log.items():
        entry = log.producer_state.producers.get(pid)
        actual = (
            []
            if entry is None
            else [(m.first_seq, m.last_seq, m.first_offset, m.last_offset) for m in entry.batches]
        )
        if actual[-len(expected) :] != expected or (len(expected) == 5 and actual != expected):
            problems.append(f"producer {pid}: state {actual}, batches say {expected}")
    return "; ".join(problems) or None


# ------------------------------------------------------------------------------ workload


class Workload:
    """The parent's model of the writer: base offset, epoch and stored bytes of batch n."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._bases = [0]  # _bases[n]: base offset of batch n
        self._round_starts: list[int] = []  # first batch number of each epoch, ascending
        self._round_epochs: list[int] = []
        self._stored: dict[int, bytes] = {}

    def base_offset(self, n: int) -> int:
        while len(self._bases) <= n:
            self._bases.append(self._bases[-1] + record_count(self.seed, len(self._bases) - 1))
        return self._bases[n]

    def batch_number(self, base_offset: int) -> int:
        while self._bases[-1] <= base_offset:
            self.base_offset(len(self._bases))
        n = bisect_left(self._bases, base_offset)
        assert self._bases[n] == base_offset, f"no batch starts at offset {base_offset}"
        return n

    def start_round(self, first_batch: int, epoch: int) -> None:
        """Batches from `first_batch` on are (re)written by a writer with `epoch`."""
        while self._round_starts and self._round_starts[-1] >= first_batch:
            self._round_starts.pop()
            self._round_epochs.pop()
        self._round_starts.append(first_batch)
        self._round_epochs.append(epoch)
        for n in [n for n in self._stored if n >= first_batch]:
            del self._stored[n]

    def _round_of(self, n: int) -> int:
        return bisect_left(self._round_starts, n + 1) - 1

    def epoch(self, n: int) -> int:
        return self._round_epochs[self._round_of(n)]

    def stored(self, n: int) -> bytes:
        data = self._stored.get(n)
        if data is None:
            i = self._round_of(n)
            base = self.base_offset(n)
            sequence = base - self.base_offset(self._round_starts[i])
            epoch = self._round_epochs[i]
            batch = producer_batch(self.seed, n, FIRST_PRODUCER_ID + epoch, sequence)
            data = stored_form(batch, base, epoch)
            self._stored[n] = data
        return data

    def forget_below(self, n: int) -> None:
        for k in [k for k in self._stored if k < n]:
            del self._stored[k]


# -------------------------------------------------------------------------- the writer


@dataclass(slots=True)
class Observed:
    """What the writer said before it died."""

    started: bool = False
    ready_leo: int | None = None
    recovery_ms: float | None = None
    begun: tuple[int, int] | None = None  # last B: batches [first, end) being appended
    appended_end: int | None = None  # last A
    flushed: tuple[int, int] | None = None  # last F: (end batch, log end offset)
    max_flushed_leo: int = 0

    def record(self, fields: list[str]) -> None:
        kind, args = fields[0], [float(x) if "." in x else int(x) for x in fields[1:]]
        if kind == "S":
            self.started = True
        elif kind == "R":
            self.ready_leo, self.recovery_ms = int(args[0]), float(args[1])
        elif kind == "B":
            self.begun = (int(args[0]), int(args[1]))
        elif kind == "A":
            self.appended_end = int(args[0])
        elif kind == "F":
            self.flushed = (int(args[0]), int(args[1]))
            self.max_flushed_leo = max(self.max_flushed_leo, int(args[1]))
        else:
            raise AssertionError(f"writer said {fields!r}")


class Writer:
    """One writer process and a non-blocking reader of its stdout lines."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.log.crash_writer", *args],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=err,
                bufsize=0,
            )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._pending = b""
        self._eof = False
        self.seen = Observed()

    def _take(self, data: bytes) -> list[list[str]]:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        out = [line.decode().split() for line in lines if line]
        for fields in out:
            self.seen.record(fields)
        return out

    def wait_for(self, wanted: Callable[[list[str]], bool] | None, timeout: float) -> bool:
        """Read lines until one is `wanted` (True), or until `timeout` / EOF (False)."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                return False
            data = os.read(self._fd, 1 << 16)
            if not data:
                self._eof = True
            for fields in self._take(data):
                if wanted is not None and wanted(fields):
                    return True
        return False

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        while not self._eof:
            data = os.read(self._fd, 1 << 16)
            self._eof = not data
            self._take(data)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        if self.proc.returncode != -signal.SIGKILL:
            raise AssertionError(
                f"writer exited with {self.proc.returncode} before the kill:\n"
                + self.stderr_path.read_text()
            )


def _spin(seconds: float) -> None:
    # time.sleep overshoots by ~50 us of timer slack; appends last 0.1-0.5 ms.
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def run_round(writer: Writer, strategy: str, rng: random.Random, recovery_ms: float) -> None:
    """Let the writer run, then SIGKILL it at a moment chosen by `strategy`."""
    try:
        if strategy == "recovery":
            # Inside LogManager.startup: recovery truncating, rebuilding indexes, checkpointing.
            if writer.wait_for(lambda f: f[0] == "S", LINE_TIMEOUT_S):
                _spin(rng.uniform(0, recovery_ms * 1.5) / 1000)
            return
        if not writer.wait_for(lambda f: f[0] == "R", LINE_TIMEOUT_S):
            return  # it died on its own: kill() reports why
        if strategy == "big-append":
            # Inside an append of 16-160 batches spanning several segment rolls (writes and
            # fsyncs, in 128 KiB segments).
            writer.wait_for(lambda f: f[0] == "B" and int(f[2]) - int(f[1]) >= 16, 5.0)
            _spin(rng.uniform(0, 0.004))
        elif strategy == "torn-write":
            # Inside an append of 400-1200 batches (2-20 ms), mostly one writev into a 16 MiB
            # segment: the kill can cut the write short, leaving a partial batch.
            writer.wait_for(lambda f: f[0] == "B" and int(f[2]) - int(f[1]) >= 400, 5.0)
            _spin(rng.uniform(0, 0.006))
        elif strategy == "any-append":
            begins = itertools.count()
            nth = rng.randint(0, 50)
            writer.wait_for(lambda f: f[0] == "B" and next(begins) == nth, 5.0)
            _spin(rng.uniform(0, 0.0003))
        else:
            writer.wait_for(None, rng.uniform(0, 0.25))
    finally:
        writer.kill()


@contextmanager
def recovered_log(root: Path) -> Iterator[PartitionLog | None]:
    """The log as a restarted broker sees it: a fresh LogManager, recovering."""
    manager = LogManager([str(root)], crash_config())
    manager.startup()
    log = manager.get_log(TOPIC, PARTITION)
    try:
        yield log
    finally:
        # Close without the clean-shutdown marker: the next start recovers again.
        for each in manager.all_logs().values():
            each.close()


def test_sigkill_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(SEED)
    root = tmp_path / "logs"
    scratch = tmp_path / "verify"
    root.mkdir()
    workload = Workload(SEED)
    next_batch = 0
    leo = 0
    max_committed = 0  # the largest flushed log end offset: the high watermark never passed it
    recovery_ms = 5.0
    stats: Counter[str] = Counter()
    started = time.monotonic()
    for round_no in range(ROUNDS):
        epoch = round_no
        workload.start_round(next_batch, epoch)
        strategy = rng.choices(
            ["recovery", "big-append", "torn-write", "any-append", "timed"],
            weights=[1, 3, 2, 2, 3],
        )[0]
        writer = Writer(
            [
                f"--dir={root}",
                f"--seed={SEED}",
                f"--epoch={epoch}",
                f"--start-batch={next_batch}",
                f"--expect-leo={leo}",
                *(
                    ["--segment-bytes=16777216", "--huge-appends"]
                    if strategy == "torn-write"
                    else []
                ),
            ],
            tmp_path / "writer.err",
        )
        run_round(writer, strategy, rng, recovery_ms)
        seen = writer.seen
        if seen.recovery_ms is not None:
            recovery_ms = max(seen.recovery_ms, 1.0)
        max_committed = max(max_committed, seen.max_flushed_leo)
        in_place = rng.random() < 1 / 3
        if not in_place:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.copytree(root, scratch)
        context = (
            f"round {round_no} (KRAFT_CRASH_SEED={SEED}, kill {strategy}, "
            f"{'in place' if in_place else 'on a copy'}, dir {root}): writer saw {seen}"
        )
        caplog.clear()
        try:
            with (
                caplog.at_level(logging.WARNING, logger="log"),
                recovered_log(root if in_place else scratch) as log,
            ):
                if log is None:  # killed before it created the log
                    assert next_batch == 0 and not seen.ready_leo, "the log disappeared"
                    continue
                batches = check_log_against_files(log, rng)
                present = [workload.batch_number(b.header.base_offset) for b in batches]
                first = present[0] if present else next_batch
                end = present[-1] + 1 if present else next_batch
                assert present == list(range(first, end)), "batches out of order"
                for n, b in zip(present, batches, strict=True):
                    assert b.data == workload.stored(n), (
                        f"batch {n} at offset {b.header.base_offset} (segment {b.segment}, "
                        f"position {b.position}) differs from what was appended"
                    )
                # A process kill loses nothing the kernel accepted: every append that returned
                # is there, flushed or not. Nothing from a later append can be.
                acknowledged = max(seen.appended_end or 0, next_batch)
                assert end >= acknowledged, f"batches [{end}, {acknowledged}) are gone"
                if seen.flushed is not None:
                    assert end >= seen.flushed[0] and log.log_end_offset >= seen.flushed[1]
                assert end <= (seen.begun[1] if seen.begun else next_batch), "batches from nowhere"
                # The idempotent producer's state must be what its last five batches say.
                problem = producer_state_problems(log, batches)
                assert problem is None, problem
                # Retention only removes whole segments below the high watermark.
                assert log.log_start_offset <= max_committed
                assert log.log_end_offset == workload.base_offset(end)
                if any("truncating" in r.getMessage() for r in caplog.records):
                    stats["recovery truncated a torn tail"] += 1
                if seen.begun and seen.begun[1] > (seen.appended_end or next_batch):
                    stats["killed inside append_as_leader"] += 1
                    if end > (seen.appended_end or next_batch):
                        stats["... with part of that append on disk"] += 1
                stats[f"strategy {strategy}"] += 1
                problem = leader_epoch_problems(log, batches)
                assert problem is None, problem
                if seen.ready_leo is None:
                    stats["killed before the log was open"] += 1
                next_batch, leo = end, log.log_end_offset
                workload.forget_below(first)
        except AssertionError as e:
            raise AssertionError(f"{context}: {e}") from e
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"\n{ROUNDS} crash rounds in {elapsed:.1f}s, {next_batch} batches, LEO {leo}")
    for key, count in sorted(stats.items()):
        print(f"  {key}: {count}")
    assert next_batch > 0


# ------------------------------------------------------------------- file corruption

CORRUPTION_CONFIG = LogConfig(
    segment_bytes=16 * 1024, index_interval_bytes=256, max_message_bytes=16 * 1024
)


def _write_pristine(directory: str) -> list[ScannedBatch]:
    """~40 batches (200 B-4 KiB, some compressed, epochs 0-2) over 6-8 segments, flushed."""
    rng = random.Random(7)
    log = PartitionLog(directory, CORRUPTION_CONFIG)
    for n in range(40):
        count = rng.randint(1, 8)
        size = rng.randint(200, 4096) // count
        codec = rng.choice(list(CompressionType)) if rng.random() < 0.3 else 0
        values = [rng.randbytes(size) for _ in range(count)]
        data = build_simple_batch(values, timestamp=1_700_000_000_000 + n, compression=codec)
        log.append_as_leader(data, leader_epoch=n // 15)
    log.close()
    batches = [b for _, found in sorted(scan_segments(directory).items()) for b in found]
    assert len(scan_segments(directory)) >= 6
    return batches


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ScannedBatch]]:
    directory = tmp_path_factory.mktemp("pristine") / "t-0"
    return directory, _write_pristine(str(directory))


@dataclass(frozen=True, slots=True)
class Damage:
    """What a corruption did, and what recovery must do about it."""

    keep: int  # batches recovery must keep (the first bad one is at this index)
    warn_file: str | None = None  # a WARNING must name this file ...
    position: int | None = None  # ... this position ...
    reason: str = ""  # ... and match this reason
    segments_deleted: int = 0  # later segments that go with a truncated one
    spoiled_indexes: str | None = None  # suffix of index files with garbage in them


def _segment_files(directory: Path, suffix: str) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(suffix))


def _by_segment(batches: list[ScannedBatch]) -> list[list[ScannedBatch]]:
    out: dict[int, list[ScannedBatch]] = {}
    for b in batches:
        out.setdefault(b.segment, []).append(b)
    return [out[k] for k in sorted(out)]


def flip_byte_mid_last_segment(d: Path, batches: list[ScannedBatch]) -> Damage:
    last = _by_segment(batches)[-1]
    path = _segment_files(d, ".log")[-1]
    middle = path.stat().st_size // 2
    victim = next(b for b in reversed(last) if b.position <= middle)
    # Bytes 0-16 (base offset, length, epoch, magic) are outside the CRC, as in Kafka.
    at = max(middle, victim.position + 21)
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x5A]))
    return Damage(batches.index(victim), str(path), victim.position, "CRC mismatch")


def cut_segment_mid_batch(which: int) -> Callable[[Path, list[ScannedBatch]], Damage]:
    def cut(d: Path, batches: list[ScannedBatch]) -> Damage:
        segments = _by_segment(batches)
        index = which % len(segments)
        found = segments[index]
        victim = found[len(found) // 2]
        path = _segment_files(d, ".log")[index]
        os.truncate(path, victim.position + victim.header.size // 2)
        return Damage(
            batches.index(victim),
            str(path),
            victim.position,
            r"torn batch header|exceeds the \d+ bytes left",
            segments_deleted=len(segments) - index - 1,
        )

    cut.__name__ = f"cut_segment_{which}_mid_batch"
    return cut


def garbage_after_indexes(suffix: str) -> Callable[[Path, list[ScannedBatch]], Damage]:
    def spoil(d: Path, batches: list[ScannedBatch]) -> Damage:
        rng = random.Random(suffix)
        for i, path in enumerate(_segment_files(d, suffix)):
            with open(path, "ab") as f:
                f.write(rng.randbytes(16 if i % 2 else 13))
        return Damage(len(batches), spoiled_indexes=suffix)

    return spoil


def delete_indexes(d: Path, batches: list[ScannedBatch]) -> Damage:
    indexes = _segment_files(d, ".index")
    for path in (indexes[1], indexes[len(indexes) // 2], indexes[-1]):
        path.unlink()
    return Damage(len(batches))


_CORRUPTIONS = [
    ("flipped-byte-mid-last-segment", flip_byte_mid_last_segment),
    ("last-segment-cut-mid-batch", cut_segment_mid_batch(-1)),
    ("third-segment-cut-mid-batch", cut_segment_mid_batch(2)),
    ("garbage-after-index-files", garbage_after_indexes(".index")),
    ("garbage-after-timeindex-files", garbage_after_indexes(".timeindex")),
    ("deleted-index-files", delete_indexes),
]
CORRUPTIONS = [
    pytest.param(
        corrupt,
        checkpointed,
        id=f"{name}-{'recovery-point-at-end' if checkpointed else 'recover-all'}",
    )
    for name, corrupt in _CORRUPTIONS
    for checkpointed in (False, True)
]


def _reopen(directory: Path, recovery_point: int) -> PartitionLog:
    return PartitionLog(
        str(directory), CORRUPTION_CONFIG, recovery_point=recovery_point, clean_shutdown=False
    )


@pytest.mark.parametrize(("corrupt", "checkpointed"), CORRUPTIONS)
def test_recovery_from_corrupted_files(
    pristine: tuple[Path, list[ScannedBatch]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    corrupt: Callable[[Path, list[ScannedBatch]], Damage],
    checkpointed: bool,
) -> None:
    source, batches = pristine
    directory = tmp_path / "t-0"
    shutil.copytree(source, directory)
    damage = corrupt(directory, batches)
    # recovery-point-at-end: a checkpoint says everything was flushed, so only the last
    # segment is scanned and the others load from their index files.
    recovery_point = batches[-1].header.next_offset if checkpointed else 0
    caplog.set_level(logging.WARNING, logger="log")
    log = _reopen(directory, recovery_point)
    try:
        kept = check_log_against_files(log, random.Random(1))
        assert [b.data for b in kept] == [b.data for b in batches[: damage.keep]]
        assert leader_epoch_problems(log, kept) is None
        assert producer_state_problems(log, kept) is None
        expected_end = (
            batches[damage.keep].header.base_offset
            if damage.keep < len(batches)
            else (batches[-1].header.next_offset)
        )
        assert log.log_end_offset == expected_end
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if damage.warn_file is not None:
            assert any(
                damage.warn_file in m
                and f"position {damage.position}" in m
                and re.search(damage.reason, m)
                for m in warnings
            ), f"no WARNING naming {damage.warn_file}, position {damage.position}: {warnings}"
        else:
            assert not any("truncat" in m for m in warnings), warnings
        deleted = [m for m in warnings if "after a truncated one" in m]
        assert len(deleted) == damage.segments_deleted, deleted
        for seg in log.segments:
            assert os.path.exists(seg.offset_index.path), f"{seg.offset_index.path} missing"
        if checkpointed and damage.spoiled_indexes:
            # Segments below the recovery point load their indexes and must notice; the last
            # one is recovered, which rebuilds its indexes without reading them.
            for seg in log.segments[:-1]:
                name = os.path.join(
                    str(directory), f"{seg.base_offset:020d}{damage.spoiled_indexes}"
                )
                assert any(name in m for m in warnings), f"no WARNING names {name}: {warnings}"
        # The log goes on from where recovery left it.
        appended = log.append_as_leader(
            build_simple_batch([b"after"], timestamp=1_700_000_001_000), 9
        )
        assert appended.first_offset == expected_end
    finally:
        log.close()
    again = _reopen(directory, 0)
    try:
        check_log_against_files(again, random.Random(2))
        assert again.log_end_offset == expected_end + 1
    finally:
        again.close()


def test_random_damage_to_the_last_segment_never_raises(
    pristine: tuple[Path, list[ScannedBatch]], tmp_path: Path
) -> None:
    """Seeded fuzz: a flipped CRC-covered byte or a cut anywhere in the last segment; recovery
    keeps exactly the batches before the damaged one."""
    source, batches = pristine
    last = _by_segment(batches)[-1]
    first_of_last = batches.index(last[0])
    rng = random.Random(11)
    for attempt in range(30):
        directory = tmp_path / f"a{attempt}" / "t-0"
        shutil.copytree(source, directory)
        path = _segment_files(directory, ".log")[-1]
        victim = rng.choice(last)
        if rng.random() < 0.5:
            at = victim.position + rng.randint(8, victim.header.size - 1)
            # Bytes 0-7 (base offset) and 12-15 (leader epoch) are outside the CRC, as in
            # Kafka: recovery cannot tell them damaged.
            if 12 <= at - victim.position < 16:
                at = victim.position + 8
            with open(path, "r+b") as f:
                f.seek(at)
                byte = f.read(1)[0]
                f.seek(at)
                f.write(bytes([byte ^ (1 << rng.randint(0, 7))]))
        else:
            os.truncate(path, victim.position + rng.randint(1, victim.header.size - 1))
        log = _reopen(directory, 0)
        try:
            kept = check_log_against_files(log, rng, timestamp_probes=2)
            keep = first_of_last + last.index(victim)
            assert [b.data for b in kept] == [b.data for b in batches[:keep]], attempt
        finally:
            log.close()


@pytest.mark.parametrize(
    "checkpoint",
    [
        # Killed after append_as_leader wrote epoch 1's and 2's first batches, before it
        # persisted their epochs.
        pytest.param("0\n1\n0 0\n", id="new-epochs-not-yet-persisted"),
        # Killed after retention truncated the cache to a new log start, before it deleted
        # the segments below it (PartitionLog._delete_first_segments).
        pytest.param("0\n1\n2 {start}\n", id="truncated-ahead-of-segment-deletion"),
    ],
)
def test_recovery_rebuilds_the_leader_epoch_cache_from_batches(
    pristine: tuple[Path, list[ScannedBatch]], tmp_path: Path, checkpoint: str
) -> None:
    source, batches = pristine
    assert {b.header.partition_leader_epoch for b in batches} == {0, 1, 2}
    directory = tmp_path / "t-0"
    shutil.copytree(source, directory)
    start = _by_segment(batches)[-1][0].header.base_offset
    (directory / "leader-epoch-checkpoint").write_text(checkpoint.format(start=start))
    log = _reopen(directory, 0)
    try:
        assert leader_epoch_problems(log, batches) is None
    finally:
        log.close()


def test_recovery_restores_the_producer_state_of_an_append_spanning_a_roll(
    tmp_path: Path,
) -> None:
    config = LogConfig(segment_bytes=1024)
    directory = str(tmp_path / "t-0")

    def batch(sequence: int) -> bytes:
        return build_simple_batch(
            [bytes(300)], timestamp=1, producer_id=7, producer_epoch=0, base_sequence=sequence
        )

    log = PartitionLog(directory, config)
    log.append_as_leader(batch(0), 0)
    log.append_as_leader(batch(1) + batch(2) + batch(3), 0)  # rolls after batch 1
    log.flush()
    expected = [(m.first_seq, m.last_seq) for m in log.producer_state.producers[7].batches]
    assert expected == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # The process dies here, without close().
    again = PartitionLog(directory, config, clean_shutdown=False)
    try:
        recovered = again.producer_state.producers[7].batches
        assert [(m.first_seq, m.last_seq) for m in recovered] == expected
        # A retry of batch 1 is a duplicate, answered with its original offset.
        assert again.append_as_leader(batch(1), 0).duplicate
    finally:
        again.close()
        log.close()
