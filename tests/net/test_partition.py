"""The leader's view of its followers: caught-up time, ISR changes, high watermark."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import kraft.net.broker.partition as partition_module
from kraft.log.config import LogConfig
from kraft.log.partition_log import PartitionLog
from kraft.log.records import build_simple_batch
from kraft.net.broker.partition import Partition


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(partition_module.time, "monotonic", c)
    return c


def leader(tmp_path: Path) -> Partition:
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    p = Partition("t", 0, uuid.uuid4(), log, broker_id=1, min_insync_replicas=2)
    p.become_leader(leader_epoch=3, partition_epoch=5, replicas=[1, 2, 3], isr=[1, 2, 3])
    return p


def append(p: Partition) -> None:
    p.log.append_as_leader(build_simple_batch([b"x"]), p.leader_epoch)


def test_follower_that_keeps_up_with_a_stream_of_appends_stays_in_the_isr(
    tmp_path: Path, clock: Clock
) -> None:
    p = leader(tmp_path)
    lag_ms = 500
    for _ in range(20):
        # Every fetch reaches the log end the leader had at the previous fetch, never the
        # current one: an append always lands in between.
        previous_end = p.log.log_end_offset
        append(p)
        for r in (2, 3):
            p.record_follower_fetch(r, previous_end)
        clock.now += 0.2
        assert p.isr_change(int(clock.now * 1000), lag_ms, {1, 2, 3}) is None
    assert p.high_watermark == p.log.log_end_offset - 1


def test_follower_that_stops_fetching_leaves_and_rejoins_once_caught_up(
    tmp_path: Path, clock: Clock
) -> None:
    p = leader(tmp_path)
    for _ in range(5):
        append(p)
        p.record_follower_fetch(2, p.log.log_end_offset)
        p.record_follower_fetch(3, 0)  # stuck at the start
        clock.now += 0.2
    now = int(clock.now * 1000)
    assert p.isr_change(now, 500, {1, 2, 3}) == [1, 2]
    p.isr = [1, 2]
    # Behind the high watermark: not back yet.
    p.record_follower_fetch(3, 2)
    assert p.isr_change(int(clock.now * 1000), 500, {1, 2, 3}) is None
    p.record_follower_fetch(3, p.log.log_end_offset)
    assert p.isr_change(int(clock.now * 1000), 500, {1, 2, 3}) == [1, 2, 3]


def test_high_watermark_waits_for_min_insync_replicas(tmp_path: Path, clock: Clock) -> None:
    p = leader(tmp_path)
    append(p)
    p.isr = [1]
    p.record_follower_fetch(2, 1)
    assert p.high_watermark == 0  # ISR below min.insync.replicas=2: the HW does not move
    p.isr = [1, 2]
    p.record_follower_fetch(2, 1)
    assert p.high_watermark == 1


def test_follower_that_caught_up_wakes_the_isr_check_at_once(tmp_path: Path, clock: Clock) -> None:
    """Kafka expands the ISR on the fetch that catches up, not at the next periodic check
    (lag/2: 15 s with the default replica.lag.time.max.ms)."""
    p = leader(tmp_path)
    woken: list[int] = []
    p.on_follower_caught_up = lambda: woken.append(p.log.log_end_offset)
    for _ in range(3):
        append(p)
    p.isr = [1, 2]
    p.record_follower_fetch(2, p.log.log_end_offset)
    assert p.high_watermark == 3 and not woken  # an ISR member's fetch wakes nothing
    p.record_follower_fetch(3, 1)
    assert not woken  # behind the high watermark
    p.record_follower_fetch(3, 3)
    assert woken == [3]
    assert p.isr_change(int(clock.now * 1000), 500, {1, 2, 3}) == [1, 2, 3]
