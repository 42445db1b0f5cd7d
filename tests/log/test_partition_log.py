from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kraft.log.batch import CRC_START, iter_headers, parse_header, validate_batch
from kraft.log.config import LogConfig
from kraft.log.errors import (
    CorruptRecordError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    RecordBatchTooLargeError,
    UnsupportedMagicError,
)
from kraft.log.partition_log import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    PartitionLog,
)
from kraft.log.records import build_simple_batch, decode_absolute

from .conftest import FakeClock

OpenLog = Callable[..., PartitionLog]


def batch(n: int = 1, size: int = 10, ts: int = 1000, key: bytes | None = None) -> bytes:
    keys = None if key is None else [key] * n
    return build_simple_batch([bytes([i % 251]) * size for i in range(n)], keys, timestamp=ts)


def read_all(log: PartitionLog, max_offset: int | None = None) -> list[bytes]:
    out = []
    offset = log.log_start_offset
    while True:
        res = log.read(offset, 1 << 20, max_offset)
        if not res.records:
            return out
        for pos, h in iter_headers(res.records):
            out.append(bytes(res.records[pos : pos + h.size]))
        offset = res.next_offset


def test_append_assigns_offsets_and_epoch_without_touching_the_crc(open_log: OpenLog) -> None:
    log = open_log()
    raw = batch(3)
    r1 = log.append_as_leader(raw, leader_epoch=7)
    r2 = log.append_as_leader(raw + batch(2), leader_epoch=7)
    assert (r1.first_offset, r1.last_offset) == (0, 2)
    assert (r2.first_offset, r2.last_offset) == (3, 7)
    stored = read_all(log)
    assert [parse_header(b).base_offset for b in stored] == [0, 3, 6]
    assert all(parse_header(b).partition_leader_epoch == 7 for b in stored)
    # Bytes from the CRC on are exactly the producer's, and the CRC still holds.
    assert stored[0][CRC_START - 4 :] == raw[CRC_START - 4 :]
    for b in stored:
        validate_batch(b, 0, len(b))
    assert log.log_end_offset == 8
    assert log.leader_epoch_cache.entries() == [(7, 0)]


def test_bad_batches_are_refused_and_nothing_is_written(open_log: OpenLog) -> None:
    log = open_log(LogConfig(max_message_bytes=2000))
    log.append_as_leader(batch(1), 0)
    good = batch(2)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    bad_magic = bytearray(good)
    bad_magic[16] = 1
    short = good[:-3]
    huge_len = bytearray(good)
    huge_len[8:12] = (10**6).to_bytes(4, "big")
    wrong_count = bytearray(good)
    wrong_count[57:61] = (5).to_bytes(4, "big")
    cases: list[tuple[bytes | bytearray, type[Exception]]] = [
        (good + bytes(bad_crc), CorruptRecordError),
        (bytes(bad_magic), UnsupportedMagicError),
        (good + short, CorruptRecordError),
        (bytes(huge_len), CorruptRecordError),
        (b"", InvalidRecordError),
        (b"\x00" * 5, CorruptRecordError),
        (batch(1, size=3000), RecordBatchTooLargeError),
    ]
    for data, error in cases:
        with pytest.raises(error) as info:
            log.append_as_leader(data, 0)
        assert info.value.error_code > 0
    # The CRC covers the count, so a tampered count is caught as corruption first.
    with pytest.raises(CorruptRecordError):
        log.append_as_leader(bytes(wrong_count), 0)
    assert log.log_end_offset == 1
    assert log.active_segment.size == len(batch(1))


def test_record_count_must_match_offset_delta(open_log: OpenLog) -> None:
    from kraft.log.records import Record, build_batch

    log = open_log()
    data = build_batch([Record(0, 0, None, b"a"), Record(3, 0, None, b"b")], base_timestamp=1)
    with pytest.raises(InvalidRecordError):
        log.append_as_leader(data, 0)


def test_follower_append_keeps_offsets_and_requires_contiguity(open_log: OpenLog) -> None:
    leader = open_log(name="l-0")
    follower = open_log(name="f-0")
    leader.append_as_leader(batch(2), 1)
    leader.append_as_leader(batch(3), 2)
    data = b"".join(read_all(leader))
    follower.append_as_follower(data)
    assert read_all(follower) == read_all(leader)
    assert follower.leader_epoch_cache.entries() == [(1, 0), (2, 2)]
    with pytest.raises(InvalidRecordError):
        follower.append_as_follower(read_all(leader)[0])  # offset 0 again
    gap = bytearray(read_all(leader)[1])
    gap[0:8] = (9).to_bytes(8, "big")
    with pytest.raises(InvalidRecordError):
        follower.append_as_follower(bytes(gap))
    follower.append_as_follower(bytes(gap), allow_gaps=True)
    assert follower.log_end_offset == 12


def test_read_bounds_max_bytes_and_at_least_one_batch(open_log: OpenLog) -> None:
    log = open_log()
    for _ in range(10):
        log.append_as_leader(batch(2, size=100), 0)
    size = len(batch(2, size=100))
    res = log.read(5, size * 3 + 10)  # offset inside a batch: starts at its base
    assert res.first_offset == 4
    assert len(res.records) == size * 3
    assert res.next_offset == 10
    tiny = log.read(0, 1)
    assert len(tiny.records) == size  # one whole batch even over the limit
    none = log.read(0, 1, min_one_batch=False)
    assert len(none.records) == 0
    capped = log.read(0, 1 << 20, max_offset=7)  # high watermark 7: batch 6-7 excluded
    assert capped.next_offset == 6
    assert log.read(20, 100).records.nbytes == 0
    with pytest.raises(OffsetOutOfRangeError):
        log.read(21, 100)


def test_segments_roll_by_size_and_time(open_log: OpenLog, clock: FakeClock) -> None:
    one = len(batch(1, size=100))
    log = open_log(LogConfig(segment_bytes=one * 3, segment_ms=1000))
    for _ in range(7):
        log.append_as_leader(batch(1, size=100, ts=clock.now), 0)
    assert [s.base_offset for s in log.segments] == [0, 3, 6]
    assert os.path.exists(os.path.join(log.directory, "00000000000000000003.log"))
    log.append_as_leader(batch(1, size=100, ts=clock.now + 5000), 0)
    assert [s.base_offset for s in log.segments] == [0, 3, 6, 7]
    # One append call larger than a segment is split across segments.
    log.append_as_leader(b"".join(batch(1, size=100, ts=clock.now + 5000) for _ in range(5)), 0)
    assert [s.base_offset for s in log.segments] == [0, 3, 6, 7, 10]
    assert len(read_all(log)) == 13


def test_offset_index_is_sparse_and_lookups_scan_forward(open_log: OpenLog) -> None:
    log = open_log(LogConfig(index_interval_bytes=300))
    for _ in range(50):
        log.append_as_leader(batch(1, size=100), 0)
    seg = log.active_segment
    entries = seg.offset_index.entries()
    assert 0 < len(entries) < 50
    for offset, position in entries:
        assert parse_header(seg.pread(61, position)).base_offset == offset
    for offset in range(50):
        assert log.read(offset, 1).first_offset == offset


def test_timestamp_lookup(open_log: OpenLog) -> None:
    log = open_log(LogConfig(index_interval_bytes=100, segment_bytes=600))
    stamps = [100, 200, 150, 300, 300, 250, 400]
    for ts in stamps:
        log.append_as_leader(batch(2, size=50, ts=ts), 0)
    assert len(log.segments) > 1

    def expect(target: int) -> int | None:
        for i, ts in enumerate(stamps):
            if ts >= target:
                return 2 * i
        return None

    for target in [0, 100, 101, 150, 199, 200, 201, 300, 301, 400, 401]:
        hit = log.offset_for_timestamp(target)
        assert (hit.offset if hit else None) == expect(target), target
    earliest = log.offset_for_timestamp(EARLIEST_TIMESTAMP)
    latest = log.offset_for_timestamp(LATEST_TIMESTAMP)
    assert earliest is not None and earliest.offset == 0
    assert latest is not None and latest.offset == 14
    top = log.offset_for_timestamp(MAX_TIMESTAMP)
    assert top is not None and (top.offset, top.timestamp) == (12, 400)


def test_timestamp_lookup_finds_the_record_inside_a_batch(open_log: OpenLog) -> None:
    from kraft.log.records import Record, build_batch

    log = open_log()
    recs = [Record(i, i * 10, None, b"v") for i in range(5)]
    log.append_as_leader(build_batch(recs, base_timestamp=1000), 0)
    hit = log.offset_for_timestamp(1025)
    assert hit is not None and (hit.offset, hit.timestamp) == (3, 1030)


def test_truncate_to_and_fully(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_bytes=400, index_interval_bytes=50))
    for epoch in range(6):
        log.append_as_leader(batch(2, size=60, ts=1000 + epoch), epoch)
    assert len(log.segments) > 2
    log.set_high_watermark(12)
    assert log.truncate_to(7) == 6  # the batch 6-7 holds offset 7: removed whole
    assert log.log_end_offset == 6
    assert log.high_watermark == 6
    assert log.leader_epoch_cache.entries() == [(0, 0), (1, 2), (2, 4)]
    assert [parse_header(b).base_offset for b in read_all(log)] == [0, 2, 4]
    assert log.active_segment.max_timestamp == max(
        parse_header(b).max_timestamp
        for b in read_all(log)
        if parse_header(b).base_offset >= log.active_segment.base_offset
    )
    log.append_as_leader(batch(1), 9)
    assert log.log_end_offset == 7
    log.truncate_fully_and_start_at(100)
    assert (log.log_start_offset, log.log_end_offset, len(log.segments)) == (100, 100, 1)
    assert log.active_segment.base_offset == 100
    assert log.append_as_leader(batch(1), 10).first_offset == 100


def test_truncating_at_the_log_end_drops_an_epoch_with_no_batch(open_log: OpenLog) -> None:
    """A broker that led an epoch without appending keeps that epoch in its cache at the log
    end; when it follows again, the truncation the new leader asks for (to its log end)
    must drop that entry, or the follower keeps reporting the epoch and never catches up."""
    log = open_log()
    log.append_as_leader(batch(2), 3)
    log.leader_epoch_cache.assign(7, log.log_end_offset)  # as Partition.become_leader does
    assert log.truncate_to(2) == 2
    assert log.leader_epoch_cache.entries() == [(3, 0)]


def test_log_append_time_rewrites_timestamps_and_crc(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(LogConfig(message_timestamp_type="LogAppendTime"))
    result = log.append_as_leader(batch(3, ts=5), 0)
    assert result.log_append_time == clock.now
    (stored,) = read_all(log)
    header = validate_batch(stored, 0, len(stored))
    assert header.timestamp_type == 1 and header.max_timestamp == clock.now
    assert [r.timestamp for r in decode_absolute(stored)] == [clock.now] * 3


def test_retention_by_time_size_and_log_start(open_log: OpenLog, clock: FakeClock) -> None:
    one = len(batch(1, size=100))
    cfg = LogConfig(segment_bytes=one * 2, retention_ms=10_000, retention_bytes=-1)
    log = open_log(cfg)
    for i in range(10):
        log.append_as_leader(batch(1, size=100, ts=clock.now - 20_000 + i * 1000), 0)
    assert len(log.segments) == 5
    log.set_high_watermark(4)
    # Only segments below the high watermark may go, even if expired.
    assert log.delete_old_segments() == 2
    assert log.log_start_offset == 4
    log.set_high_watermark(10)
    # Segments with max timestamp older than now - 10s: ts up to clock-11000 (offset 9 is -11000).
    assert log.delete_old_segments() == 2  # never the active one
    assert log.log_start_offset == 8
    assert [s.base_offset for s in log.segments] == [8]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 100)

    log2 = open_log(
        LogConfig(segment_bytes=one * 2, retention_bytes=one * 3, retention_ms=-1), name="s-0"
    )
    for _ in range(10):
        log2.append_as_leader(batch(1, size=100), 0)
    log2.set_high_watermark(10)
    log2.delete_old_segments()
    assert log2.size_bytes() <= one * 3 + one * 2 - 1 and log2.size_bytes() >= one * 2
    assert log2.log_start_offset == log2.segments[0].base_offset


def test_delete_records_advances_log_start(open_log: OpenLog) -> None:
    one = len(batch(1))
    log = open_log(LogConfig(segment_bytes=one * 2))
    for _ in range(6):
        log.append_as_leader(batch(1), 0)
    log.set_high_watermark(5)
    with pytest.raises(OffsetOutOfRangeError):
        log.advance_log_start_offset(6)
    assert log.advance_log_start_offset(3) == 3
    assert [s.base_offset for s in log.segments] == [2, 4]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(2, 100)
    assert log.read(3, 100).first_offset == 3
    hit = log.offset_for_timestamp(EARLIEST_TIMESTAMP)
    assert hit is not None and hit.offset == 3


def test_flush_messages_policy_moves_recovery_point(open_log: OpenLog) -> None:
    log = open_log(LogConfig(flush_messages=5))
    for _ in range(4):
        log.append_as_leader(batch(1), 0)
    assert log.recovery_point == 0
    log.append_as_leader(batch(1), 0)
    assert log.recovery_point == 5
    log.append_as_leader(batch(1), 0)
    log.flush()
    assert log.recovery_point == 6


def test_flush_ms_policy(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(LogConfig(flush_ms=1000))
    log.append_as_leader(batch(1), 0)
    assert log.recovery_point == 0
    clock.now += 1500
    log.maybe_flush(clock.now)
    assert log.recovery_point == 1


def test_reopen_after_clean_close_and_unclean_stop(open_log: OpenLog) -> None:
    cfg = LogConfig(segment_bytes=1000, index_interval_bytes=100)
    log = open_log(cfg)
    for i in range(30):
        log.append_as_leader(batch(2, size=40, ts=1000 + i), i // 10)
    before = read_all(log)
    log.close()
    again = open_log(cfg, clean_shutdown=True)
    assert read_all(again) == before
    assert again.log_end_offset == 60
    assert again.leader_epoch_cache.entries() == [(0, 0), (1, 20), (2, 40)]
    again.close()
    # Torn tail: half a batch at the end of the last segment.
    with open(again.active_segment.log_path, "ab") as f:
        f.write(batch(1)[:30])
    recovered = open_log(cfg, clean_shutdown=False)
    assert read_all(recovered) == before
    assert recovered.append_as_leader(batch(1), 3).first_offset == 60


def test_epoch_cache_end_offsets(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(batch(3), 1)
    log.append_as_leader(batch(3), 3)
    log.append_as_leader(batch(3), 3)
    assert log.end_offset_for_epoch(0) == (-1, -1)
    assert log.end_offset_for_epoch(1) == (1, 3)
    assert log.end_offset_for_epoch(2) == (1, 3)
    assert log.end_offset_for_epoch(3) == (3, 9)
    assert log.end_offset_for_epoch(9) == (3, 9)


# ---------------------------------------------------------------------------- properties


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    ops = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["append", "append", "append", "truncate", "reopen", "roll"]))
        ops.append((kind, draw(st.integers(1, 5)), draw(st.integers(1, 300))))
    return ops


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations(), interval=st.sampled_from([0, 64, 4096]))
def test_log_matches_a_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]], interval: int
) -> None:
    """Any sequence of appends, truncations, rolls and reopens reads back like a list."""
    directory = os.path.join(str(tmp_path_factory.mktemp("m")), "m-0")
    cfg = LogConfig(segment_bytes=4000, index_interval_bytes=interval)
    clock = FakeClock()
    log = PartitionLog(directory, cfg, clock=clock)
    model: list[tuple[int, bytes]] = []  # (base offset, payload from the CRC on)
    epoch = 0
    for kind, n, size in ops:
        if kind == "append":
            data = batch(n, size=size, ts=clock.now + len(model))
            r = log.append_as_leader(data, epoch)
            model.append((r.first_offset, data[CRC_START - 4 :]))
        elif kind == "truncate" and model:
            cut = model[len(model) // 2][0]
            log.truncate_to(cut)
            model = [m for m in model if m[0] < cut]
            epoch += 1
        elif kind == "reopen":
            log.close()
            log = PartitionLog(directory, cfg, clock=clock, clean_shutdown=n % 2 == 0)
        elif kind == "roll":
            log.roll()
        stored = read_all(log)
        assert [(parse_header(b).base_offset, b[CRC_START - 4 :]) for b in stored] == model
        assert log.log_end_offset == (model[-1][0] if model else 0) + (
            parse_header(stored[-1]).last_offset_delta + 1 if stored else 0
        )
        for base, _ in model:
            assert log.read(base, 1).first_offset == base
    log.close()
