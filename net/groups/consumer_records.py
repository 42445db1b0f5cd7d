"""The KIP-848 consumer group records of `__consumer_offsets`: Kafka's schemas, byte for byte.

As for classic groups (records.py), a key starts with an int16 that says what the record is
(Kafka calls it the key version; for these records it is the record type), followed by the
key's fields in the non-flexible encoding (string = int16 length + UTF-8). A value starts with
an int16 version (0 for all of these) followed by the fields in the *flexible* encoding:

    compact string   uvarint(length + 1) + UTF-8; 0 = null
    compact array    uvarint(count + 1) + elements; 0 = null
    uuid             16 bytes
    tagged fields    uvarint(count) + per field: uvarint(tag), uvarint(size), bytes

Every struct, the value itself and each array element of struct type, ends with its own
tagged fields. None are written here; those read are skipped (Kafka adds newer fields as
tags: the metadata hash of 4.1, assignment epochs of KIP-1251...).

Type  Key fields           Value (version 0)
 3    group                ConsumerGroupMetadataValue: epoch int32
 4    group                ConsumerGroupPartitionMetadataValue: epoch int32, topics
                             [topic_id uuid, topic_name string, num_partitions int32,
                              partition_racks [partition int32, racks [string]]]
 5    group, member_id     ConsumerGroupMemberMetadataValue: instance_id string?, rack_id
                             string?, client_id string, client_host string,
                             subscribed_topic_names [string], subscribed_topic_regex string?,
                             rebalance_timeout_ms int32, server_assignor string?
 6    group                ConsumerGroupTargetAssignmentMetadataValue: assignment_epoch int32
 7    group, member_id     ConsumerGroupTargetAssignmentMemberValue: topic_partitions
                             [topic_id uuid, partitions [int32]]
 8    group, member_id     ConsumerGroupCurrentMemberAssignmentValue: member_epoch int32,
                             previous_member_epoch int32, state int8, assigned_partitions
                             [topic_id uuid, partitions [int32]], partitions_pending_revocation
                             (same)

(`?` = nullable.) A null value is a tombstone. The layouts follow Kafka's JSON schemas
(group-coordinator/src/main/resources/common/message, ConsumerGroup*Key/Value) as far as we
found them; they have not been checked against a log written by Kafka. Those schemas changed
during KIP-848's development: the partition metadata record here is the one Kafka 4.1
replaced by a hash in the group metadata record, and its epoch field is in some versions of
the schema only. The regular expression records of Kafka 4.0 (type 16) are not written:
regexes are resolved against the metadata image when needed.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from kraft.net.groups.assignors import Assignment
from kraft.net.groups.records import RecordFormatError, RecordReader, write_string
from kraft.net.protocol import ProtocolError
from kraft.net.protocol.codec import read_uvarint, write_uvarint

GROUP_METADATA = 3
PARTITION_METADATA = 4
MEMBER_METADATA = 5
TARGET_ASSIGNMENT_METADATA = 6
TARGET_ASSIGNMENT_MEMBER = 7
CURRENT_MEMBER_ASSIGNMENT = 8
RECORD_TYPES = frozenset(range(GROUP_METADATA, CURRENT_MEMBER_ASSIGNMENT + 1))
_MEMBER_KEYS = frozenset({MEMBER_METADATA, TARGET_ASSIGNMENT_MEMBER, CURRENT_MEMBER_ASSIGNMENT})
VALUE_VERSION = 0

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class ConsumerKey:
    """The key of a consumer group record: its type, group and (member records) member."""

    type: int
    group: str
    member_id: str = ""


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    epoch: int


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    topic_id: uuid.UUID
    name: str
    partitions: int


@dataclass(frozen=True, slots=True)
class PartitionMetadataValue:
    epoch: int
    topics: tuple[TopicMetadata, ...]


@dataclass(frozen=True, slots=True)
class MemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None


@dataclass(frozen=True, slots=True)
class TargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class TargetAssignmentMemberValue:
    partitions: Assignment


@dataclass(frozen=True, slots=True)
class CurrentAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned: Assignment
    pending_revocation: Assignment


ConsumerValue = (
    GroupMetadataValue
    | PartitionMetadataValue
    | MemberMetadataValue
    | TargetAssignmentMetadataValue
    | TargetAssignmentMemberValue
    | CurrentAssignmentValue
)
_TYPE_OF_VALUE: dict[type, int] = {
    GroupMetadataValue: GROUP_METADATA,
    PartitionMetadataValue: PARTITION_METADATA,
    MemberMetadataValue: MEMBER_METADATA,
    TargetAssignmentMetadataValue: TARGET_ASSIGNMENT_METADATA,
    TargetAssignmentMemberValue: TARGET_ASSIGNMENT_MEMBER,
    CurrentAssignmentValue: CURRENT_MEMBER_ASSIGNMENT,
}


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    """One record as the coordinator produces and replays it; value None = tombstone."""

    key: ConsumerKey
    value: ConsumerValue | None

    def __post_init__(self) -> None:
        if self.value is not None and _TYPE_OF_VALUE[type(self.value)] != self.key.type:
            raise ValueError(f"value {type(self.value).__name__} under key type {self.key.type}")


# ------------------------------------------------------------------------------ writing


class _Writer:
    __slots__ = ("out",)

    def __init__(self, version: int) -> None:
        self.out = bytearray(_I16.pack(version))

    def int8(self, value: int) -> None:
        self.out += _I8.pack(value)

    def int32(self, value: int) -> None:
        self.out += _I32.pack(value)

    def string(self, value: str) -> None:
        write_string(self.out, value)

    def compact_string(self, value: str | None) -> None:
        if value is None:
            write_uvarint(self.out, 0)
            return
        raw = value.encode()
        write_uvarint(self.out, len(raw) + 1)
        self.out += raw

    def uuid_(self, value: uuid.UUID) -> None:
        self.out += value.bytes

    def count(self, n: int) -> None:
        write_uvarint(self.out, n + 1)

    def no_tags(self) -> None:
        write_uvarint(self.out, 0)

    def topic_partitions(self, assignment: Assignment) -> None:
        # Sorted, so equal assignments encode to equal bytes.
        items = sorted(assignment.items(), key=lambda kv: kv[0].bytes)
        self.count(len(items))
        for topic_id, partitions in items:
            self.uuid_(topic_id)
            self.count(len(partitions))
            for p in sorted(partitions):
                self.int32(p)
            self.no_tags()


def encode_key(key: ConsumerKey) -> bytes:
    w = _Writer(key.type)
    w.string(key.group)
    if key.type in _MEMBER_KEYS:
        w.string(key.member_id)
    return bytes(w.out)


def encode_value(value: ConsumerValue) -> bytes:
    w = _Writer(VALUE_VERSION)
    if isinstance(value, GroupMetadataValue):
        w.int32(value.epoch)
    elif isinstance(value, PartitionMetadataValue):
        w.int32(value.epoch)
        w.count(len(value.topics))
        for t in value.topics:
            w.uuid_(t.topic_id)
            w.compact_string(t.name)
            w.int32(t.partitions)
            w.count(0)  # partition racks: rack-aware assignment is not done here
            w.no_tags()
    elif isinstance(value, MemberMetadataValue):
        w.compact_string(value.instance_id)
        w.compact_string(value.rack_id)
        w.compact_string(value.client_id)
        w.compact_string(value.client_host)
        w.count(len(value.subscribed_topic_names))
        for name in value.subscribed_topic_names:
            w.compact_string(name)
        w.compact_string(value.subscribed_topic_regex)
        w.int32(value.rebalance_timeout_ms)
        w.compact_string(value.server_assignor)
    elif isinstance(value, TargetAssignmentMetadataValue):
        w.int32(value.assignment_epoch)
    elif isinstance(value, TargetAssignmentMemberValue):
        w.topic_partitions(value.partitions)
    else:
        w.int32(value.member_epoch)
        w.int32(value.previous_member_epoch)
        w.int8(value.state)
        w.topic_partitions(value.assigned)
        w.topic_partitions(value.pending_revocation)
    w.no_tags()
    return bytes(w.out)


def encode_record(record: ConsumerRecord) -> tuple[bytes, bytes | None]:
    return encode_key(record.key), None if record.value is None else encode_value(record.value)


# ------------------------------------------------------------------------------ reading


class _Reader(RecordReader):
    """Adds the flexible encoding of the values to the reader of keys."""

    __slots__ = ()

    def uvarint(self) -> int:
        try:
            value, self.pos = read_uvarint(self.data, self.pos)
        except ProtocolError as e:
            raise RecordFormatError(f"bad varint at {self.pos}: {e}") from None
        return value

    def compact_nullable_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._decode(self._take(n - 1))

    def compact_string(self) -> str:
        return self._required(self.compact_nullable_string())

    def count(self) -> int:
        n = self.uvarint() - 1
        if n > len(self.data) - self.pos:
            raise RecordFormatError(f"array of {n} elements cannot fit")
        return max(n, 0)  # null arrays read as empty

    def uuid_(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._take(16))

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())

    def topic_partitions(self) -> dict[uuid.UUID, frozenset[int]]:
        out: dict[uuid.UUID, frozenset[int]] = {}
        for _ in range(self.count()):
            topic_id = self.uuid_()
            out[topic_id] = frozenset(self.int32() for _ in range(self.count()))
            self.skip_tags()
        return out


def decode_consumer_key(data: bytes) -> ConsumerKey | None:
    """The key of a consumer group record; None for every other kind of key."""
    r = _Reader(data)
    record_type = r.int16()
    if record_type not in RECORD_TYPES:
        return None
    group = r.string()
    member_id = r.string() if record_type in _MEMBER_KEYS else ""
    return ConsumerKey(record_type, group, member_id)


def decode_value(record_type: int, data: bytes) -> ConsumerValue:
    r = _Reader(data)
    version = r.int16()
    if version != VALUE_VERSION:
        raise RecordFormatError(f"record type {record_type}: value version {version} unknown")
    value: ConsumerValue
    if record_type == GROUP_METADATA:
        value = GroupMetadataValue(r.int32())
    elif record_type == PARTITION_METADATA:
        epoch = r.int32()
        topics = []
        for _ in range(r.count()):
            topic_id, name, partitions = r.uuid_(), r.compact_string(), r.int32()
            for _ in range(r.count()):
                r.int32()
                for _ in range(r.count()):
                    r.compact_string()
                r.skip_tags()
            r.skip_tags()
            topics.append(TopicMetadata(topic_id, name, partitions))
        value = PartitionMetadataValue(epoch, tuple(topics))
    elif record_type == MEMBER_METADATA:
        instance_id, rack_id = r.compact_nullable_string(), r.compact_nullable_string()
        client_id, client_host = r.compact_string(), r.compact_string()
        names = tuple(r.compact_string() for _ in range(r.count()))
        value = MemberMetadataValue(
            instance_id,
            rack_id,
            client_id,
            client_host,
            names,
            r.compact_nullable_string(),
            r.int32(),
            r.compact_nullable_string(),
        )
    elif record_type == TARGET_ASSIGNMENT_METADATA:
        value = TargetAssignmentMetadataValue(r.int32())
    elif record_type == TARGET_ASSIGNMENT_MEMBER:
        value = TargetAssignmentMemberValue(r.topic_partitions())
    elif record_type == CURRENT_MEMBER_ASSIGNMENT:
        member_epoch, previous, state = r.int32(), r.int32(), r.int8()
        assigned = r.topic_partitions()
        value = CurrentAssignmentValue(
            member_epoch, previous, state, assigned, r.topic_partitions()
        )
    else:
        raise RecordFormatError(f"record type {record_type} is not a consumer group record")
    r.skip_tags()
    return value


def decode_record(key: bytes, value: bytes | None) -> ConsumerRecord | None:
    """The consumer group record of a (key, value) of the log; None for other records."""
    parsed = decode_consumer_key(key)
    if parsed is None:
        return None
    return ConsumerRecord(parsed, None if value is None else decode_value(parsed.type, value))
