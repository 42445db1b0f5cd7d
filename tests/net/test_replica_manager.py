"""The replica manager on a fake clock: acks=all produces and long-polling fetches wait in
its purgatories and complete on partition changes (never by polling), expire with Kafka's
error codes, and a follower's position is recorded once per fetch request."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import cast

import pytest

from kraft.config import NodeConfig
from kraft.controller.controller import Controller
from kraft.log.batch import OFFSET_LENGTH
from kraft.log.config import LogConfig
from kraft.log.manager import LogManager
from kraft.log.records import build_simple_batch
from kraft.metadata.image import MetadataImage
from kraft.net.broker.broker import Broker
from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import (
    AppendOrigin,
    AppendResults,
    FetchParams,
    ReplicaManager,
)
from kraft.net.broker.replication import ReplicaFetcherManager, build_fetch_request
from kraft.net.protocol import ErrorCode, FetchRequest, FetchResponse

KEY = ("t", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 10_000

    def __call__(self) -> int:
        return self.now


class Harness:
    """Broker 1 leading t-0 with replicas [1, 2]; the purgatories' timer is recorded, and
    `advance` runs it as an event loop would."""

    def __init__(self, root: Path, isr: list[int], min_isr: int = 1) -> None:
        self.clock = Clock()
        self.wakes: list[int] = []
        self.manager = ReplicaManager(
            1,
            LogManager([str(root)], LogConfig(), clock=self.clock),
            MetadataImage,
            ReplicaFetcherManager(1, lambda _: None, ""),
            clock=self.clock,
        )
        self.manager.wake_at = self.wakes.append
        # This harness is the driver: delayed operations are checked at once after a change.
        self.manager.defer = lambda check: check()
        self.partition = self.manager.get_or_create_partition("t", 0, uuid.UUID(int=1), LogConfig())
        self.partition.min_insync_replicas = min_isr
        self.manager.become_leader(self.partition, 1, 1, [1, 2], isr)

    def advance(self, ms: int) -> None:
        self.clock.now += ms
        while self.wakes and min(self.wakes) <= self.clock.now:
            self.wakes.remove(min(self.wakes))
            self.manager.expire_delayed()

    def produce(self, acks: int = -1, timeout_ms: int = 1000) -> list[AppendResults]:
        answers: list[AppendResults] = []
        self.manager.append_records(
            {KEY: build_simple_batch([b"v"])}, acks, timeout_ms, AppendOrigin.CLIENT, answers.append
        )
        return answers

    def fetch(
        self, replica_id: int, offset: int, min_bytes: int = 1, max_wait_ms: int = 500
    ) -> list[list[FetchResponse.PartitionData]]:
        answers: list[list[FetchResponse.PartitionData]] = []
        params = FetchParams(replica_id, max_wait_ms, min_bytes, 1 << 20)
        fp = FetchRequest.FetchPartition(
            partition=0, current_leader_epoch=1, fetch_offset=offset, partition_max_bytes=1 << 20
        )
        self.manager.fetch_messages(params, [("t", fp)], answers.append)
        return answers


def test_acks_all_completes_when_the_follower_fetch_moves_the_high_watermark(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, isr=[1, 2])
    produced = h.produce()
    assert produced == []  # waits for replica 2
    assert h.manager.produce_purgatory.watched() == 1
    # The follower's fetch from offset 0 brings the batch; from offset 1 it holds it.
    assert len(h.fetch(2, 0)[0][0].records) > 0
    assert produced == []
    h.fetch(2, 1, max_wait_ms=0)
    assert [r[KEY].error_code for r in produced] == [ErrorCode.NONE]
    assert produced[0][KEY].base_offset == 0
    assert h.manager.produce_purgatory.watched() == 0


def test_acks_1_and_a_single_replica_answer_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1, 2])
    assert [r[KEY].error_code for r in h.produce(acks=1)] == [ErrorCode.NONE]
    alone = Harness(tmp_path / "alone", isr=[1])
    alone.partition.replicas = [1]
    alone.partition.followers = {}
    assert [r[KEY].error_code for r in alone.produce()] == [ErrorCode.NONE]


def test_acks_all_is_refused_up_front_below_min_insync_replicas(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1], min_isr=2)
    (answer,) = h.produce()
    assert answer[KEY].error_code == ErrorCode.NOT_ENOUGH_REPLICAS
    assert h.partition.log.log_end_offset == 0  # nothing appended
    assert [r[KEY].error_code for r in h.produce(acks=1)] == [ErrorCode.NONE]


def test_acks_all_expires_with_kafkas_codes(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1, 2], min_isr=2)
    timed_out = h.produce(timeout_ms=1000)
    h.advance(999)
    assert timed_out == []
    h.advance(1)
    assert [r[KEY].error_code for r in timed_out] == [ErrorCode.REQUEST_TIMED_OUT]
    # Appended while the ISR was whole, which then shrank below min.insync.replicas.
    shrunk = h.produce(timeout_ms=1000)
    h.manager.become_leader(h.partition, 1, 2, [1, 2], [1])
    h.advance(1000)
    assert [r[KEY].error_code for r in shrunk] == [ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND]


async def test_acks_all_fails_at_once_when_leadership_changes(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1, 2])
    lost = h.produce()
    h.manager.become_follower(h.partition, 2, 2, 2, [1, 2], [1, 2])  # starts a fetcher
    assert [r[KEY].error_code for r in lost] == [ErrorCode.NOT_LEADER_OR_FOLLOWER]
    await h.manager.shutdown()

    h = Harness(tmp_path / "again", isr=[1, 2])
    # Led again under a new epoch: the batch may have been truncated meanwhile.
    regained = h.produce()
    h.manager.become_leader(h.partition, 3, 3, [1, 2], [1, 2])
    assert [r[KEY].error_code for r in regained] == [ErrorCode.NOT_LEADER_OR_FOLLOWER]

    h = Harness(tmp_path / "stopped", isr=[1, 2])
    stopped = h.produce()
    h.manager.stop_replica(KEY)
    assert [r[KEY].error_code for r in stopped] == [ErrorCode.NOT_LEADER_OR_FOLLOWER]
    assert h.manager.produce_purgatory.watched() == 0


@pytest.mark.parametrize("origin", list(AppendOrigin))
def test_a_storage_error_is_kafka_storage_error_for_every_origin(
    tmp_path: Path, origin: AppendOrigin, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path, isr=[1, 2])

    def broken_disk(*_: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(h.partition.log, "append_as_leader", broken_disk)
    answers: list[AppendResults] = []
    h.manager.append_records({KEY: build_simple_batch([b"v"])}, -1, 1000, origin, answers.append)
    assert [r[KEY].error_code for r in answers] == [ErrorCode.KAFKA_STORAGE_ERROR]


def test_a_consumer_fetch_waits_for_the_high_watermark_not_the_log_end(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1, 2])
    consumer = h.fetch(-1, 0)
    assert consumer == []
    h.produce(acks=1)
    assert consumer == []  # appended, not committed
    h.fetch(2, 1, max_wait_ms=0)  # replica 2 holds it: the high watermark moves
    assert len(consumer) == 1 and len(consumer[0][0].records) > 0
    assert consumer[0][0].high_watermark == 1


def test_a_follower_fetch_is_woken_by_an_append(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1, 2])
    follower = h.fetch(2, 0)
    assert follower == []
    h.produce(acks=1)
    assert len(follower) == 1 and len(follower[0][0].records) > 0


def test_a_fetch_answers_empty_after_max_wait(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1, 2])
    consumer = h.fetch(-1, 0, max_wait_ms=500)
    h.advance(499)
    assert consumer == []
    h.advance(1)
    assert len(consumer) == 1 and len(consumer[0][0].records) == 0
    assert h.manager.fetch_purgatory.watched() == 0


def test_a_fetch_waits_for_min_bytes(tmp_path: Path) -> None:
    h = Harness(tmp_path, isr=[1])
    size = len(build_simple_batch([b"v"]))
    consumer = h.fetch(-1, 0, min_bytes=2 * size)
    h.produce()
    assert consumer == []
    h.produce()
    assert len(consumer) == 1 and len(consumer[0][0].records) == 2 * size


def test_a_follower_position_is_recorded_once_per_fetch_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delayed fetch reads again on every change; only the first read says where the
    follower is (a re-read of an old request must not move its caught-up time)."""
    h = Harness(tmp_path, isr=[1, 2])
    recorded: list[tuple[int, int]] = []
    real = Partition.record_follower_fetch

    def counting(self: Partition, replica: int, offset: int) -> None:
        recorded.append((replica, offset))
        real(self, replica, offset)

    monkeypatch.setattr(Partition, "record_follower_fetch", counting)
    follower = h.fetch(2, 0)
    for _ in range(3):
        h.manager.fetch_purgatory.check_and_complete(KEY)  # re-reads, no data yet
    h.produce(acks=1)
    assert len(follower) == 1
    assert recorded == [(2, 0)]


def test_the_replica_fetch_configs_shape_the_followers_fetch(tmp_path: Path) -> None:
    """replica.fetch.wait.max.ms is the follower fetch's max wait; replica.fetch.max.bytes its
    per-partition limit, which the leader honours."""
    config = NodeConfig(
        node_id=2,
        process_roles=("broker",),
        listeners=(),
        advertised_listeners=(),
        log_dirs=(str(tmp_path / "b2"),),
        replica_fetch_wait_max_ms=123,
        replica_fetch_max_bytes=200,
    )
    follower_broker = Broker(
        config,
        MetadataImage(),
        LogManager([str(tmp_path / "b2")]),
        cast(Controller, None),
        "c",
    )
    settings = follower_broker.fetchers._socket_fetcher(1).settings
    assert (settings.max_wait_ms, settings.partition_max_bytes) == (123, 200)

    h = Harness(tmp_path / "leader", isr=[1, 2])
    for _ in range(5):
        h.produce(acks=1)
    batch = len(build_simple_batch([b"v"]))
    follower = Partition("t", 0, uuid.UUID(int=1), h.partition.log, 2)  # its log: any will do
    follower.leader_epoch = 1
    follower.log = LogManager([str(tmp_path / "f")]).get_or_create_log("t", 0, LogConfig())
    request = build_fetch_request(2, {KEY: follower}, 15, settings)
    assert request.max_wait_ms == 123
    (fp,) = request.topics[0].partitions
    assert fp.partition_max_bytes == 200
    answers: list[list[FetchResponse.PartitionData]] = []
    params = FetchParams(2, request.max_wait_ms, request.min_bytes, request.max_bytes)
    h.manager.fetch_messages(params, [("t", fp)], answers.append)
    assert batch < 200 < 5 * batch
    assert len(answers[0][0].records) == (200 // batch) * batch


async def test_changes_in_one_loop_pass_answer_a_parked_follower_fetch_once(
    tmp_path: Path,
) -> None:
    """On the loop, checks run after the pass: a follower fetch parked on the partition gets
    every batch appended in that pass in one answer (not one answer per append)."""
    h = Harness(tmp_path, isr=[1, 2])
    h.manager.defer = ReplicaManager._call_soon
    answers = h.fetch(2, 0)
    assert answers == [] and h.manager.fetch_purgatory.watched() == 1
    h.produce(acks=1)
    h.produce(acks=1)
    assert answers == []  # not answered inside the appends
    # Yield once: the deferred check (queued by the first append) runs before this resumes.
    await asyncio.sleep(0)
    assert len(answers) == 1
    (data,) = answers[0]
    assert _batch_count(bytes(data.records)) == 2


def _batch_count(records: bytes) -> int:
    count = position = 0
    while position < len(records):
        _, length = OFFSET_LENGTH.unpack_from(records, position)
        position += OFFSET_LENGTH.size + length
        count += 1
    return count


def test_completed_operations_left_in_the_expiry_heap_hold_no_data(tmp_path: Path) -> None:
    """A completed delayed fetch or produce may wait in the expiry heap until its deadline;
    it must not keep what it answered alive (a leader under acks=all load held ~250 MB of
    follower reads that way)."""
    h = Harness(tmp_path, isr=[1, 2])
    answers = h.fetch(2, 0)
    produced = h.produce()
    assert len(answers) == 1 and len(answers[0][0].records) > 0
    h.fetch(2, 1, max_wait_ms=0)
    assert [r[KEY].error_code for r in produced] == [ErrorCode.NONE]
    left = [op for _, _, op in h.manager.fetch_purgatory._deadlines]
    left += [op for _, _, op in h.manager.produce_purgatory._deadlines]
    assert left and all(op.completed for op in left)
    for op in left:
        assert getattr(op, "_read", None) is None
        assert op.done.__module__ == "kraft.net.broker.replica_manager"  # not the caller's
