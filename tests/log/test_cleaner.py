from __future__ import annotations

import os
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kraft.log.batch import iter_headers, validate_batch
from kraft.log.cleaner import LogCleaner
from kraft.log.compression import CompressionType
from kraft.log.config import LogConfig
from kraft.log.partition_log import PartitionLog
from kraft.log.records import Record, build_batch, build_simple_batch, decode_absolute

from .conftest import FakeClock

OpenLog = Callable[..., PartitionLog]
COMPACT = LogConfig(cleanup_policy="compact", segment_bytes=600, delete_retention_ms=1000)


def live_records(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    offset = log.log_start_offset
    while True:
        res = log.read(offset, 1 << 20)
        if not res.records:
            return out
        for pos, h in iter_headers(res.records):
            data = res.records[pos : pos + h.size]
            validate_batch(data, 0, len(data))
            out += [(r.offset, r.record.key, r.record.value) for r in decode_absolute(data)]
        offset = res.next_offset


def test_compaction_keeps_the_latest_value_per_key(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(COMPACT)
    for i in range(40):
        key = b"k%d" % (i % 4)
        log.append_as_leader(build_simple_batch([b"v%d" % i], [key], timestamp=clock.now), 0)
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    before = live_records(log)
    stats = LogCleaner(clock).clean(log)
    after = live_records(log)
    assert stats.records_removed == 36
    assert sorted(after) == [
        (36, b"k0", b"v36"),
        (37, b"k1", b"v37"),
        (38, b"k2", b"v38"),
        (39, b"k3", b"v39"),
    ]
    assert log.log_end_offset == 40
    # The latest value of each key is unchanged by cleaning.
    latest = {k: (o, v) for o, k, v in before}
    assert {k: (o, v) for o, k, v in after} == latest
    # A reopened (recovered) log reads the same.
    log.close()
    again = open_log(COMPACT, clean_shutdown=False)
    assert live_records(again) == after


def test_active_segment_and_above_high_watermark_are_untouched(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(COMPACT)
    for i in range(30):
        log.append_as_leader(build_simple_batch([b"v%d" % i], [b"same"], timestamp=clock.now), 0)
    log.set_high_watermark(0)
    assert LogCleaner(clock).clean(log).records_removed == 0
    log.set_high_watermark(log.log_end_offset)
    LogCleaner(clock).clean(log)
    recs = live_records(log)
    active_base = log.active_segment.base_offset
    # Like Kafka, the offset map covers only the cleanable range: its last record of the key
    # stays until the active segment rolls.
    assert [o for o, _, _ in recs if o < active_base] == [active_base - 1]
    assert [o for o, _, _ in recs] == list(range(active_base - 1, 30))


def test_tombstones_survive_until_delete_retention(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(COMPACT)
    log.append_as_leader(build_simple_batch([b"x"], [b"gone"], timestamp=clock.now), 0)
    log.append_as_leader(build_simple_batch([None], [b"gone"], timestamp=clock.now), 0)
    for i in range(20):
        log.append_as_leader(build_simple_batch([b"f%d" % i], [b"filler"], timestamp=clock.now), 0)
    log.set_high_watermark(log.log_end_offset)
    cleaner = LogCleaner(clock)
    cleaner.clean(log)
    assert (1, b"gone", None) in live_records(log)
    assert all(o != 0 for o, _, _ in live_records(log))
    clock.now += 5000
    cleaner.clean(log)
    assert all(k != b"gone" for _, k, _ in live_records(log))


def test_compressed_batches_are_rewritten_with_their_codec(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(LogConfig(cleanup_policy="compact", segment_bytes=2000))
    for codec in CompressionType:
        recs = [
            Record(i, 0, b"k%d" % (i % 2), b"%s-%d" % (codec.name.encode(), i)) for i in range(4)
        ]
        log.append_as_leader(build_batch(recs, compression=codec, base_timestamp=clock.now), 0)
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    LogCleaner(clock).clean(log)
    recs_after = live_records(log)
    assert [(o, k) for o, k, _ in recs_after] == [(18, b"k0"), (19, b"k1")]
    res = log.read(0, 1 << 20)
    codecs = [h.compression for _, h in iter_headers(res.records)]
    assert codecs == [CompressionType.ZSTD]


def test_last_batch_of_an_idempotent_producer_is_kept_empty(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(COMPACT)
    log.append_as_leader(
        build_simple_batch(
            [b"a"], [b"k"], timestamp=clock.now, producer_id=7, producer_epoch=0, base_sequence=0
        ),
        0,
    )
    log.append_as_leader(build_simple_batch([b"b"], [b"k"], timestamp=clock.now), 0)
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    LogCleaner(clock).clean(log)
    res = log.read(0, 1 << 20)
    headers = [h for _, h in iter_headers(res.records)]
    assert [(h.base_offset, h.records_count, h.producer_id) for h in headers] == [
        (0, 0, 7),
        (1, 1, -1),
    ]


def test_an_interrupted_swap_is_completed_on_load(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(COMPACT)
    for i in range(30):
        log.append_as_leader(build_simple_batch([b"v%d" % i], [b"k"], timestamp=clock.now), 0)
    log.set_high_watermark(log.log_end_offset)
    first = log.segments[0]
    # Simulate the crash window: the cleaned copy became `.swap`, nothing else happened yet.
    cleaner = LogCleaner(clock)
    latest, last = cleaner._build_offset_map(log.segments[:-1])
    cleaner._rewrite(first, first.log_path + ".swap", latest, last, False)
    with open(first.log_path + ".cleaned", "wb") as f:
        f.write(b"partial garbage")
    expected = [r for r in live_records(log) if r[0] >= log.segments[1].base_offset]
    log.close()
    again = open_log(COMPACT, clean_shutdown=False)
    assert not any(n.endswith((".swap", ".cleaned")) for n in os.listdir(again.directory))
    assert live_records(again) == expected


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keys=st.lists(st.integers(0, 6), min_size=1, max_size=80), seg=st.integers(300, 1500))
def test_compaction_preserves_latest_per_key(
    tmp_path_factory: object, keys: list[int], seg: int
) -> None:
    import tempfile

    clock = FakeClock()
    with tempfile.TemporaryDirectory() as d:
        cfg = LogConfig(cleanup_policy="compact", segment_bytes=seg)
        log = PartitionLog(os.path.join(d, "p-0"), cfg, clock=clock)
        for i, k in enumerate(keys):
            value = None if i % 7 == 3 else b"v%d" % i
            log.append_as_leader(build_simple_batch([value], [b"%d" % k], timestamp=clock.now), 0)
        log.set_high_watermark(log.log_end_offset)
        before = live_records(log)
        LogCleaner(clock).clean(log)
        after = live_records(log)
        closed_upto = log.active_segment.base_offset
        latest = {k: o for o, k, _ in before}
        # Every record of the active segment, and every latest record, survives.
        assert {r for r in before if r[0] >= closed_upto} <= set(after)
        assert {r for r in before if latest[r[1]] == r[0]} <= set(after)
        # Below the active segment only the latest of each key within that range survives,
        # and offsets only increase.
        latest_closed = {k: o for o, k, _ in before if o < closed_upto}
        assert all(latest_closed[k] == o for o, k, _ in after if o < closed_upto)
        assert [o for o, _, _ in after] == sorted(o for o, _, _ in after)
        log.close()
