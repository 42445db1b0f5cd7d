from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kraft.log.checkpoint import LeaderEpochCache, OffsetCheckpointFile
from kraft.log.index import IndexCorruptError, OffsetIndex, TimeIndex

tp_offsets = st.dictionaries(
    st.tuples(st.from_regex(r"[a-zA-Z0-9._-]{1,20}", fullmatch=True), st.integers(0, 1000)),
    st.integers(0, 2**62),
)


@given(offsets=tp_offsets)
def test_offset_checkpoint_round_trip(tmp_path_factory: object, offsets: dict) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = OffsetCheckpointFile(os.path.join(d, "recovery-point-offset-checkpoint"))
        f.write(offsets)
        assert f.read() == offsets
        assert not os.path.exists(f.path + ".tmp")


def test_offset_checkpoint_format_is_kafkas(tmp_path: Path) -> None:
    f = OffsetCheckpointFile(str(tmp_path / "cp"))
    f.write({("orders", 1): 977, ("orders", 0): 1042})
    assert (tmp_path / "cp").read_text() == "0\n2\norders 0 1042\norders 1 977\n"


def test_unreadable_checkpoint_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "cp").write_text("0\n3\norders 0 1\n")
    assert OffsetCheckpointFile(str(tmp_path / "cp")).read() == {}


@given(
    assigns=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 200)), max_size=30),
    probe=st.integers(-1, 25),
)
def test_epoch_cache_invariants_and_persistence(
    tmp_path_factory: object, assigns: list[tuple[int, int]], probe: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "leader-epoch-checkpoint")
        cache = LeaderEpochCache(path)
        for epoch, start in assigns:
            cache.assign(epoch, start)
            entries = cache.entries()
            assert [e for e, _ in entries] == sorted({e for e, _ in entries})
            assert [s for _, s in entries] == sorted({s for _, s in entries})
        assert LeaderEpochCache(path).entries() == cache.entries()
        leo = 1000
        epoch, end = cache.end_offset_for(probe, leo)
        entries = cache.entries()
        if not entries or probe < entries[0][0]:
            assert (epoch, end) == (-1, -1)
        else:
            assert epoch == max(e for e, _ in entries if e <= probe)
            later = [s for e, s in entries if e > epoch]
            assert end == (later[0] if later else leo)


def test_epoch_cache_truncation(tmp_path: Path) -> None:
    cache = LeaderEpochCache(str(tmp_path / "c"))
    for epoch, start in [(1, 0), (3, 10), (4, 20)]:
        cache.assign(epoch, start)
    cache.truncate_from_end(15)
    assert cache.entries() == [(1, 0), (3, 10)]
    cache.truncate_from_start(12)
    assert cache.entries() == [(3, 12)]
    assert LeaderEpochCache(str(tmp_path / "c")).entries() == [(3, 12)]


def test_offset_index_lookup_truncate_and_reload(tmp_path: Path) -> None:
    log_file = tmp_path / "00000000000000000100.log"
    log_file.write_bytes(b"\0" * 1000)
    idx = OffsetIndex(str(tmp_path / "00000000000000000100.index"), 100)
    for offset, pos in [(110, 100), (120, 300), (130, 600)]:
        idx.append(offset, pos)
    idx.append(125, 400)  # out of order: ignored
    assert idx.lookup(99) == (100, 0)
    assert idx.lookup(119) == (110, 100)
    assert idx.lookup(120) == (120, 300)
    assert idx.lookup(10_000) == (130, 600)
    idx.flush()
    again = OffsetIndex(idx.path, 100)
    again.load(1000)
    assert again.entries() == idx.entries()
    idx.truncate_entries(idx.position_at_or_after(300))
    assert idx.entries() == [(110, 100)]
    assert os.path.getsize(idx.path) == 8
    bad = OffsetIndex(idx.path, 100)
    with open(idx.path, "ab") as f:
        f.write(b"\x01\x02\x03")
    try:
        bad.load(1000)
        raise AssertionError("a torn index must not load")
    except IndexCorruptError:
        pass


def test_time_index_lookup(tmp_path: Path) -> None:
    idx = TimeIndex(str(tmp_path / "00000000000000000000.timeindex"), 0)
    for ts, offset in [(100, 5), (200, 9), (300, 20)]:
        idx.append(ts, offset)
    assert idx.lookup(50) == 0
    assert idx.lookup(100) == 0
    assert idx.lookup(150) == 5
    assert idx.lookup(301) == 20
    idx.truncate_to_offset(9)
    assert idx.entries() == [(100, 5)]
