"""A metadata snapshot: the image written back as the KRaft records that rebuild it.

`image_to_records(image)` is the state, not the history: one FeatureLevelRecord per feature,
one RegisterBrokerRecord per broker (fencing and controlled-shutdown state inside it), then per
topic a TopicRecord and a PartitionRecord per partition carrying the current replicas, ISR,
leader, leader epoch, partition epoch, ELR fields and recovery state (so no epoch is bumped on
load), then every ConfigRecord, then one ProducerIdsRecord. Applying them in order to a fresh
image yields an image equal to the original in everything but `last_offset`, which is the
snapshot's own offset and travels beside it (`image_from_records`).

Snapshot bytes (what FetchSnapshot carries and a snapshot file holds) are RecordBatch v2
batches of framed metadata records, as the metadata log's entries are; record offsets count
from 0 within the snapshot, at most `SNAPSHOT_BATCH_RECORDS` records per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from kraft.log.batch import iter_headers
from kraft.log.records import Record, build_batch, decode_records
from kraft.metadata.image import MetadataImage
from kraft.net.protocol import Message, decode_metadata_record, encode_metadata_record
from kraft.net.protocol import _generated as m

SNAPSHOT_BATCH_RECORDS = 1000


def image_to_records(image: MetadataImage) -> list[Message]:
    """The records that rebuild `image` when applied, in order, to a fresh image."""
    out: list[Message] = [
        m.FeatureLevelRecord(name=name, feature_level=level)
        for name, level in image.features.items()
    ]
    for broker in image.brokers.values():
        out.append(
            m.RegisterBrokerRecord(
                broker_id=broker.broker_id,
                incarnation_id=broker.incarnation_id,
                broker_epoch=broker.epoch,
                end_points=[
                    m.RegisterBrokerRecord.BrokerEndpoint(name=name, host=host, port=port)
                    for name, (host, port) in broker.endpoints.items()
                ],
                rack=broker.rack,
                fenced=broker.fenced,
                in_controlled_shutdown=broker.in_controlled_shutdown,
            )
        )
    for topic in image.topics_by_id.values():
        out.append(m.TopicRecord(name=topic.name, topic_id=topic.topic_id))
        for index, state in topic.partitions.items():
            out.append(
                m.PartitionRecord(
                    partition_id=index,
                    topic_id=topic.topic_id,
                    replicas=list(state.replicas),
                    isr=list(state.isr),
                    leader=state.leader,
                    leader_recovery_state=state.leader_recovery_state,
                    leader_epoch=state.leader_epoch,
                    partition_epoch=state.partition_epoch,
                    eligible_leader_replicas=list(state.eligible_leader_replicas) or None,
                    last_known_elr=list(state.last_known_elr) or None,
                )
            )
    for (resource_type, resource_name), entries in image.configs.items():
        for name, value in entries.items():
            out.append(
                m.ConfigRecord(
                    resource_type=resource_type,
                    resource_name=resource_name,
                    name=name,
                    value=value,
                )
            )
    out.extend(image.scram_credentials.values())
    if image.next_producer_id:
        out.append(
            m.ProducerIdsRecord(
                broker_id=-1, broker_epoch=-1, next_producer_id=image.next_producer_id
            )
        )
    return out


def image_from_records(records: Sequence[Message], offset: int) -> MetadataImage:
    """A fresh image with `records` (a snapshot) applied, standing at metadata `offset`."""
    image = MetadataImage()
    for record in records:
        image.apply(record)
    image.last_offset = offset
    return image


def replace_image(target: MetadataImage, source: MetadataImage) -> None:
    """Make `target` hold `source`'s state, in place: the broker, controller and publisher
    keep references to one image object, so a loaded snapshot replaces its contents."""
    vars(target).clear()
    vars(target).update(vars(source))


def encode_snapshot(records: Sequence[Message]) -> bytes:
    """Snapshot bytes: record batches of framed records (see the module comment)."""
    out = bytearray()
    for start in range(0, len(records), SNAPSHOT_BATCH_RECORDS):
        chunk = records[start : start + SNAPSHOT_BATCH_RECORDS]
        out += build_batch(
            [Record(i, 0, None, encode_metadata_record(r)) for i, r in enumerate(chunk)],
            base_offset=start,
            base_timestamp=0,
        )
    return bytes(out)


def decode_snapshot(data: bytes | bytearray | memoryview) -> list[Message]:
    """The records of snapshot bytes; ValueError if they do not end on a whole batch."""
    out: list[Message] = []
    end = 0
    for pos, header in iter_headers(data):
        batch = data[pos : pos + header.size]
        out += [
            decode_metadata_record(r.value) for r in decode_records(batch) if r.value is not None
        ]
        end = pos + header.size
    if end != len(data):
        raise ValueError(f"snapshot of {len(data)} bytes has a partial batch at byte {end}")
    return out
