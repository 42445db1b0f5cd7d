"""The controller's commands and the metadata image, with no I/O.

The metadata log here is a list: `MemoryLog.append` encodes each record as the real logs do
(`encode_metadata_record`), then publishes the batch to the image, so a command sees the
previous command's records. Replaying the encoded log into a fresh image must rebuild the
same image: that is what every node does at start-up, and what keeps nodes in agreement.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from kraft.controller.controller import (
    PRODUCER_ID_BLOCK,
    Controller,
    ControllerDefaults,
    Result,
    TopicResult,
    TopicSpec,
)
from kraft.controller.replication import remove_broker, usable_brokers
from kraft.metadata.image import TOPIC_RESOURCE, MetadataImage
from kraft.metadata.publisher import MetadataPublisher
from kraft.net.protocol import ErrorCode, Message, decode_metadata_record, encode_metadata_record
from kraft.net.protocol import _generated as m

T = TypeVar("T")
ZERO = uuid.UUID(int=0)


class MemoryLog:
    """A MetadataLog kept in a list of encoded records; offsets are list indexes."""

    def __init__(self, publisher: MetadataPublisher) -> None:
        self.publisher = publisher
        self.entries: list[bytes] = []
        self.batches = 0

    async def append(self, records: Sequence[Message]) -> int:
        first = len(self.entries)
        self.entries += [encode_metadata_record(r) for r in records]
        self.batches += 1
        self.publisher.publish(first, records)
        return len(self.entries) - 1

    def replay(self) -> MetadataImage:
        image = MetadataImage()
        for offset, data in enumerate(self.entries):
            image.apply(decode_metadata_record(data), offset)
        return image


class Cluster:
    """A controller over an in-memory log, with brokers registered and unfenced."""

    def __init__(
        self,
        brokers: int = 3,
        defaults: ControllerDefaults | None = None,
        seed: int = 7,
        racks: dict[int, str] | None = None,
    ) -> None:
        self.image = MetadataImage()
        self.log = MemoryLog(MetadataPublisher(self.image))
        self.controller = Controller(
            self.image, self.log, defaults or ControllerDefaults(), rng=random.Random(seed)
        )
        self.pending_brokers = [(b, (racks or {}).get(b)) for b in range(1, brokers + 1)]

    async def start(self) -> Cluster:
        for broker_id, rack in self.pending_brokers:
            await self.add_broker(broker_id, rack)
        return self

    async def add_broker(self, broker_id: int, rack: str | None = None) -> int:
        epoch = await self.run(
            self.controller.register_broker(
                broker_id,
                uuid.UUID(int=broker_id),
                [("PLAINTEXT", f"broker{broker_id}", 9092)],
                rack,
                True,
            )
        )
        await self.run(self.controller.unfence_broker(broker_id, epoch))
        return epoch

    async def run(self, command: Callable[[MetadataImage], Result[T]]) -> T:
        return await self.controller.run(command)

    async def create(self, *specs: TopicSpec, validate_only: bool = False) -> list[TopicResult]:
        return await self.run(self.controller.create_topics(list(specs), validate_only))

    async def create_one(self, spec: TopicSpec) -> TopicResult:
        (result,) = await self.create(spec)
        return result


async def cluster(**kwargs: Any) -> Cluster:
    return await Cluster(**kwargs).start()


def assert_replay_matches(c: Cluster) -> None:
    assert vars(c.log.replay()) == vars(c.image)


# --------------------------------------------------------------------------- create topics


async def test_create_topic_with_defaults() -> None:
    c = await cluster(defaults=ControllerDefaults(num_partitions=3, default_replication_factor=2))
    before = len(c.log.entries)
    result = await c.create_one(TopicSpec("orders", configs={"retention.ms": "1000"}))
    assert result.error_code == 0 and result.error_message is None
    assert (result.num_partitions, result.replication_factor) == (3, 2)
    topic = c.image.topics["orders"]
    assert result.topic_id == topic.topic_id != ZERO
    assert c.image.topics_by_id[topic.topic_id] is topic
    assert sorted(topic.partitions) == [0, 1, 2]
    for state in topic.partitions.values():
        assert len(set(state.replicas)) == 2 and set(state.replicas) <= {1, 2, 3}
        assert state.isr == state.replicas
        assert state.leader == state.replicas[0]
        assert (state.leader_epoch, state.partition_epoch) == (0, 0)
    # Round-robin from a random start: the leaders are spread over the brokers.
    assert {s.leader for s in topic.partitions.values()} == {1, 2, 3}
    assert c.image.topic_config("orders") == {"retention.ms": "1000"}
    # One atomic batch: TopicRecord, ConfigRecord, then one PartitionRecord per partition.
    kinds = [type(decode_metadata_record(e)).__name__ for e in c.log.entries[before:]]
    assert kinds == ["TopicRecord", "ConfigRecord"] + ["PartitionRecord"] * 3
    assert_replay_matches(c)


async def test_create_topic_with_explicit_partitions_and_replication() -> None:
    c = await cluster()
    result = await c.create_one(TopicSpec("t", num_partitions=5, replication_factor=3))
    assert (result.num_partitions, result.replication_factor) == (5, 3)
    for state in c.image.topics["t"].partitions.values():
        assert sorted(state.replicas) == [1, 2, 3]


async def test_create_topic_with_explicit_assignments() -> None:
    c = await cluster()
    result = await c.create_one(TopicSpec("t", assignments={0: [3, 1], 1: [2, 3], 2: [1, 2]}))
    assert (result.error_code, result.num_partitions, result.replication_factor) == (0, 3, 2)
    partitions = c.image.topics["t"].partitions
    assert {p: s.replicas for p, s in partitions.items()} == {0: [3, 1], 1: [2, 3], 2: [1, 2]}
    assert [partitions[p].leader for p in range(3)] == [3, 2, 1]


async def test_fenced_brokers_get_no_new_replicas() -> None:
    c = await cluster(brokers=3)
    await c.run(c.controller.register_broker(4, uuid.UUID(int=4), [], None, True))
    assert c.image.unfenced_brokers() == [1, 2, 3]
    await c.create_one(TopicSpec("t", num_partitions=12, replication_factor=3))
    assert all(4 not in s.replicas for s in c.image.topics["t"].partitions.values())
    (result,) = await c.create(TopicSpec("u", replication_factor=4))
    assert result.error_code == ErrorCode.INVALID_REPLICATION_FACTOR


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a" * 250, "bad/name", "with space", "tab\t", "ünïcode", "a:b", "a*"],
)
async def test_illegal_topic_names(name: str) -> None:
    c = await cluster()
    before = len(c.log.entries)
    (result,) = await c.create(TopicSpec(name))
    assert result.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert result.error_message
    assert len(c.log.entries) == before


async def test_longest_legal_topic_name() -> None:
    c = await cluster()
    assert (await c.create_one(TopicSpec("a" * 249))).error_code == 0
    assert (await c.create_one(TopicSpec("A-z_0.9"))).error_code == 0


async def test_topic_already_exists() -> None:
    c = await cluster()
    first = await c.create_one(TopicSpec("t"))
    again = await c.create_one(TopicSpec("t", num_partitions=3))
    assert again.error_code == ErrorCode.TOPIC_ALREADY_EXISTS
    assert c.image.topics["t"].topic_id == first.topic_id
    assert len(c.image.topics["t"].partitions) == 1


@pytest.mark.parametrize(("existing", "new"), [("a.b", "a_b"), ("a_b", "a.b"), ("x.y_z", "x_y.z")])
async def test_names_colliding_on_dot_and_underscore(existing: str, new: str) -> None:
    c = await cluster()
    assert (await c.create_one(TopicSpec(existing))).error_code == 0
    result = await c.create_one(TopicSpec(new))
    assert result.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert result.error_message is not None and existing in result.error_message
    assert new not in c.image.topics


@pytest.mark.parametrize("partitions", [0, -2, -100])
async def test_invalid_partition_counts(partitions: int) -> None:
    c = await cluster()
    (result,) = await c.create(TopicSpec("t", num_partitions=partitions))
    assert result.error_code == ErrorCode.INVALID_PARTITIONS
    assert "t" not in c.image.topics


@pytest.mark.parametrize("rf", [0, -2, 4, 100])
async def test_invalid_replication_factors(rf: int) -> None:
    c = await cluster(brokers=3)
    (result,) = await c.create(TopicSpec("t", replication_factor=rf))
    assert result.error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert "t" not in c.image.topics


@pytest.mark.parametrize(
    "assignments",
    [
        {0: [1], 2: [2]},  # not consecutive from 0
        {1: [1], 2: [2]},  # does not start at 0
        {0: [1, 2], 1: [3]},  # different replica counts
        {0: []},  # no replica
        {0: [1, 1]},  # a broker twice
        {0: [1, 9]},  # an unknown broker
    ],
)
async def test_invalid_replica_assignments(assignments: dict[int, list[int]]) -> None:
    c = await cluster()
    (result,) = await c.create(TopicSpec("t", assignments=assignments))
    assert result.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert "t" not in c.image.topics


async def test_assignments_with_a_partition_count_are_an_invalid_request() -> None:
    c = await cluster()
    (result,) = await c.create(TopicSpec("t", num_partitions=1, assignments={0: [1]}))
    assert result.error_code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(
    "configs",
    [
        {"no.such.config": "1"},
        {"retention.ms": "soon"},
        {"retention.ms": "-2"},
        {"cleanup.policy": "shred"},
        {"min.insync.replicas": "0"},
        {"compression.type": "brotli"},
        {"unclean.leader.election.enable": "maybe"},
        {"segment.bytes": "1"},
    ],
)
async def test_invalid_topic_configs(configs: dict[str, str]) -> None:
    c = await cluster()
    (result,) = await c.create(TopicSpec("t", configs=configs))
    assert result.error_code == ErrorCode.INVALID_CONFIG
    assert result.error_message and next(iter(configs)) in result.error_message
    assert "t" not in c.image.topics and not c.image.configs


async def test_duplicate_names_in_one_request_fail_only_those() -> None:
    c = await cluster()
    results = await c.create(TopicSpec("dup"), TopicSpec("ok"), TopicSpec("dup", num_partitions=2))
    assert [(r.name, r.error_code) for r in results] == [
        ("dup", ErrorCode.INVALID_REQUEST),
        ("ok", 0),
        ("dup", ErrorCode.INVALID_REQUEST),
    ]
    assert set(c.image.topics) == {"ok"}


async def test_one_request_mixes_successes_and_failures() -> None:
    c = await cluster()
    await c.create_one(TopicSpec("exists"))
    results = await c.create(
        TopicSpec("a", num_partitions=2),
        TopicSpec("exists"),
        TopicSpec("b", replication_factor=9),
        TopicSpec("c", configs={"cleanup.policy": "compact"}),
    )
    assert [r.error_code for r in results] == [
        0,
        ErrorCode.TOPIC_ALREADY_EXISTS,
        ErrorCode.INVALID_REPLICATION_FACTOR,
        0,
    ]
    assert set(c.image.topics) == {"exists", "a", "c"}
    assert_replay_matches(c)


async def test_validate_only_commits_nothing() -> None:
    c = await cluster()
    before = (len(c.log.entries), c.log.batches)
    results = await c.create(
        TopicSpec("t", num_partitions=4, configs={"retention.ms": "5"}),
        TopicSpec("bad name"),
        validate_only=True,
    )
    assert [r.error_code for r in results] == [0, ErrorCode.INVALID_TOPIC_EXCEPTION]
    assert results[0].num_partitions == 4
    assert (len(c.log.entries), c.log.batches) == before
    assert not c.image.topics and not c.image.configs
    # The command itself returns no records either.
    command = c.controller.create_topics([TopicSpec("t")], True)
    assert command(c.image).records == []


@pytest.mark.parametrize("validate_only", [True, False])
async def test_excessive_partition_counts_are_refused(validate_only: bool) -> None:
    c = await cluster(brokers=1)
    (result,) = await c.create(
        TopicSpec("huge", num_partitions=10_001), validate_only=validate_only
    )
    assert result.error_code in (ErrorCode.POLICY_VIOLATION, ErrorCode.INVALID_PARTITIONS)


@pytest.mark.parametrize("brokers", [{1: "a", 2: "a", 3: "b"}, {1: "a", 2: "a", 3: "b", 4: "b"}])
async def test_rack_aware_placement_spreads_replicas_over_racks(brokers: dict[int, str]) -> None:
    spread = []
    for seed in range(20):
        c = await cluster(brokers=len(brokers), racks=brokers, seed=seed)
        await c.create_one(TopicSpec("t", num_partitions=6, replication_factor=2))
        for state in c.image.topics["t"].partitions.values():
            spread.append(len({brokers[b] for b in state.replicas}))
    assert set(spread) == {2}


# --------------------------------------------------------------------------- delete topics


async def test_delete_topics_by_name_and_by_id() -> None:
    c = await cluster()
    a = await c.create_one(TopicSpec("a", configs={"retention.ms": "1"}))
    b = await c.create_one(TopicSpec("b"))
    await c.create_one(TopicSpec("keep"))
    unknown_id = uuid.UUID(int=12345)
    results = await c.run(c.controller.delete_topics(["a", "nope"], [b.topic_id, unknown_id]))
    assert [(name, topic_id, code) for name, topic_id, code, _ in results] == [
        ("a", a.topic_id, 0),
        ("nope", ZERO, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("b", b.topic_id, 0),
        (None, unknown_id, ErrorCode.UNKNOWN_TOPIC_ID),
    ]
    assert set(c.image.topics) == {"keep"}
    assert set(c.image.topics_by_id) == {c.image.topics["keep"].topic_id}
    assert (TOPIC_RESOURCE, "a") not in c.image.configs
    assert_replay_matches(c)


async def test_a_recreated_topic_gets_a_new_id_and_no_old_configs() -> None:
    c = await cluster()
    first = await c.create_one(TopicSpec("t", configs={"cleanup.policy": "compact"}))
    await c.run(c.controller.delete_topics(["t"], []))
    second = await c.create_one(TopicSpec("t"))
    assert second.error_code == 0 and second.topic_id != first.topic_id
    assert c.image.topic_config("t") == {}
    assert first.topic_id not in c.image.topics_by_id


async def test_deleting_nothing_commits_nothing() -> None:
    c = await cluster()
    before = len(c.log.entries)
    results = await c.run(c.controller.delete_topics(["ghost"], []))
    assert results[0][2] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert len(c.log.entries) == before


# --------------------------------------------------------------------------- partitions


async def test_create_partitions_continues_numbering_with_the_same_rf() -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t", num_partitions=2, replication_factor=2))
    code, message = await c.run(c.controller.create_partitions("t", 5, None, False))
    assert (code, message) == (0, None)
    partitions = c.image.topics["t"].partitions
    assert sorted(partitions) == [0, 1, 2, 3, 4]
    assert all(len(set(s.replicas)) == 2 for s in partitions.values())
    assert all(s.leader == s.replicas[0] for s in partitions.values())
    assert_replay_matches(c)


async def test_create_partitions_with_assignments() -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t", assignments={0: [1, 2]}))
    code, _ = await c.run(c.controller.create_partitions("t", 3, [[2, 3], [3, 1]], False))
    assert code == 0
    partitions = c.image.topics["t"].partitions
    assert {p: s.replicas for p, s in partitions.items()} == {0: [1, 2], 1: [2, 3], 2: [3, 1]}


@pytest.mark.parametrize(
    ("topic", "count", "assignments", "code"),
    [
        ("ghost", 3, None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("t", 2, None, ErrorCode.INVALID_PARTITIONS),  # not more than now
        ("t", 1, None, ErrorCode.INVALID_PARTITIONS),
        ("t", 4, [[1, 2]], ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # 1 assignment for 2
        ("t", 3, [[1, 1]], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
        ("t", 3, [[1, 7]], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
        pytest.param(
            "t",
            3,
            [[1]],
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            id="rf-differs",
        ),
    ],
)
async def test_create_partitions_errors(
    topic: str, count: int, assignments: list[list[int]] | None, code: int
) -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t", num_partitions=2, replication_factor=2))
    before = len(c.log.entries)
    got, message = await c.run(c.controller.create_partitions(topic, count, assignments, False))
    assert got == code and message
    assert len(c.log.entries) == before
    assert len(c.image.topics["t"].partitions) == 2


async def test_create_partitions_rf_larger_than_the_live_brokers() -> None:
    c = await cluster(brokers=2)
    await c.create_one(TopicSpec("t", replication_factor=2))
    await c.run(c.controller.register_broker(2, uuid.UUID(int=99), [], None, True))  # fenced
    code, _ = await c.run(c.controller.create_partitions("t", 2, None, False))
    assert code == ErrorCode.INVALID_REPLICATION_FACTOR


async def test_create_partitions_validate_only_commits_nothing() -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t"))
    before = len(c.log.entries)
    assert await c.run(c.controller.create_partitions("t", 9, None, True)) == (0, None)
    assert len(c.log.entries) == before
    assert len(c.image.topics["t"].partitions) == 1


# --------------------------------------------------------------------------- configs


async def test_incremental_alter_configs_sets_and_deletes() -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t", configs={"retention.ms": "1", "segment.bytes": "1048576"}))
    changes: dict[str, str | None] = {"retention.ms": "2", "segment.bytes": None}
    changes["cleanup.policy"] = "compact"
    assert await c.run(c.controller.alter_topic_configs("t", changes, True, False)) == (0, None)
    assert c.image.topic_config("t") == {"retention.ms": "2", "cleanup.policy": "compact"}
    # Setting what is already set writes nothing.
    before = len(c.log.entries)
    same = {"retention.ms": "2"}
    assert await c.run(c.controller.alter_topic_configs("t", same, True, False)) == (0, None)
    assert len(c.log.entries) == before
    assert_replay_matches(c)


async def test_full_alter_configs_replaces_every_config() -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t", configs={"retention.ms": "1", "segment.bytes": "1048576"}))
    command = c.controller.alter_topic_configs("t", {"cleanup.policy": "compact"}, False, False)
    assert await c.run(command) == (0, None)
    assert c.image.topic_config("t") == {"cleanup.policy": "compact"}
    command = c.controller.alter_topic_configs("t", {}, False, False)
    assert await c.run(command) == (0, None)
    assert c.image.topic_config("t") == {}
    assert (TOPIC_RESOURCE, "t") not in c.image.configs
    assert_replay_matches(c)


@pytest.mark.parametrize(
    ("topic", "changes", "code"),
    [
        ("ghost", {"retention.ms": "1"}, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("t", {"retention.ms": "x"}, ErrorCode.INVALID_CONFIG),
        ("t", {"no.such.key": "1"}, ErrorCode.INVALID_CONFIG),
        ("t", {"no.such.key": None}, ErrorCode.INVALID_CONFIG),
        ("t", {"retention.ms": "5", "cleanup.policy": "x"}, ErrorCode.INVALID_CONFIG),
    ],
)
@pytest.mark.parametrize("incremental", [True, False])
async def test_alter_configs_errors_change_nothing(
    topic: str, changes: dict[str, str | None], code: int, incremental: bool
) -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t", configs={"retention.ms": "1"}))
    before = len(c.log.entries)
    got, message = await c.run(c.controller.alter_topic_configs(topic, changes, incremental, False))
    assert got == code and message
    assert len(c.log.entries) == before
    assert c.image.topic_config("t") == {"retention.ms": "1"}


async def test_alter_configs_validate_only_commits_nothing() -> None:
    c = await cluster()
    await c.create_one(TopicSpec("t"))
    before = len(c.log.entries)
    command = c.controller.alter_topic_configs("t", {"retention.ms": "9"}, True, True)
    assert await c.run(command) == (0, None)
    assert len(c.log.entries) == before and c.image.topic_config("t") == {}


# --------------------------------------------------------------------------- producer ids


async def test_producer_id_blocks_never_overlap() -> None:
    c = await cluster()
    blocks = []
    for broker_id in (1, 2, 1, 3, 2):
        blocks.append(await c.run(c.controller.allocate_producer_ids(broker_id, 0)))
    assert blocks == [(i * PRODUCER_ID_BLOCK, PRODUCER_ID_BLOCK) for i in range(5)]
    assert c.image.next_producer_id == 5 * PRODUCER_ID_BLOCK
    assert c.log.replay().next_producer_id == 5 * PRODUCER_ID_BLOCK


def test_producer_ids_never_go_backwards_in_the_image() -> None:
    image = MetadataImage()
    image.apply(m.ProducerIdsRecord(broker_id=1, broker_epoch=0, next_producer_id=5000))
    image.apply(m.ProducerIdsRecord(broker_id=2, broker_epoch=0, next_producer_id=1000))
    assert image.next_producer_id == 5000


# --------------------------------------------------------------------------- brokers


async def test_broker_registration_epochs_and_fencing() -> None:
    c = Cluster(brokers=0)
    epoch = await c.run(c.controller.register_broker(1, uuid.UUID(int=1), [], "r1", True))
    assert epoch == 0  # the offset of its registration record
    broker = c.image.brokers[1]
    assert (broker.epoch, broker.fenced, broker.rack) == (0, True, "r1")
    assert c.image.unfenced_brokers() == []
    await c.run(c.controller.unfence_broker(1, epoch))
    assert c.image.unfenced_brokers() == [1]
    # Unfencing again, or with a stale epoch, writes nothing.
    before = len(c.log.entries)
    await c.run(c.controller.unfence_broker(1, epoch))
    await c.run(c.controller.unfence_broker(1, epoch + 7))
    assert len(c.log.entries) == before
    # A restart registers again: a larger epoch, fenced until it catches up.
    endpoints = [("PLAINTEXT", "new-host", 9093)]
    again = await c.run(c.controller.register_broker(1, uuid.UUID(int=2), endpoints, None, True))
    assert again > epoch and again >= before
    broker = c.image.brokers[1]
    assert (broker.epoch, broker.fenced, broker.incarnation_id) == (again, True, uuid.UUID(int=2))
    assert broker.endpoints == {"PLAINTEXT": ("new-host", 9093)}
    await c.run(c.controller.unfence_broker(1, epoch))  # the old incarnation's epoch
    assert c.image.brokers[1].fenced
    await c.run(c.controller.unfence_broker(1, again))
    assert not c.image.brokers[1].fenced
    assert_replay_matches(c)


async def test_registration_epochs_increase_across_brokers() -> None:
    c = Cluster(brokers=0)
    epochs = []
    for broker_id in (1, 2, 1, 3, 1):
        epochs.append(await c.add_broker(broker_id))
    assert epochs == sorted(set(epochs))
    assert c.image.brokers[1].epoch == epochs[-1]


async def fence(c: Cluster, broker_id: int, unclean_shutdown: bool = False) -> None:
    """What the controller service commits when a broker's session expires (or, with
    `unclean_shutdown`, when it registers again after one)."""

    def command(image: MetadataImage) -> Result[None]:
        broker = image.brokers[broker_id]
        records: list[Message] = [m.FenceBrokerRecord(id=broker_id, epoch=broker.epoch)]
        records += remove_broker(
            image,
            broker_id,
            c.controller.unclean_for(image),
            usable_brokers(image),
            c.controller.min_isr_for(image),
            unclean_shutdown=unclean_shutdown,
        )
        return Result(records, None)

    await c.run(command)


async def test_unfencing_gives_leaderless_partitions_a_leader() -> None:
    c = await cluster(brokers=2)
    created = await c.create_one(TopicSpec("t", assignments={0: [1, 2], 1: [2, 1]}))
    # Both lose leadership while usable (raw records); broker 1 stays in partition 0's ISR.
    c.image.apply(m.PartitionChangeRecord(topic_id=created.topic_id, partition_id=0, leader=-1))
    c.image.apply(
        m.PartitionChangeRecord(topic_id=created.topic_id, partition_id=1, leader=-1, isr=[2])
    )
    await c.add_broker(1)
    partitions = c.image.topics["t"].partitions
    assert (partitions[0].leader, partitions[0].leader_epoch) == (1, 2)
    # One election path for every leaderless partition, not only those with broker 1 in
    # the ISR: broker 2 is usable and in partition 1's ISR, so it leads.
    assert (partitions[1].leader, partitions[1].leader_epoch) == (2, 2)


async def test_unfencing_elects_an_eligible_leader_replica() -> None:
    """The last ISR member, fenced, is only in the ELR; unfenced (single node or cluster:
    the same `unfence_broker`), it leads again and is the ISR."""
    c = await cluster(brokers=2)
    await c.create_one(TopicSpec("t", assignments={0: [1, 2]}))
    await fence(c, 2)
    await fence(c, 1)
    state = c.image.partition("t", 0)
    assert state is not None
    assert (state.leader, state.isr, state.eligible_leader_replicas) == (-1, [], [1])
    await c.add_broker(2)
    assert state.leader == -1  # 2 left the ISR while it was still at min ISR
    await c.add_broker(1)
    assert (state.leader, state.isr, state.eligible_leader_replicas) == (1, [1], [])
    assert (state.leader_epoch, state.leader_recovery_state) == (2, 0)
    assert_replay_matches(c)


async def test_enabling_unclean_election_elects_leaderless_partitions_now() -> None:
    c = await cluster(brokers=3)
    await c.create_one(TopicSpec("t", assignments={0: [1, 2, 3]}))
    await fence(c, 2)
    await fence(c, 3)
    await fence(c, 1, unclean_shutdown=True)  # gone with its data: nobody is eligible
    await c.add_broker(2)
    await c.add_broker(3)
    state = c.image.partition("t", 0)
    assert state is not None
    assert (state.leader, state.isr, state.eligible_leader_replicas) == (-1, [], [])
    before = len(c.log.entries)
    alter = c.controller.alter_topic_configs
    await c.run(alter("t", {"unclean.leader.election.enable": "true"}, True, True))
    await c.run(alter("t", {"retention.ms": "1000"}, True, False))
    assert state.leader == -1 and len(c.log.entries) == before + 1  # validate-only: nothing
    assert unclean_elections(c) == 0
    await c.run(alter("t", {"unclean.leader.election.enable": "true"}, True, False))
    assert (state.leader, state.isr, state.leader_recovery_state) == (2, [2], 1)
    assert unclean_elections(c) == 1  # counted once committed (ControllerStats)
    registry = c.controller.metrics.registry
    assert registry.get_sample_value("kafka_server_raft_metrics_commit_latency_ms_count")
    assert_replay_matches(c)


def unclean_elections(c: Cluster) -> float | None:
    return c.controller.metrics.registry.get_sample_value(
        "kafka_controller_controllerstats_uncleanleaderelections_total"
    )


async def test_the_cluster_default_allows_unclean_election_on_unfencing() -> None:
    c = await cluster(brokers=2, defaults=ControllerDefaults(unclean_leader_election_enable=True))
    await c.create_one(TopicSpec("t", assignments={0: [1, 2]}))
    await fence(c, 2)
    await fence(c, 1, unclean_shutdown=True)
    state = c.image.partition("t", 0)
    assert state is not None and state.leader == -1  # 2 is fenced too
    await c.add_broker(2)
    assert (state.leader, state.isr, state.leader_recovery_state) == (2, [2], 1)
    # A topic override wins over the cluster default.
    await c.create_one(
        TopicSpec("u", assignments={0: [1, 2]}, configs={"unclean.leader.election.enable": "false"})
    )
    assert not c.controller.unclean_for(c.image)("u") and c.controller.unclean_for(c.image)("t")


async def test_changing_min_isr_clears_elrs_the_isr_now_satisfies() -> None:
    c = await cluster(brokers=3, defaults=ControllerDefaults(min_insync_replicas=3))
    await c.create_one(TopicSpec("t", assignments={0: [1, 2, 3]}))
    await fence(c, 3)
    state = c.image.partition("t", 0)
    assert state is not None
    assert (state.isr, state.eligible_leader_replicas) == ([1, 2], [3])
    alter = c.controller.alter_topic_configs
    await c.run(alter("t", {"min.insync.replicas": "3"}, True, False))  # the same value
    assert state.eligible_leader_replicas == [3]
    await c.run(alter("t", {"min.insync.replicas": "2"}, True, False))
    assert (state.isr, state.eligible_leader_replicas, state.leader) == ([1, 2], [], 1)
    assert state.leader_epoch == 0
    assert_replay_matches(c)


async def test_elect_leaders_preferred_and_unclean() -> None:
    c = await cluster(brokers=3)
    await c.create_one(TopicSpec("t", assignments={0: [1, 2], 1: [2, 3], 2: [3, 1]}))
    await fence(c, 1)  # partition 0 → leader 2; partition 2 → ISR [3]
    await c.add_broker(1)
    elect = c.controller.elect_leaders
    # 1 is back but not in partition 0's ISR yet.
    result = await c.run(elect(0, {"t": [0, 1, 7], "nope": [0]}))
    assert result == {
        "t": [
            (0, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, None),
            (1, ErrorCode.ELECTION_NOT_NEEDED, None),
            (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no partition t-7"),
        ],
        "nope": [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no partition nope-0")],
    }
    # 1 caught up: partition 0's leader adds it to the ISR (AlterPartition).
    topic_id = c.image.topics["t"].topic_id
    caught_up = m.PartitionChangeRecord(topic_id=topic_id, partition_id=0, isr=[2, 1])
    await c.run(lambda image: Result([caught_up], None))
    # Every partition: only those that needed an election are listed.
    assert await c.run(elect(0, None)) == {"t": [(0, 0, None)]}
    assert c.image.topics["t"].partitions[0].leader == 1
    # Unclean: only for leaderless partitions, and only with a usable replica.
    assert await c.run(elect(1, {"t": [1]})) == {"t": [(1, ErrorCode.ELECTION_NOT_NEEDED, None)]}
    await fence(c, 2)  # partition 1: ISR [3], still at min ISR: 2 is not eligible
    await fence(c, 3, unclean_shutdown=True)
    state = c.image.topics["t"].partitions[1]
    assert (state.leader, state.isr, state.eligible_leader_replicas) == (-1, [], [])
    assert state.last_known_elr == [3]
    assert await c.run(elect(1, {"t": [1]})) == {
        "t": [(1, ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE, None)]
    }
    await c.add_broker(2)  # back, but neither eligible nor the last leader
    assert state.leader == -1
    assert unclean_elections(c) == 0  # preferred elections are clean
    assert await c.run(elect(1, {"t": [1]})) == {"t": [(1, 0, None)]}
    assert (state.leader, state.isr, state.leader_recovery_state) == (2, [2], 1)
    assert unclean_elections(c) == 1
    assert await c.run(elect(5, {"t": [0]})) == {
        "t": [(0, ErrorCode.INVALID_REQUEST, "election type 5")]
    }
    assert_replay_matches(c)


def test_image_ignores_records_for_another_epoch() -> None:
    image = MetadataImage()
    image.apply(m.RegisterBrokerRecord(broker_id=1, broker_epoch=5, fenced=True))
    image.apply(m.UnfenceBrokerRecord(id=1, epoch=4))
    assert image.brokers[1].fenced
    image.apply(m.UnfenceBrokerRecord(id=1, epoch=5))
    assert not image.brokers[1].fenced
    image.apply(m.FenceBrokerRecord(id=1, epoch=6))
    assert not image.brokers[1].fenced
    image.apply(m.UnregisterBrokerRecord(broker_id=1, broker_epoch=4))
    assert 1 in image.brokers
    image.apply(m.UnregisterBrokerRecord(broker_id=1, broker_epoch=5))
    assert 1 not in image.brokers


def test_image_registration_change_is_tri_state() -> None:
    image = MetadataImage()
    image.apply(m.RegisterBrokerRecord(broker_id=1, broker_epoch=3, fenced=True))
    change = m.BrokerRegistrationChangeRecord
    image.apply(change(broker_id=1, broker_epoch=3, fenced=-1))
    assert not image.brokers[1].fenced
    image.apply(change(broker_id=1, broker_epoch=3, in_controlled_shutdown=1))
    assert not image.brokers[1].fenced and image.brokers[1].in_controlled_shutdown
    image.apply(change(broker_id=1, broker_epoch=3, fenced=1))
    assert image.brokers[1].fenced and image.brokers[1].in_controlled_shutdown
    image.apply(change(broker_id=1, broker_epoch=2, fenced=-1))  # stale epoch
    assert image.brokers[1].fenced


# --------------------------------------------------------------------------- the image


def _image_with_topic() -> tuple[MetadataImage, uuid.UUID]:
    image = MetadataImage()
    topic_id = uuid.UUID(int=42)
    image.apply(m.TopicRecord(name="t", topic_id=topic_id), 0)
    image.apply(
        m.PartitionRecord(
            partition_id=0,
            topic_id=topic_id,
            replicas=[1, 2, 3],
            isr=[1, 2, 3],
            leader=1,
            leader_epoch=0,
            partition_epoch=0,
        ),
        1,
    )
    return image, topic_id


def test_partition_change_bumps_epochs() -> None:
    image, topic_id = _image_with_topic()
    image.apply(m.PartitionChangeRecord(topic_id=topic_id, partition_id=0, isr=[1, 2]), 2)
    state = image.partition("t", 0)
    assert state is not None
    assert (state.isr, state.leader, state.leader_epoch, state.partition_epoch) == (
        [1, 2],
        1,
        0,
        1,
    )
    image.apply(m.PartitionChangeRecord(topic_id=topic_id, partition_id=0, leader=2), 3)
    assert (state.leader, state.leader_epoch, state.partition_epoch) == (2, 1, 2)
    assert state.replicas == [1, 2, 3] and state.isr == [1, 2]
    assert image.last_offset == 3


def test_records_for_unknown_topics_are_ignored() -> None:
    image, _ = _image_with_topic()
    before = image.copy()
    other = uuid.UUID(int=7)
    image.apply(m.PartitionRecord(partition_id=0, topic_id=other, replicas=[1], isr=[1]))
    image.apply(m.PartitionChangeRecord(topic_id=other, partition_id=0, leader=1))
    image.apply(m.RemoveTopicRecord(topic_id=other))
    assert vars(image) == vars(before)


def test_config_records_set_and_delete() -> None:
    image, _ = _image_with_topic()
    image.apply(
        m.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name="t", name="a", value="1")
    )
    image.apply(
        m.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name="t", name="b", value="2")
    )
    image.apply(
        m.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name="t", name="a", value=None)
    )
    assert image.topic_config("t") == {"b": "2"}
    image.apply(
        m.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name="t", name="b", value=None)
    )
    assert image.configs == {}


def test_copy_is_independent() -> None:
    image, topic_id = _image_with_topic()
    snapshot = image.copy()
    image.apply(m.PartitionChangeRecord(topic_id=topic_id, partition_id=0, isr=[1]))
    image.apply(m.FeatureLevelRecord(name="metadata.version", feature_level=20))
    state = snapshot.partition("t", 0)
    assert state is not None and state.isr == [1, 2, 3]
    assert snapshot.features == {} and image.features == {"metadata.version": 20}


# --------------------------------------------------------------------------- determinism


async def scripted(seed: int) -> Cluster:
    """A run touching every command, the same for a given seed."""
    c = await cluster(brokers=4, seed=seed, racks={1: "a", 2: "b", 3: "a", 4: "b"})
    await c.create(
        TopicSpec("orders", num_partitions=6, replication_factor=3, configs={"retention.ms": "9"}),
        TopicSpec("events", assignments={0: [4, 3], 1: [3, 2]}),
        TopicSpec("bad name"),
    )
    await c.create(TopicSpec("validated", num_partitions=3), validate_only=True)
    await c.run(c.controller.create_partitions("orders", 9, None, False))
    await c.run(
        c.controller.alter_topic_configs("orders", {"cleanup.policy": "compact"}, True, False)
    )
    await c.run(c.controller.alter_topic_configs("events", {"retention.ms": "1"}, False, False))
    await c.run(c.controller.allocate_producer_ids(2, 0))
    await c.create(TopicSpec("gone", num_partitions=2))
    await c.run(c.controller.delete_topics(["gone"], []))
    await c.add_broker(3)  # a restart: re-registered, unfenced
    await c.run(c.controller.register_broker(5, uuid.UUID(int=5), [], "c", True))  # stays fenced
    return c


async def test_replaying_the_committed_records_rebuilds_the_same_image() -> None:
    c = await scripted(seed=11)
    replayed = c.log.replay()
    assert vars(replayed) == vars(c.image)
    assert set(replayed.topics) == {"orders", "events"}
    assert replayed.last_offset == len(c.log.entries) - 1


async def test_the_same_seed_gives_the_same_records() -> None:
    first, second = await scripted(seed=3), await scripted(seed=3)
    assert first.log.entries == second.log.entries
    other = await scripted(seed=4)
    assert other.log.entries != first.log.entries  # topic ids and placement follow the seed


async def test_replay_in_batches_matches_replay_one_by_one() -> None:
    """A node restarting applies the whole log as one publication; a running node applied it
    batch by batch with listeners in between. Both must end in the same image."""
    c = await scripted(seed=5)
    image = MetadataImage()
    MetadataPublisher(image).publish(0, [decode_metadata_record(e) for e in c.log.entries])
    assert vars(image) == vars(c.image)
