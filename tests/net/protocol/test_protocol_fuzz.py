"""Garbage in, ProtocolError out: truncated, mutated and random frames for every version.

Decoders must never raise anything but ProtocolError (no IndexError, struct.error,
UnicodeDecodeError, MemoryError...), and must not allocate or loop on a hostile length.
"""

from __future__ import annotations

import random
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kraft.net.protocol import (
    API_KEYS,
    MESSAGES,
    FieldSpec,
    MessageSpec,
    ProtocolError,
    StructSpec,
    decode_message,
    decode_metadata_record,
    decode_request,
    decode_response,
    encode_message,
    encode_metadata_record,
    encode_request,
    encode_response,
)

SPECS = {spec.name: spec for spec in MESSAGES}
CASES = [(spec.name, v) for spec in MESSAGES for v in spec.versions]


def _sample_value(f: FieldSpec, version: int, flexible: bool, n: int) -> Any:
    """A non-default value for one field (n varies it between array elements)."""
    if f.type == "struct":
        assert f.struct is not None
        return sample_struct(f.struct, version, flexible, n + 1)
    return {
        "bool": True,
        "int8": -2 - n,
        "int16": 300 + n,
        "uint16": 65000 - n,
        "int32": 70000 + n,
        "uint32": 4000000000 - n,
        "int64": -(1 << 40) - n,
        "float64": 2.5 + n,
        "uuid": uuid.UUID(int=(0x1234 << 64) + n),
        "string": "é-" + "x" * n,
        "bytes": bytes(range(n + 3)),
        "records": b"\x00" * 20 + bytes([n]),
    }[f.type]


def sample_struct(spec: StructSpec, version: int, flexible: bool, depth: int = 0) -> Any:
    """An instance with every field of the version set away from its default."""
    kwargs: dict[str, Any] = {}
    for f in spec.fields:
        if not f.present_in(version):
            continue
        if f.array:
            count = 2 if depth < 3 else 0
            kwargs[f.name] = [_sample_value(f, version, flexible, depth + i) for i in range(count)]
        else:
            kwargs[f.name] = _sample_value(f, version, flexible, depth)
    if flexible:
        kwargs["unknown_tagged_fields"] = {1000: b"\x07"}
    return spec.cls(**kwargs)


def sample_frame(spec: MessageSpec, version: int) -> tuple[bytes, Callable[[bytes], Any]]:
    """A valid encoding of a rich message and the decoder that reads it."""
    message = sample_struct(spec, version, spec.is_flexible(version))
    if spec.kind == "request":
        return bytes(encode_request(message, version, 5, "fuzz"))[4:], decode_request
    if spec.kind == "response":
        assert spec.api_key is not None
        key = spec.api_key

        def dec_response(b: bytes) -> Any:
            return decode_response(b, key, version)

        return bytes(encode_response(message, version, 5))[4:], dec_response
    if spec.kind == "metadata":
        return encode_metadata_record(message, version), decode_metadata_record

    def dec_data(b: bytes) -> Any:
        return decode_message(spec.cls, b, version)

    return bytes(encode_message(message, version)), dec_data


def only_protocol_errors(decode: Callable[[bytes], Any], data: bytes) -> bool:
    """Decode; True if it worked, False on ProtocolError; anything else fails the test."""
    try:
        decode(data)
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize(("name", "version"), CASES, ids=[f"{n}-v{v}" for n, v in CASES])
def test_truncated_and_mutated_frames(name: str, version: int) -> None:
    spec = SPECS[name]
    frame, decode = sample_frame(spec, version)
    assert only_protocol_errors(decode, frame)
    # Every strict prefix is missing bytes the decoder needs.
    for cut in range(len(frame)):
        assert not only_protocol_errors(decode, frame[:cut]), f"prefix of {cut} bytes decoded"
    rng = random.Random(f"{name}-{version}")
    for _ in range(40):
        mutated = bytearray(frame)
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            i = rng.randrange(len(mutated)) if mutated else 0
            if op < 0.6 and mutated:
                mutated[i] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, rng.randrange(256)))
            elif op < 0.8:
                mutated[i:i] = bytes([rng.randrange(256)])
            elif mutated:
                del mutated[i]
        only_protocol_errors(decode, bytes(mutated))


REQUEST_KEYS = sorted(API_KEYS)


@pytest.mark.parametrize("api_key", REQUEST_KEYS)
@settings(
    max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_random_request_bodies(api_key: int, data: st.DataObject) -> None:
    info = API_KEYS[api_key]
    version = data.draw(st.integers(info.min_version, info.max_version), label="version")
    header = struct.pack(">hhi", api_key, version, 1)
    if (api_key, version) != (7, 0):
        header += b"\x00\x01c"
        if info.flexible is not None and version in info.flexible:
            header += b"\x00"
    body = data.draw(st.binary(max_size=48), label="body")
    only_protocol_errors(decode_request, header + body)
    only_protocol_errors(lambda b: decode_response(b, api_key, version), body)


@given(frame=st.binary(max_size=64))
@settings(max_examples=300, deadline=None, database=None)
def test_random_frames(frame: bytes) -> None:
    only_protocol_errors(decode_request, frame)
    only_protocol_errors(decode_metadata_record, frame)


HOSTILE_LENGTHS = [
    # ProduceRequest v3: null transactional id, acks, timeout, then a 2^31-1 topic count.
    struct.pack(">hhih", 0, 3, 1, -1) + b"\xff\xff" + struct.pack(">hii", 1, 1000, 0x7FFFFFFF),
    # ProduceRequest v9 (flexible): a 5-byte uvarint count near 2^32.
    struct.pack(">hhih", 0, 9, 1, -1)
    + b"\x00"
    + b"\x00"
    + struct.pack(">hi", 1, 1000)
    + b"\xfe\xff\xff\xff\x0f",
    # A uvarint that never ends.
    struct.pack(">hhih", 0, 9, 1, -1)
    + b"\x00"
    + b"\x00"
    + struct.pack(">hi", 1, 1000)
    + b"\xff" * 12,
    # MetadataRequest v1 with a topic name claiming 32767 bytes.
    struct.pack(">hhih", 3, 1, 1, -1) + struct.pack(">ih", 1, 0x7FFF) + b"abc",
    # FetchResponse v4 with huge records length (decoded as a request: api key 1 body).
    struct.pack(">hhih", 1, 4, 1, -1)
    + struct.pack(">iiiib", -1, 0, 0, 0, 0)
    + struct.pack(">i", 0x7FFFFFFF),
    # Tagged-field section claiming 2^28 tags (ApiVersions v3).
    struct.pack(">hhih", 18, 3, 1, -1) + b"\x00" + b"\x01\x01" + b"\xff\xff\xff\x7f",
]


@pytest.mark.parametrize("frame", HOSTILE_LENGTHS)
def test_hostile_lengths_fail_fast(frame: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(ProtocolError):
        decode_request(frame)
    assert time.perf_counter() - start < 0.5
