"""Hypothesis strategies that build random message instances valid for one version.

Driven by the same ``FieldSpec`` tables as the codec: a field the version lacks keeps its
default, a nullable field is sometimes None, tagged fields are sometimes left at their default
(so they stay off the wire), and flexible versions sometimes carry unknown tags.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import strategies as st

from kraft.net.protocol import ZERO_UUID, FieldSpec, MessageSpec, StructSpec

_INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
}

_CACHE: dict[tuple[int, int, bool, int], st.SearchStrategy[Any]] = {}


def _scalar(ftype: str) -> st.SearchStrategy[Any]:
    if ftype in _INT_RANGES:
        lo, hi = _INT_RANGES[ftype]
        return st.integers(lo, hi)
    if ftype == "bool":
        return st.booleans()
    if ftype == "float64":
        return st.floats(allow_nan=False)
    if ftype == "uuid":
        return (
            st.just(ZERO_UUID)
            | st.uuids()
            | st.integers(0, (1 << 128) - 1).map(lambda i: uuid.UUID(int=i))
        )
    if ftype == "string":
        return st.text(max_size=6)
    if ftype in ("bytes", "records"):
        return st.binary(max_size=12)
    raise AssertionError(ftype)


def _field(f: FieldSpec, version: int, flexible: bool, depth: int) -> st.SearchStrategy[Any]:
    if f.type == "struct":
        assert f.struct is not None
        elem = struct_strategy(f.struct, version, flexible, depth + 1)
    else:
        elem = _scalar(f.type)
    value = st.lists(elem, max_size=3 if depth == 0 else 2) if f.array else elem
    if f.nullable_in(version):
        value = st.none() | value
    if f.tagged_in(version):
        value = st.builds(f.make_default) | value
    return value


def struct_strategy(
    spec: StructSpec, version: int, flexible: bool, depth: int = 0
) -> st.SearchStrategy[Any]:
    key = (id(spec), version, flexible, depth)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    kwargs = {
        f.name: _field(f, version, flexible, depth) for f in spec.fields if f.present_in(version)
    }
    if flexible:
        used = {f.tag for f in spec.fields if f.present_in(version) and f.tagged_in(version)}
        free_tag = st.integers(0, 300).filter(lambda t: t not in used)
        kwargs["unknown_tagged_fields"] = st.none() | st.dictionaries(
            free_tag, st.binary(max_size=5), min_size=1, max_size=2
        )
    strategy = st.builds(spec.cls, **kwargs)
    _CACHE[key] = strategy
    return strategy


def message_strategy(spec: MessageSpec, version: int) -> st.SearchStrategy[Any]:
    return struct_strategy(spec, version, spec.is_flexible(version))
