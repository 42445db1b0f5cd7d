"""The records of `__consumer_offsets`: Kafka's key and value schemas, byte for byte.

Every key and value starts with an int16 schema version; the key's version says what the
record is. The versions written here are those Kafka writes for classic groups, so Kafka's
tools (`kafka-console-consumer --formatter ...OffsetsMessageFormatter`, `kafka-dump-log
--offsets-decoder`) read them, and logs written by Kafka load here. Non-flexible encoding:
string = int16 length + UTF-8 (-1 = null), bytes = int32 length, array = int32 count.

OffsetCommitKey (key versions 0 and 1, same fields; 1 is written)::

    version    int16   1
    group      string
    topic      string
    partition  int32

OffsetCommitValue (versions 0-3 read; 3 is written; a null value is a tombstone)::

    version           int16   3
    offset            int64
    leader_epoch      int32   v3+ (-1: unknown)
    metadata          string
    commit_timestamp  int64
    expire_timestamp  int64   v1 only (ignored)

GroupMetadataKey (key version 2)::

    version  int16   2
    group    string

GroupMetadataValue (versions 0-3 read; 3 is written; a null value deletes the group)::

    version                  int16   3
    protocol_type            string
    generation               int32
    protocol                 string, nullable
    leader                   string, nullable
    current_state_timestamp  int64   v2+ (-1: unknown)
    members                  int32 count, then per member:
        member_id            string
        group_instance_id    string, nullable   v3+
        client_id            string
        client_host          string
        rebalance_timeout    int32              v1+ (v0: the session timeout)
        session_timeout      int32
        subscription         bytes
        assignment           bytes

Keys of other versions (KIP-848 consumer groups, share groups...) are not ours: `decode_key`
returns None for them and the loader skips them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

OFFSETS_TOPIC = "__consumer_offsets"
OFFSET_COMMIT_KEY_VERSION = 1
OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_KEY_VERSION = 2
GROUP_METADATA_VALUE_VERSION = 3

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class RecordFormatError(ValueError):
    """A key or value of `__consumer_offsets` that does not follow its schema."""


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class OffsetValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1


@dataclass(frozen=True, slots=True)
class MemberValue:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: tuple[MemberValue, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------ writing


def write_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += _I16.pack(-1)
        return
    raw = value.encode()
    out += _I16.pack(len(raw))
    out += raw


def _bytes(out: bytearray, value: bytes) -> None:
    out += _I32.pack(len(value))
    out += value


def encode_offset_key(group: str, topic: str, partition: int) -> bytes:
    out = bytearray(_I16.pack(OFFSET_COMMIT_KEY_VERSION))
    write_string(out, group)
    write_string(out, topic)
    out += _I32.pack(partition)
    return bytes(out)


def encode_offset_value(value: OffsetValue) -> bytes:
    out = bytearray(_I16.pack(OFFSET_COMMIT_VALUE_VERSION))
    out += _I64.pack(value.offset)
    out += _I32.pack(value.leader_epoch)
    write_string(out, value.metadata)
    out += _I64.pack(value.commit_timestamp)
    return bytes(out)


def encode_group_key(group: str) -> bytes:
    out = bytearray(_I16.pack(GROUP_METADATA_KEY_VERSION))
    write_string(out, group)
    return bytes(out)


def encode_group_value(value: GroupValue) -> bytes:
    out = bytearray(_I16.pack(GROUP_METADATA_VALUE_VERSION))
    write_string(out, value.protocol_type)
    out += _I32.pack(value.generation)
    write_string(out, value.protocol)
    write_string(out, value.leader)
    out += _I64.pack(value.current_state_timestamp)
    out += _I32.pack(len(value.members))
    for m in value.members:
        write_string(out, m.member_id)
        write_string(out, m.group_instance_id)
        write_string(out, m.client_id)
        write_string(out, m.client_host)
        out += _I32.pack(m.rebalance_timeout_ms)
        out += _I32.pack(m.session_timeout_ms)
        _bytes(out, m.subscription)
        _bytes(out, m.assignment)
    return bytes(out)


# ------------------------------------------------------------------------------ reading


class RecordReader:
    """The non-flexible fields of a key or value (big-endian ints, int16-length strings,
    int32-length bytes); whatever does not parse raises RecordFormatError. The KIP-848
    records (consumer_records.py) extend it with the flexible encoding."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RecordFormatError(f"field of {n} bytes runs past the end at {self.pos}")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError as e:
            raise RecordFormatError(f"string is not UTF-8: {e}") from None

    def _required(self, value: str | None) -> str:
        if value is None:
            raise RecordFormatError(f"null where a string is required at {self.pos}")
        return value

    def int8(self) -> int:
        value: int = _I8.unpack(self._take(1))[0]
        return value

    def int16(self) -> int:
        value: int = _I16.unpack(self._take(2))[0]
        return value

    def int32(self) -> int:
        value: int = _I32.unpack(self._take(4))[0]
        return value

    def int64(self) -> int:
        value: int = _I64.unpack(self._take(8))[0]
        return value

    def nullable_string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._decode(self._take(n))

    def string(self) -> str:
        return self._required(self.nullable_string())

    def bytes_(self) -> bytes:
        n = self.int32()
        return b"" if n < 0 else self._take(n)


def decode_key(data: bytes) -> OffsetKey | GroupKey | None:
    """The key of a record; None for key versions that are not classic groups' or offsets'."""
    r = RecordReader(data)
    version = r.int16()
    if version in (0, 1):
        return OffsetKey(r.string(), r.string(), r.int32())
    if version == 2:
        return GroupKey(r.string())
    return None


def decode_offset_value(data: bytes) -> OffsetValue:
    r = RecordReader(data)
    version = r.int16()
    if not 0 <= version <= 3:
        raise RecordFormatError(f"offset commit value version {version} is not supported")
    offset = r.int64()
    leader_epoch = r.int32() if version >= 3 else -1
    metadata = r.string()
    commit_timestamp = r.int64()
    if version == 1:
        r.int64()  # expire timestamp: offsets expire by offsets.retention.minutes here
    return OffsetValue(offset, leader_epoch, metadata, commit_timestamp)


def decode_group_value(data: bytes) -> GroupValue:
    r = RecordReader(data)
    version = r.int16()
    if not 0 <= version <= 3:
        raise RecordFormatError(f"group metadata value version {version} is not supported")
    protocol_type = r.string()
    generation = r.int32()
    protocol = r.nullable_string()
    leader = r.nullable_string()
    timestamp = r.int64() if version >= 2 else -1
    count = r.int32()
    if count < 0 or count > len(data):
        raise RecordFormatError(f"member count {count} is impossible")
    members = []
    for _ in range(count):
        member_id = r.string()
        instance_id = r.nullable_string() if version >= 3 else None
        client_id = r.string()
        client_host = r.string()
        rebalance_timeout = r.int32() if version >= 1 else -1
        session_timeout = r.int32()
        if version == 0:
            rebalance_timeout = session_timeout
        members.append(
            MemberValue(
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                r.bytes_(),
                r.bytes_(),
            )
        )
    return GroupValue(protocol_type, generation, protocol, leader, timestamp, tuple(members))
