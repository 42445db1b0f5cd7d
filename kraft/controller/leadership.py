"""Operator-driven leadership (kraft's own; Kafka's ElectLeaders has only PREFERRED and
UNCLEAN): moving one partition's leadership to a named replica, and a broker's maintenance
mode in Redpanda's sense.

**Maintenance** is a state of its own, not controlled shutdown. A broker in controlled
shutdown leaves every ISR and stops; a broker in maintenance keeps running, stays in its ISRs
as a follower, and hands its leaderships to other replicas (see `replication`'s module
docstring for how elections treat it). It is stored in the metadata log as the broker's
dynamic config `kraft.maintenance.mode=true` (a ConfigRecord of the BROKER resource), so it
survives a controller failover and the broker's own restarts, until taken out. Taking it out
moves nothing back by itself: the next preferred-leader election (on demand or periodic)
does. A broker in maintenance can still shut down for real: that path is unchanged.

Both are commands in the controller's shape: they validate against the image and return
records plus a response, `(error code, message)`.
"""

from __future__ import annotations

from collections.abc import Callable

from kraft.controller.controller import Controller, Result
from kraft.controller.replication import (
    PartitionRef,
    drain_leaderships,
    transfer_leadership,
    usable_brokers,
)
from kraft.metadata.image import BROKER_RESOURCE, MAINTENANCE_KEY, MetadataImage
from kraft.net.protocol import ErrorCode, Message
from kraft.net.protocol import _generated as m

Outcome = tuple[int, str | None]


def transfer_leadership_command(
    controller: Controller, topic: str, index: int, replica: int
) -> Callable[[MetadataImage], Result[Outcome]]:
    """Make `replica` the leader of `topic`-`index` (one PartitionChangeRecord, a new
    leader epoch), if `replication.transfer_leadership` allows it."""

    def command(image: MetadataImage) -> Result[Outcome]:
        t = image.topics.get(topic)
        state = t.partitions.get(index) if t is not None else None
        if t is None or state is None:
            return Result(
                [], (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no partition {topic}-{index}")
            )
        ref = PartitionRef(topic, t.topic_id, index, state)
        code, message, record = transfer_leadership(
            image, ref, replica, usable_brokers(image), controller.min_isr_for(image)(topic)
        )
        return Result([record] if record is not None else [], (code, message))

    return command


def maintenance_command(
    controller: Controller, broker_id: int, enable: bool, validate_only: bool = False
) -> Callable[[MetadataImage], Result[Outcome]]:
    """Put a registered broker into maintenance (its leaderships move where another replica
    can lead; asked again, it moves any it took meanwhile) or take it out."""

    def command(image: MetadataImage) -> Result[Outcome]:
        if broker_id not in image.brokers:
            return Result(
                [],
                (ErrorCode.BROKER_ID_NOT_REGISTERED, f"broker {broker_id} is not registered"),
            )
        if validate_only:
            return Result([], (0, None))
        inside = broker_id in image.in_maintenance()
        records: list[Message] = []
        if enable != inside:
            records.append(
                m.ConfigRecord(
                    resource_type=BROKER_RESOURCE,
                    resource_name=str(broker_id),
                    name=MAINTENANCE_KEY,
                    value="true" if enable else None,
                )
            )
        if enable:
            records += drain_leaderships(
                image, broker_id, usable_brokers(image), controller.min_isr_for(image)
            )
        return Result(records, (0, None))

    return command
