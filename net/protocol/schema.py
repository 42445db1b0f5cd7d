"""Schema types that describe Kafka messages as data.

The generator turns Kafka's JSON message definitions into instances of these classes
(in ``_generated.py``); the codec compiles them into per-version encode/decode functions.
Nothing here does I/O or encoding itself.

Version ranges are inclusive; ``Versions(3)`` is Kafka's ``3+`` (open-ended, so it also
answers for versions newer than the ones we know), ``Versions(0, 12)`` is ``0-12``. A field
that never has a property (e.g. never nullable) carries ``None`` instead of a range.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import ClassVar, Final

# The highest version number the wire format can carry (versions are int16).
MAX_VERSION: Final = 0x7FFF

# Kafka's all-zero UUID: the default (and "unset") value of every uuid field.
ZERO_UUID: Final = uuid.UUID(int=0)

# Records fields are returned by the decoder as zero-copy memoryview slices of the frame
# and accepted by the encoder as any bytes-like object.
Records = bytes | bytearray | memoryview


class Struct:
    """Base class of every generated message and struct class (all are slotted dataclasses)."""

    __slots__ = ()


class Message(Struct):
    """Base class of the top-level generated classes (requests, responses, records, data)."""

    __slots__ = ()
    NAME: ClassVar[str]
    API_KEY: ClassVar[int | None]


@dataclass(frozen=True, slots=True)
class Versions:
    """An inclusive version range; ``hi=None`` means open-ended (Kafka's ``N+``)."""

    lo: int
    hi: int | None = None

    def __contains__(self, version: int) -> bool:
        return self.lo <= version and (self.hi is None or version <= self.hi)

    @property
    def highest(self) -> int:
        return MAX_VERSION if self.hi is None else self.hi

    def __str__(self) -> str:
        if self.hi is None:
            return f"{self.lo}+"
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


class _Empty:
    """Marker default of array and struct fields whose default is "empty", not null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY: Final = _Empty()

# Primitive field types and their fixed wire sizes (None: variable length).
PRIMITIVE_TYPES: Final[dict[str, int | None]] = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "int64": 8,
    "float64": 8,
    "uuid": 16,
    "string": None,
    "bytes": None,
    "records": None,
}


@dataclass(frozen=True, slots=True, eq=False)
class FieldSpec:
    """One field of a struct.

    ``type`` is a primitive type name or ``"struct"`` (then ``struct`` is set); ``array`` says
    the field is an array of that type. ``default`` is the value of the field where it is absent
    (and the value that keeps a tagged field off the wire): a constant, ``None`` for null, or
    ``EMPTY`` for an empty array or a struct with all-default fields.
    """

    name: str
    kafka_name: str
    type: str
    versions: Versions | None
    array: bool = False
    nullable: Versions | None = None
    tagged: Versions | None = None
    tag: int | None = None
    default: object = None
    struct: StructSpec | None = None
    ignorable: bool = False

    def present_in(self, version: int) -> bool:
        return self.versions is not None and version in self.versions

    def nullable_in(self, version: int) -> bool:
        return self.nullable is not None and version in self.nullable

    def tagged_in(self, version: int) -> bool:
        return self.tagged is not None and version in self.tagged

    def make_default(self) -> object:
        """A fresh default value (new list / struct instance for ``EMPTY``)."""
        if self.default is EMPTY:
            if self.array:
                return []
            assert self.struct is not None
            return self.struct.cls()
        return self.default


@dataclass(frozen=True, slots=True, eq=False)
class StructSpec:
    """A struct: the generated class and its fields in declaration (= wire) order."""

    name: str
    cls: type
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class MessageSpec(StructSpec):
    """A top-level definition: request, response, metadata record or data type."""

    kind: str  # "request", "response", "metadata" or "data"
    api_key: int | None
    valid: Versions
    flexible: Versions | None
    deprecated: Versions | None = None
    latest_version_unstable: bool = False
    listeners: tuple[str, ...] = ()

    def is_flexible(self, version: int) -> bool:
        return self.flexible is not None and version in self.flexible

    @property
    def versions(self) -> range:
        return range(self.valid.lo, self.valid.highest + 1)


@dataclass(frozen=True, slots=True)
class ApiInfo:
    """One API: its request and response classes and the versions we know."""

    name: str
    api_key: int
    request: type[Message]
    response: type[Message]
    min_version: int
    max_version: int
    flexible: Versions | None
    deprecated: Versions | None
    latest_version_unstable: bool
    listeners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MetadataRecordInfo:
    """One KRaft metadata record type."""

    name: str
    api_key: int
    cls: type[Message]
    min_version: int
    max_version: int


# Headers: plain data the codec encodes; here (not in the codec) so that the exceptions in
# `errors` can carry a decoded header without importing the codec.


@dataclass(slots=True, kw_only=True)
class RequestHeader:
    """Request header. v0: api key, version, correlation id; v1 adds client_id (always a
    non-compact nullable string); v2 adds a tagged-field section."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None = None
    unknown_tagged_fields: dict[int, bytes] | None = field(default=None, repr=False)


@dataclass(slots=True, kw_only=True)
class ResponseHeader:
    """Response header. v0: correlation id; v1 adds a tagged-field section."""

    correlation_id: int
    unknown_tagged_fields: dict[int, bytes] | None = field(default=None, repr=False)
