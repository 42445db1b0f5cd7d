from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from kraft.log.partition_log import PartitionLog
from kraft.log.producer_state import InvalidProducerEpochError, OutOfOrderSequenceError
from kraft.log.records import build_simple_batch

OpenLog = Callable[..., PartitionLog]


def pbatch(seq: int, n: int = 2, pid: int = 42, epoch: int = 0) -> bytes:
    return build_simple_batch(
        [b"x"] * n, timestamp=1000, producer_id=pid, producer_epoch=epoch, base_sequence=seq
    )


def test_retries_are_deduplicated_with_their_original_offsets(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(build_simple_batch([b"plain"], timestamp=1), 0)
    first = log.append_as_leader(pbatch(0), 0)
    second = log.append_as_leader(pbatch(2), 0)
    assert (first.first_offset, second.first_offset) == (1, 3)
    again = log.append_as_leader(pbatch(0), 0)  # a retry of the first batch
    assert again.duplicate and (again.first_offset, again.last_offset) == (1, 2)
    assert log.log_end_offset == 5


def test_sequence_gaps_and_stale_epochs_are_refused(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(pbatch(0), 0)
    with pytest.raises(OutOfOrderSequenceError) as gap:
        log.append_as_leader(pbatch(5), 0)
    assert gap.value.error_code == 45
    log.append_as_leader(pbatch(0, epoch=1), 0)  # a new epoch restarts at 0
    with pytest.raises(InvalidProducerEpochError) as stale:
        log.append_as_leader(pbatch(2, epoch=0), 0)
    assert stale.value.error_code == 47
    with pytest.raises(OutOfOrderSequenceError):
        log.append_as_leader(pbatch(3, epoch=2), 0)  # new epoch not starting at 0
    assert log.log_end_offset == 4


def test_only_the_last_five_batches_are_remembered(open_log: OpenLog) -> None:
    log = open_log()
    for i in range(7):
        log.append_as_leader(pbatch(2 * i), 0)
    assert log.append_as_leader(pbatch(4), 0).duplicate  # batch 2 of 7: still known
    with pytest.raises(OutOfOrderSequenceError):
        log.append_as_leader(pbatch(2), 0)  # batch 1: forgotten, so out of order


def test_state_survives_restart_clean_or_not(open_log: OpenLog) -> None:
    from kraft.log.config import LogConfig

    cfg = LogConfig(segment_bytes=200)
    log = open_log(cfg)
    for i in range(10):
        log.append_as_leader(pbatch(2 * i), 0)
    assert len(log.segments) > 2
    log.close()
    assert any(n.endswith(".snapshot") for n in os.listdir(log.directory))
    clean = open_log(cfg, clean_shutdown=True)
    assert clean.append_as_leader(pbatch(18), 0).duplicate
    clean.append_as_leader(pbatch(20), 0)
    # Crash: no close(); the snapshot on disk is older than the log end.
    crashed = open_log(cfg, clean_shutdown=False)
    assert crashed.append_as_leader(pbatch(20), 0).duplicate
    assert crashed.append_as_leader(pbatch(22), 0).first_offset == 22


def test_truncation_rewinds_producer_state(open_log: OpenLog) -> None:
    log = open_log()
    for i in range(4):
        log.append_as_leader(pbatch(2 * i), 0)
    log.truncate_to(4)  # batches with sequences 4.. are gone
    assert log.append_as_leader(pbatch(4), 0).first_offset == 4
    follower = open_log(name="f-0")
    follower.append_as_follower(b"".join(bytes(log.read(0, 1 << 20).records) for _ in [0]))
    assert follower.append_as_leader(pbatch(4), 0).duplicate


def test_idle_producers_expire_after_producer_id_expiration_ms(open_log: OpenLog) -> None:
    """Kafka's removeExpiredProducers: a producer whose last batch timestamp is at least
    producer.id.expiration.ms old is forgotten; its next batch is taken as a new producer's
    (no sequence check, no deduplication against what it wrote before)."""
    log = open_log()
    log.append_as_leader(pbatch(0, pid=1), 0)  # batch timestamps: 1000
    log.append_as_leader(
        build_simple_batch(
            [b"y"], timestamp=5000, producer_id=2, producer_epoch=0, base_sequence=0
        ),
        0,
    )
    state = log.producer_state
    assert state.remove_expired_producers(now_ms=1999, expiration_ms=1000) == []
    assert state.remove_expired_producers(now_ms=2000, expiration_ms=1000) == [1]
    assert sorted(state.producers) == [2]
    # Sequence 4 does not follow the forgotten 1: accepted as a new producer's first batch.
    again = log.append_as_leader(pbatch(4, pid=1), 0)
    assert not again.duplicate and again.first_offset == 3
    with pytest.raises(OutOfOrderSequenceError):  # and from there on checked again
        log.append_as_leader(pbatch(20, pid=1), 0)
    assert state.remove_expired_producers(now_ms=6000, expiration_ms=1000) == [1, 2]
    assert state.producers == {}


def test_the_node_expires_producers_in_every_partition(open_log: OpenLog) -> None:
    """The node's periodic job applies producer.id.expiration.ms to each log, by its clock."""
    import asyncio

    from kraft.config import build_config
    from kraft.node import Node

    logs = {("a", 0): open_log(name="a-0"), ("b", 0): open_log(name="b-0")}
    for i, log in enumerate(logs.values()):
        log.append_as_leader(pbatch(0, pid=10 + i), 0)
    node = Node(
        build_config(
            {
                "node.id": "1",
                "listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                "controller.quorum.voters": "1@127.0.0.1:9093",
                "log.dirs": "/nonexistent",
                "producer.id.expiration.ms": "60000",
            }
        )
    )

    class Logs:
        def all_logs(self) -> dict[tuple[str, int], PartitionLog]:
            return logs  # type: ignore[return-value]

    node.log_manager = Logs()  # type: ignore[assignment]
    clock = logs["a", 0].clock
    clock.now = 1000 + 59_999  # type: ignore[attr-defined]
    asyncio.run(node._expire_producers())
    assert all(log.producer_state.producers for log in logs.values())
    clock.now = 1000 + 60_000  # type: ignore[attr-defined]
    asyncio.run(node._expire_producers())
    assert all(not log.producer_state.producers for log in logs.values())
