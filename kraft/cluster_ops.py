"""Façade operations over the Kafka protocol that go beyond one request: the latest records
of a partition (ListOffsets + Fetch to its leader, decoded with kraft.log's batch reader),
resetting a group's committed offsets (targets from ListOffsets, then OffsetCommit through
the group's coordinator, which refuses while the group has members), and the leadership
writes Kafka's ElectLeaders cannot express, sent to the active controller like every write:
a named replica as leader (kraft's TransferLeadership) and a broker's maintenance mode
(IncrementalAlterConfigs of the broker's `kraft.maintenance.mode`)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from kraft.cluster_groups import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, ClusterGroups, error_name
from kraft.log.batch import parse_header
from kraft.log.errors import LogError
from kraft.log.records import Record, decode_absolute
from kraft.metadata.image import BROKER_RESOURCE, MAINTENANCE_KEY, MetadataImage
from kraft.net.protocol import (
    FetchRequest,
    FetchResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    Message,
    ProtocolError,
    TransferLeadershipRequest,
    TransferLeadershipResponse,
)
from kraft.node_views import WriteResult

FETCH_VERSION = 11  # topic names (not ids), every kraft broker and Kafka 3.x/4.x serve it
FETCH_MAX_BYTES = 1 << 20
MAX_FETCHES = 64  # a bound on round trips for one read; records bigger than that stop it
BATCH_HEADER = 61
ResetTo = Literal["earliest", "latest", "timestamp", "offset"]
WRITE_TIMEOUT_MS = 30_000
SET, DELETE = 0, 1  # IncrementalAlterConfigs operations
# Sends a request to the active controller (through this node's broker): its answer.
Forward = Callable[[Message, int], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class HeaderView:
    key: str
    value: str | None
    value_encoding: str  # "utf-8", or "base64" when the bytes are not valid UTF-8


@dataclass(frozen=True, slots=True)
class RecordView:
    offset: int
    timestamp: int
    key: str | None
    key_encoding: str
    value: str | None
    value_encoding: str
    headers: list[HeaderView]


@dataclass(frozen=True, slots=True)
class PartitionRecords:
    topic: str
    partition: int
    leader: int
    log_start_offset: int
    high_watermark: int
    records: list[RecordView] = field(default_factory=list)
    error: str | None = None  # Kafka's error name when the leader could not be read


@dataclass(frozen=True, slots=True)
class OffsetReset:
    topic: str
    partition: int
    offset: int  # the new committed offset (-1: no target found)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class GroupOffsetsReset:
    group_id: str
    offsets: list[OffsetReset]

    @property
    def error(self) -> str | None:
        return next((o.error for o in self.offsets if o.error), None)


def show_bytes(data: bytes | None) -> tuple[str | None, str]:
    """Bytes as text when they are valid UTF-8, else base64 (with which one it is)."""
    if data is None:
        return None, "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _split_batches(data: bytes) -> list[bytes]:
    """The whole batches in a Fetch answer's records (a partial last one is left out)."""
    out, pos = [], 0
    while pos + BATCH_HEADER <= len(data):
        size = parse_header(data, pos).size
        if size <= 0 or pos + size > len(data):
            break
        out.append(data[pos : pos + size])
        pos += size
    return out


async def latest_records(
    groups: ClusterGroups, image: MetadataImage | None, topic: str, partition: int, limit: int
) -> PartitionRecords | None:
    """Up to `limit` records before the high watermark (None: no such partition)."""
    state = image.partition(topic, partition) if image is not None else None
    if state is None:
        return None
    leader = state.leader
    if leader < 0:
        return PartitionRecords(topic, partition, leader, -1, -1, error="LEADER_NOT_AVAILABLE")
    tp = (topic, partition)
    start = (await groups.list_offsets([tp], EARLIEST_TIMESTAMP)).get(tp)
    end = (await groups.list_offsets([tp], LATEST_TIMESTAMP)).get(tp)
    if start is None or end is None:
        return PartitionRecords(topic, partition, leader, -1, -1, error="LEADER_NOT_AVAILABLE")
    first = max(start, end - limit)
    records: list[RecordView] = []
    position = first
    for _ in range(MAX_FETCHES):
        if position >= end:
            break
        answer = await groups.ask_at(leader, _fetch(topic, partition, position), FETCH_VERSION)
        if not isinstance(answer, FetchResponse):
            return PartitionRecords(topic, partition, leader, start, end, records, str(answer))
        data = answer.responses[0].partitions[0] if answer.responses else None
        if data is None or data.error_code:
            code = data.error_code if data is not None else answer.error_code
            error = error_name(code) or "UNKNOWN_SERVER_ERROR"
            return PartitionRecords(topic, partition, leader, start, end, records, error)
        before = position
        try:
            batches = _split_batches(bytes(data.records or b""))
            for batch in batches:
                for r in decode_absolute(batch):
                    if position <= r.offset < end:
                        records.append(_view(r.offset, r.timestamp, r.record))
                position = max(position, parse_header(batch).last_offset + 1)
        except (LogError, ProtocolError, ValueError) as e:
            return PartitionRecords(topic, partition, leader, start, end, records, str(e))
        if position == before:
            break  # nothing more below the high watermark
    return PartitionRecords(topic, partition, leader, start, end, records[-limit:])


def _fetch(topic: str, partition: int, offset: int) -> FetchRequest:
    return FetchRequest(
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=FETCH_MAX_BYTES,
        isolation_level=0,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=partition,
                        fetch_offset=offset,
                        partition_max_bytes=FETCH_MAX_BYTES,
                    )
                ],
            )
        ],
    )


def _view(offset: int, timestamp: int, record: Record) -> RecordView:
    key, key_encoding = show_bytes(record.key)
    value, value_encoding = show_bytes(record.value)
    headers = []
    for name, raw in record.headers:
        shown, encoding = show_bytes(raw)
        headers.append(HeaderView(name, shown, encoding))
    return RecordView(offset, timestamp, key, key_encoding, value, value_encoding, headers)


async def reset_offsets(
    groups: ClusterGroups,
    image: MetadataImage | None,
    group_id: str,
    to: ResetTo,
    topic: str | None = None,
    partitions: list[int] | None = None,
    timestamp: int | None = None,
    offset: int | None = None,
) -> GroupOffsetsReset | None:
    """Reset the committed offsets of an empty group, as kafka-consumer-groups.sh
    --reset-offsets does: of `topic` (its `partitions`, or all) or else of every partition
    the group has committed. An explicit offset is clamped into [log start, log end].
    None: unknown group (nothing to reset and no topic named)."""
    targets: list[tuple[str, int]]
    if topic is not None:
        state = image.topics.get(topic) if image is not None else None
        if state is None:
            return GroupOffsetsReset(
                group_id, [OffsetReset(topic, -1, -1, "UNKNOWN_TOPIC_OR_PARTITION")]
            )
        wanted = sorted(state.partitions) if partitions is None else sorted(set(partitions))
        missing = [p for p in wanted if p not in state.partitions]
        if missing:
            return GroupOffsetsReset(
                group_id, [OffsetReset(topic, p, -1, "UNKNOWN_TOPIC_OR_PARTITION") for p in missing]
            )
        targets = [(topic, p) for p in wanted]
    else:
        detail = await groups.describe_group(group_id)
        if detail is None:
            return None
        if detail.error is not None:
            return GroupOffsetsReset(group_id, [OffsetReset("", -1, -1, detail.error)])
        targets = [(o.topic, o.partition) for o in detail.offsets]
    if to == "earliest":
        found = await groups.list_offsets(targets, EARLIEST_TIMESTAMP)
    elif to == "latest":
        found = await groups.list_offsets(targets, LATEST_TIMESTAMP)
    elif to == "timestamp":
        found = await groups.list_offsets(targets, timestamp if timestamp is not None else 0)
        # No record at or after the timestamp: the end, as Kafka's tool does.
        ends = await groups.list_offsets(targets, LATEST_TIMESTAMP)
        found = {tp: (o if o >= 0 else ends.get(tp, -1)) for tp, o in found.items()}
    else:
        starts = await groups.list_offsets(targets, EARLIEST_TIMESTAMP)
        ends = await groups.list_offsets(targets, LATEST_TIMESTAMP)
        wanted_offset = offset if offset is not None else 0
        found = {
            tp: min(max(wanted_offset, starts[tp]), ends[tp])
            for tp in targets
            if tp in starts and tp in ends
        }
    unknown = [
        OffsetReset(t, p, -1, "LEADER_NOT_AVAILABLE") for t, p in targets if (t, p) not in found
    ]
    if unknown:
        return GroupOffsetsReset(group_id, unknown)
    errors = await groups.alter_offsets(group_id, found) if found else {}
    return GroupOffsetsReset(
        group_id,
        [OffsetReset(t, p, found[(t, p)], errors.get((t, p))) for t, p in sorted(found)],
    )


async def transfer_leadership(
    forward: Forward, topic: str, partition: int, replica: int
) -> WriteResult:
    request = TransferLeadershipRequest(
        topic_name=topic, partition_index=partition, leader_id=replica, timeout_ms=WRITE_TIMEOUT_MS
    )
    response = await forward(request, 0)
    assert isinstance(response, TransferLeadershipResponse)
    code = response.error_code
    return WriteResult(
        f"{topic}-{partition}", error_name(code), response.error_message if code else None
    )


async def set_maintenance(forward: Forward, broker_id: int, enable: bool) -> WriteResult:
    Config = IncrementalAlterConfigsRequest.AlterableConfig
    change = (
        Config(name=MAINTENANCE_KEY, config_operation=SET, value="true")
        if enable
        else Config(name=MAINTENANCE_KEY, config_operation=DELETE, value=None)
    )
    request = IncrementalAlterConfigsRequest(
        resources=[
            IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=BROKER_RESOURCE, resource_name=str(broker_id), configs=[change]
            )
        ],
        validate_only=False,
    )
    response = await forward(request, 1)
    assert isinstance(response, IncrementalAlterConfigsResponse)
    r = response.responses[0]
    code = r.error_code
    return WriteResult(str(broker_id), error_name(code), r.error_message if code else None)
