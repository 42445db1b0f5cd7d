"""Metadata snapshots: `image_to_records` must rebuild the image it was taken from.

Images come from random command sequences run through the real controller and replication
rules (registration, fencing, controlled shutdown, topics, partitions, ISR changes, leader
elections, configs, producer ids), plus raw records for what no command makes yet (ELR
fields, unregistration, features). "Equal" is every attribute of the image: brokers with
epoch, incarnation, endpoints, rack, fenced and controlled-shutdown state; topics by name and
by id; per partition replicas, ISR, leader, leader epoch, partition epoch, ELR, last known
ELR and recovery state; configs; the next producer id; features; and the offset, which the
snapshot carries beside its records.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from kraft.controller.controller import Controller, ControllerDefaults, Result, TopicSpec
from kraft.controller.replication import (
    alter_partition,
    elect_leaderless,
    preferred_leader_changes,
    remove_broker,
    usable_brokers,
)
from kraft.metadata.image import BROKER_RESOURCE, MetadataImage
from kraft.metadata.publisher import MetadataPublisher
from kraft.metadata.snapshot import (
    SNAPSHOT_BATCH_RECORDS,
    decode_snapshot,
    encode_snapshot,
    image_from_records,
    image_to_records,
    replace_image,
)
from kraft.net.protocol import Message, decode_metadata_record, encode_metadata_record
from kraft.net.protocol import _generated as m


class ListLog:
    """A MetadataLog in memory: records are encoded and decoded as the real logs do."""

    def __init__(self, publisher: MetadataPublisher) -> None:
        self.publisher = publisher
        self.next_offset = 0

    async def append(self, records: Sequence[Message]) -> int:
        decoded = [decode_metadata_record(encode_metadata_record(r)) for r in records]
        first = self.next_offset
        self.next_offset += len(decoded)
        self.publisher.publish(first, decoded)
        return self.next_offset - 1


def _records(records: list[Message]) -> Callable[[MetadataImage], Result[None]]:
    return lambda image: Result(records, None)


def _never_unclean(topic: str) -> bool:
    return False


async def random_image(seed: int, steps: int = 120) -> MetadataImage:
    rng = random.Random(seed)
    image = MetadataImage()
    controller = Controller(
        image, ListLog(MetadataPublisher(image)), ControllerDefaults(3, 2), rng=rng
    )
    unclean = {True: lambda t: True, False: _never_unclean}

    async def register(broker_id: int) -> None:
        rack = rng.choice([None, "a", "b"])
        endpoints = [("PLAINTEXT", f"host{broker_id}", 9000 + broker_id)]
        if rng.random() < 0.5:
            endpoints.append(("EXTERNAL", f"ext{broker_id}", 19000 + broker_id))
        epoch = await controller.run(
            controller.register_broker(
                broker_id, uuid.UUID(int=rng.getrandbits(128)), endpoints, rack, True
            )
        )
        if rng.random() < 0.8:
            await controller.run(controller.unfence_broker(broker_id, epoch))

    for broker_id in range(1, 5):
        await register(broker_id)

    def some_partition() -> tuple[uuid.UUID, int] | None:
        candidates = [(t.topic_id, index) for t in image.topics.values() for index in t.partitions]
        return rng.choice(candidates) if candidates else None

    async def step() -> None:
        action = rng.randrange(14)
        if action == 0:
            await register(rng.randrange(1, 7))
        elif action == 1:
            name = f"t{rng.randrange(12)}"
            configs = {"retention.ms": str(rng.randrange(1, 10**6))} if rng.random() < 0.3 else {}
            spec = TopicSpec(
                name,
                num_partitions=rng.randrange(1, 5),
                replication_factor=rng.randrange(1, 4),
                configs=configs,
            )
            await controller.run(controller.create_topics([spec], False))
        elif action == 2 and image.topics:
            name = rng.choice(sorted(image.topics))
            await controller.run(controller.delete_topics([name], []))
        elif action == 3 and image.topics:
            name = rng.choice(sorted(image.topics))
            count = len(image.topics[name].partitions) + rng.randrange(1, 3)
            await controller.run(controller.create_partitions(name, count, None, False))
        elif action == 4 and image.topics:
            name = rng.choice(sorted(image.topics))
            changes: dict[str, str | None] = {
                "cleanup.policy": rng.choice(["compact", "delete", None]),
                "min.insync.replicas": rng.choice(["1", "2", None]),
            }
            await controller.run(controller.alter_topic_configs(name, changes, True, False))
        elif action == 5 and image.brokers:
            broker_id = rng.choice(sorted(image.brokers))
            epoch = image.brokers[broker_id].epoch
            await controller.run(controller.allocate_producer_ids(broker_id, epoch))
        elif action == 6 and image.brokers:
            # Fencing (session expiry): leaderships move, ISRs shrink.
            broker_id = rng.choice(sorted(image.brokers))
            broker = image.brokers[broker_id]
            records: list[Message] = [m.FenceBrokerRecord(id=broker_id, epoch=broker.epoch)]
            records += remove_broker(
                image, broker_id, unclean[rng.random() < 0.3], usable_brokers(image)
            )
            await controller.run(_records(records))
        elif action == 7 and image.brokers:
            # Unfencing: leaderless partitions get leaders again.
            broker_id = rng.choice(sorted(image.brokers))
            broker = image.brokers[broker_id]
            if broker.fenced:
                records = [m.UnfenceBrokerRecord(id=broker_id, epoch=broker.epoch)]
                usable = usable_brokers(image) | {broker_id}
                records += elect_leaderless(image, usable, unclean[rng.random() < 0.3])
                await controller.run(_records(records))
        elif action == 8 and image.brokers:
            # Controlled shutdown.
            broker_id = rng.choice(sorted(image.brokers))
            epoch = image.brokers[broker_id].epoch
            records = [
                m.BrokerRegistrationChangeRecord(
                    broker_id=broker_id, broker_epoch=epoch, in_controlled_shutdown=1
                )
            ]
            records += remove_broker(image, broker_id, _never_unclean, usable_brokers(image))
            await controller.run(_records(records))
        elif action == 9:
            found = some_partition()
            if found is not None:
                # An ISR change by the leader (AlterPartition), checked like the real one.
                topic_id, index = found
                state = image.topics_by_id[topic_id].partitions[index]
                isr = [r for r in state.replicas if r == state.leader or rng.random() < 0.6]
                result = alter_partition(
                    image,
                    state.leader,
                    topic_id,
                    index,
                    state.leader_epoch,
                    state.partition_epoch,
                    isr,
                    state.leader_recovery_state,
                )
                if result.record is not None:
                    await controller.run(_records([result.record]))
        elif action == 10:
            await controller.run(_records(preferred_leader_changes(image, usable_brokers(image))))
        elif action == 11:
            found = some_partition()
            if found is not None:
                # ELR fields, leader and replicas changed directly (the ELR rules are not
                # the point here: that every field survives a snapshot is).
                topic_id, index = found
                state = image.topics_by_id[topic_id].partitions[index]
                sample = sorted(rng.sample(state.replicas, rng.randrange(len(state.replicas) + 1)))
                await controller.run(
                    _records(
                        [
                            m.PartitionChangeRecord(
                                topic_id=topic_id,
                                partition_id=index,
                                eligible_leader_replicas=rng.choice([None, sample, []]),
                                last_known_elr=rng.choice([None, sample[:1], []]),
                                leader=rng.choice([-2, -1, *state.replicas]),
                                leader_recovery_state=rng.choice([-1, 0, 1]),
                            )
                        ]
                    )
                )
        elif action == 12 and len(image.brokers) > 3:
            broker_id = rng.choice(sorted(image.brokers))
            epoch = image.brokers[broker_id].epoch
            await controller.run(
                _records([m.UnregisterBrokerRecord(broker_id=broker_id, broker_epoch=epoch)])
            )
        elif action == 13:
            feature = rng.choice(["metadata.version", "kraft.version", "group.version"])
            broker_config = m.ConfigRecord(
                resource_type=BROKER_RESOURCE,
                resource_name=rng.choice(["", "1"]),
                name="log.retention.ms",
                value=rng.choice([None, "1000"]),
            )
            await controller.run(
                _records(
                    [
                        m.FeatureLevelRecord(name=feature, feature_level=rng.randrange(1, 25)),
                        broker_config,
                    ]
                )
            )

    for _ in range(steps):
        await step()
    return image


def assert_same_image(rebuilt: MetadataImage, original: MetadataImage) -> None:
    assert rebuilt.brokers == original.brokers
    assert rebuilt.topics == original.topics
    assert rebuilt.topics_by_id == original.topics_by_id
    for name, topic in rebuilt.topics.items():
        assert rebuilt.topics_by_id[topic.topic_id] is topic, name  # one object, two indexes
    assert rebuilt.configs == original.configs
    assert rebuilt.next_producer_id == original.next_producer_id
    assert rebuilt.features == original.features
    assert rebuilt.last_offset == original.last_offset
    assert vars(rebuilt).keys() == vars(original).keys()  # nothing added to the image is missed
    assert vars(rebuilt) == vars(original)


@pytest.mark.parametrize("seed", range(40))
async def test_a_snapshot_rebuilds_the_image_it_was_taken_from(seed: int) -> None:
    image = await random_image(seed)
    assert image.topics or image.brokers
    records = image_to_records(image)
    # Through the wire format, as a broker or a restarting controller gets them.
    decoded = decode_snapshot(encode_snapshot(records))
    rebuilt = image_from_records(decoded, image.last_offset)
    assert_same_image(rebuilt, image)
    # A snapshot of the rebuilt image is the same snapshot.
    assert image_to_records(rebuilt) == records


async def test_random_images_exercise_every_field() -> None:
    """The generator reaches the states the equality has to cover."""
    seen: dict[str, bool] = {}
    for seed in range(40):
        image = await random_image(seed)
        parts = [p for t in image.topics.values() for p in t.partitions.values()]
        seen["fenced broker"] = seen.get("fenced broker", False) or any(
            b.fenced for b in image.brokers.values()
        )
        seen["shutting down"] = seen.get("shutting down", False) or any(
            b.in_controlled_shutdown for b in image.brokers.values()
        )
        seen["leader epoch"] = seen.get("leader epoch", False) or any(
            p.leader_epoch > 0 for p in parts
        )
        seen["partition epoch > leader epoch"] = seen.get(
            "partition epoch > leader epoch", False
        ) or any(p.partition_epoch > p.leader_epoch for p in parts)
        seen["elr"] = seen.get("elr", False) or any(p.eligible_leader_replicas for p in parts)
        seen["last known elr"] = seen.get("last known elr", False) or any(
            p.last_known_elr for p in parts
        )
        seen["no leader"] = seen.get("no leader", False) or any(p.leader == -1 for p in parts)
        seen["recovering"] = seen.get("recovering", False) or any(
            p.leader_recovery_state == 1 for p in parts
        )
        seen["producer ids"] = seen.get("producer ids", False) or image.next_producer_id > 0
        seen["features"] = seen.get("features", False) or bool(image.features)
        seen["topic config"] = seen.get("topic config", False) or any(
            key[0] == 2 for key in image.configs
        )
        seen["broker config"] = seen.get("broker config", False) or any(
            key[0] == BROKER_RESOURCE for key in image.configs
        )
    assert all(seen.values()), seen


def test_the_empty_image_has_an_empty_snapshot() -> None:
    assert image_to_records(MetadataImage()) == []
    assert encode_snapshot([]) == b""
    assert vars(image_from_records([], -1)) == vars(MetadataImage())


async def test_large_snapshots_are_split_into_batches() -> None:
    image = MetadataImage()
    topic_id = uuid.UUID(int=42)
    image.apply(m.TopicRecord(name="big", topic_id=topic_id))
    for index in range(SNAPSHOT_BATCH_RECORDS + 10):
        image.apply(
            m.PartitionRecord(
                partition_id=index, topic_id=topic_id, replicas=[1], isr=[1], leader=1
            )
        )
    data = encode_snapshot(image_to_records(image))
    rebuilt = image_from_records(decode_snapshot(data), 7)
    image.last_offset = 7
    assert_same_image(rebuilt, image)
    with pytest.raises(ValueError, match="partial batch"):
        decode_snapshot(data[:-1])


async def test_replace_image_keeps_the_object_and_takes_the_state() -> None:
    original = await random_image(3, steps=30)
    target = await random_image(4, steps=30)
    held: Any = target
    replace_image(target, image_from_records(image_to_records(original), original.last_offset))
    assert held is target
    assert_same_image(target, original)
