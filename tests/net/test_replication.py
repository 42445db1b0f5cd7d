"""The follower's fetch protocol and the leader's answer to it, without sockets: divergence,
truncation, and the ISR changes a leader asks for. Each case is one the replication
simulation (test_replication_sim.py) ran into."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import cast

from kraft.config import NodeConfig
from kraft.controller.controller import Controller
from kraft.log.config import LogConfig
from kraft.log.manager import LogManager
from kraft.log.partition_log import PartitionLog
from kraft.log.records import build_simple_batch
from kraft.metadata.image import MetadataImage
from kraft.net.broker.broker import Broker
from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import read_partition
from kraft.net.broker.replication import (
    apply_partition_fetch,
    divergence_truncation_offset,
    fetch_partition_request,
)
from kraft.net.protocol import AlterPartitionResponse, FetchResponse
from kraft.net.protocol import _generated as m

TOPIC_ID = uuid.UUID(int=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def log_with(tmp_path: Path, name: str, epochs: list[tuple[int, int]]) -> PartitionLog:
    """A log of one-record batches: `count` batches at each `epoch`, in order. Batches of
    the same epoch at the same offset are the same bytes in every log (one leader wrote
    them)."""
    log = PartitionLog(str(tmp_path / name / "t-0"), LogConfig())
    for epoch, count in epochs:
        for _ in range(count):
            value = f"epoch {epoch} offset {log.log_end_offset}".encode()
            log.append_as_leader(build_simple_batch([value], timestamp=1000), epoch)
    return log


def partition(log: PartitionLog, broker_id: int, clock: Clock) -> Partition:
    return Partition("t", 0, TOPIC_ID, log, broker_id, min_insync_replicas=1, clock=clock)


def fetch(leader: Partition, follower: Partition) -> tuple[FetchResponse.PartitionData, bool]:
    """The leader's answer to one fetch of `follower` (and whether it is answered at once)."""
    fp = fetch_partition_request(follower)
    data, _, now = read_partition(leader, fp, True, 0, 1 << 20, True)
    if not now:
        leader.record_follower_fetch(follower.broker_id, fp.fetch_offset)
        data.high_watermark = leader.high_watermark
    return data, now


def replicate(leader: Partition, follower: Partition, rounds: int = 10) -> None:
    for _ in range(rounds):
        data, _ = fetch(leader, follower)
        assert not apply_partition_fetch(follower, data, "")
        if follower.log.log_end_offset == leader.log.log_end_offset and not data.records:
            return
    raise AssertionError("the follower did not catch up")


def stored(log: PartitionLog) -> bytes:
    return bytes(log.read(0, 1 << 20).records)


def test_a_diverging_fetch_is_answered_at_once_and_does_not_count_as_progress(
    tmp_path: Path,
) -> None:
    """The first bug the simulation found: a returning old leader fetching from the end of a
    suffix it is about to truncate counted as holding it, so the leader took it back into the
    ISR and committed writes it did not have; once elected, it lost them."""
    clock = Clock()
    leader = partition(log_with(tmp_path, "leader", [(1, 4), (3, 2)]), 1, clock)
    leader.become_leader(leader_epoch=3, partition_epoch=0, replicas=[1, 2, 3], isr=[1, 2])
    old = partition(log_with(tmp_path, "old", [(1, 4), (2, 6)]), 3, clock)
    old.become_follower(1, 3, 0, [1, 2, 3], [1, 2])
    data, at_once = fetch(leader, old)
    assert (data.diverging_epoch.epoch, data.diverging_epoch.end_offset) == (1, 4)
    assert at_once  # no long poll: the follower must truncate before anything else
    assert leader.followers[3].log_end_offset == -1
    assert leader.isr_change(clock.now, 1000, {1, 2, 3}) is None
    # Truncated, it fetches from the shared prefix and then counts.
    assert not apply_partition_fetch(old, data, "")
    assert old.log.log_end_offset == 4
    replicate(leader, old)
    assert stored(old.log) == stored(leader.log)
    assert leader.isr_change(clock.now, 1000, {1, 2, 3}) == [1, 2, 3]


def test_a_leader_that_knows_no_epoch_that_old_reports_divergence_from_its_log_start(
    tmp_path: Path,
) -> None:
    """The follower only has epochs older than anything the leader has: none of it is the
    leader's (the answer used to be no divergence at all, and the follower looped)."""
    clock = Clock()
    leader = partition(log_with(tmp_path, "leader", [(5, 2)]), 1, clock)
    leader.become_leader(leader_epoch=5, partition_epoch=0, replicas=[1, 2], isr=[1])
    old = partition(log_with(tmp_path, "old", [(2, 3)]), 2, clock)
    old.become_follower(1, 5, 0, [1, 2], [1])
    data, _ = fetch(leader, old)
    assert (data.diverging_epoch.epoch, data.diverging_epoch.end_offset) == (-1, 0)
    replicate(leader, old)
    assert stored(old.log) == stored(leader.log)


def test_the_follower_keeps_only_what_both_logs_share_of_the_last_common_epoch(
    tmp_path: Path,
) -> None:
    """The leader's epoch 4 ends at 8, the follower's at 6 (then its own epoch 5, which the
    leader never had). Truncating to the leader's end (8) kept the follower's epoch-5 batches
    and it asked about epoch 5 forever; Kafka's rule truncates to the smaller end."""
    clock = Clock()
    leader = partition(log_with(tmp_path, "leader", [(2, 3), (4, 5), (6, 1)]), 1, clock)
    leader.become_leader(leader_epoch=6, partition_epoch=0, replicas=[1, 2], isr=[1])
    old = partition(log_with(tmp_path, "old", [(2, 3), (4, 3), (5, 3)]), 2, clock)
    old.become_follower(1, 6, 0, [1, 2], [1])
    data, _ = fetch(leader, old)
    assert (data.diverging_epoch.epoch, data.diverging_epoch.end_offset) == (4, 8)
    assert divergence_truncation_offset(old.log, 4, 8) == 6
    replicate(leader, old)
    assert stored(old.log) == stored(leader.log)


def test_a_former_leader_that_never_appended_in_its_epoch_catches_up(tmp_path: Path) -> None:
    clock = Clock()
    leader = partition(log_with(tmp_path, "leader", [(3, 4), (8, 2)]), 1, clock)
    leader.become_leader(leader_epoch=8, partition_epoch=0, replicas=[1, 2], isr=[1])
    old = partition(log_with(tmp_path, "old", [(3, 4)]), 2, clock)
    old.become_leader(leader_epoch=7, partition_epoch=0, replicas=[1, 2], isr=[2])  # no appends
    old.become_follower(1, 8, 1, [1, 2], [1])
    replicate(leader, old)
    assert stored(old.log) == stored(leader.log)


# ---------------------------------------------------------------- pending ISR additions


def broker_leading(tmp_path: Path, clock: Clock) -> Broker:
    """A broker leading t-0 (replicas 1, 2; ISR [1]) from a metadata image."""
    image = MetadataImage()
    for b in (1, 2):
        image.apply(m.RegisterBrokerRecord(broker_id=b, broker_epoch=b, fenced=False))
    image.apply(m.TopicRecord(name="t", topic_id=TOPIC_ID))
    image.apply(
        m.PartitionRecord(
            partition_id=0,
            topic_id=TOPIC_ID,
            replicas=[1, 2],
            isr=[1],
            leader=1,
            leader_epoch=0,
            partition_epoch=0,
        )
    )
    log_manager = LogManager([str(tmp_path / "broker")], LogConfig(), clock=clock)
    log_manager.startup()
    config = NodeConfig(
        node_id=1,
        process_roles=("broker",),
        listeners=(),
        advertised_listeners=(),
        log_dirs=(str(tmp_path / "broker"),),
        replica_lag_time_max_ms=1000,
    )
    broker = Broker(config, image, log_manager, cast(Controller, None), "c", clock=clock)
    broker.metadata_ready = True
    broker.on_metadata_change()
    return broker


def answer(partition_epoch: int) -> AlterPartitionResponse:
    return AlterPartitionResponse(
        topics=[
            AlterPartitionResponse.TopicData(
                topic_id=TOPIC_ID,
                partitions=[
                    AlterPartitionResponse.PartitionData(
                        partition_index=0, partition_epoch=partition_epoch
                    )
                ],
            )
        ]
    )


def test_the_high_watermark_waits_for_a_replica_the_leader_asked_to_add(tmp_path: Path) -> None:
    """Found by the simulation: the controller committed the leader's ISR expansion, the
    leader had not learnt it yet and committed writes without the new member, which the
    controller then elected. Like Kafka's "maximal ISR", the high watermark now counts the
    replicas asked for until the metadata (or an answer) settles the request."""
    clock = Clock()
    broker = broker_leading(tmp_path, clock)
    p = broker.partitions[("t", 0)]
    p.log.append_as_leader(build_simple_batch([b"a"]), 0)
    p.record_follower_fetch(2, 1)  # caught up: it may join
    request = broker.isr_changes(clock.now)
    assert request is not None
    asked = request.topics[0].partitions[0]
    assert [b.broker_id for b in asked.new_isr_with_epochs] == [1, 2]
    assert p.pending_isr == {2}
    p.log.append_as_leader(build_simple_batch([b"b"]), 0)
    p.maybe_advance_high_watermark()
    assert p.high_watermark == 1  # not 2: replica 2 may already be in the ISR
    # No answer: the next round asks again (the ISR as it is), to learn what was committed.
    again = broker.isr_changes(clock.now)
    assert again is not None
    # An answer showing a newer partition epoch: something was committed, the metadata
    # will say what; until then the addition still counts.
    broker.isr_changes_answered(again, answer(partition_epoch=1))
    assert p.pending_isr == {2}
    # An answer at the epoch the request was made under: nothing was committed.
    broker.isr_changes_answered(again, answer(partition_epoch=0))
    assert p.pending_isr == set()
    p.maybe_advance_high_watermark()
    assert p.high_watermark == 2
    # The metadata of a committed expansion replaces the pending state.
    p.pending_isr = {2}
    p.become_leader(leader_epoch=0, partition_epoch=1, replicas=[1, 2], isr=[1, 2])
    assert p.pending_isr == set()
