"""A small, strict binary codec for pysyncobj's Raft messages, instead of pickle.

pysyncobj's messages are dicts of plain values (`{'type': 'append_entries', 'term': 3,
'entries': [(b'...', 12, 3)], ...}`); its own transport pickles them, so whoever can reach
the port can run code. This codec handles only the value types those messages use, so a
decoded frame can never be more than data, even from a peer that does hold the secret.

Each value is a 1-byte tag, then::

    0x00 None    0x01 True    0x02 False
    0x03 int     i64 big-endian
    0x04 bytes   u32 length + bytes
    0x05 str     u32 length + UTF-8
    0x06 list    u32 count + values
    0x07 tuple   u32 count + values
    0x08 dict    u32 count + (key, value) pairs

Decoding checks every length against the bytes left, limits nesting, and requires the input to
be consumed exactly; anything else raises `CodecError`.
"""

from __future__ import annotations

import struct
from typing import Any

_NONE, _TRUE, _FALSE, _INT, _BYTES, _STR, _LIST, _TUPLE, _DICT = range(9)
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
MAX_DEPTH = 8


class CodecError(ValueError):
    """The bytes are not a valid encoding (decode), or a value has no encoding (encode)."""


def encode(value: Any) -> bytes:
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CodecError("nested too deeply")
    if value is None:
        out.append(_NONE)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        try:
            out += bytes((_INT,)) + _I64.pack(value)
        except struct.error as e:
            raise CodecError(f"int out of range: {value}") from e
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(_BYTES)
        out += _U32.pack(len(value))
        out += value
    elif isinstance(value, str):
        raw = value.encode()
        out.append(_STR)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, list | tuple):
        out.append(_LIST if isinstance(value, list) else _TUPLE)
        out += _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        out.append(_DICT)
        out += _U32.pack(len(value))
        for key, item in value.items():
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    else:
        raise CodecError(f"cannot encode {type(value).__name__}")


def decode(data: bytes) -> Any:
    value, pos = _decode(memoryview(data), 0, 0)
    if pos != len(data):
        raise CodecError(f"{len(data) - pos} trailing bytes")
    return value


def _decode(data: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise CodecError("nested too deeply")
    if pos >= len(data):
        raise CodecError("truncated")
    tag = data[pos]
    pos += 1
    if tag == _NONE:
        return None, pos
    if tag == _TRUE:
        return True, pos
    if tag == _FALSE:
        return False, pos
    if tag == _INT:
        if pos + 8 > len(data):
            raise CodecError("truncated int")
        return _I64.unpack_from(data, pos)[0], pos + 8
    if pos + 4 > len(data):
        raise CodecError("truncated length")
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    if tag in (_BYTES, _STR):
        if pos + n > len(data):
            raise CodecError("truncated bytes")
        raw = bytes(data[pos : pos + n])
        if tag == _BYTES:
            return raw, pos + n
        try:
            return raw.decode(), pos + n
        except UnicodeDecodeError as e:
            raise CodecError("invalid UTF-8") from e
    if tag in (_LIST, _TUPLE):
        # Every value takes at least one byte: bounds the count before allocating anything.
        if n > len(data) - pos:
            raise CodecError("count exceeds data")
        items = []
        for _ in range(n):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return (items if tag == _LIST else tuple(items)), pos
    if tag == _DICT:
        if 2 * n > len(data) - pos:
            raise CodecError("count exceeds data")
        result: dict[Any, Any] = {}
        for _ in range(n):
            key, pos = _decode(data, pos, depth + 1)
            if isinstance(key, list | dict):
                raise CodecError("unhashable dict key")
            try:
                hash(key)
            except TypeError as e:
                raise CodecError("unhashable dict key") from e
            result[key], pos = _decode(data, pos, depth + 1)
        return result, pos
    raise CodecError(f"unknown tag {tag}")
