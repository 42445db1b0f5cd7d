"""Generate ``net/protocol/_generated.py`` from Kafka's JSON message definitions.

Usage::

    python -m kraft.net.protocol.generator            # rewrite _generated.py
    python -m kraft.net.protocol.generator --check    # exit 1 if _generated.py is stale
    python net/protocol/generator.py            # same, without importing the package

The definitions directory (holding ``message/`` and ``metadata/``) is taken from ``--defs``,
else from ``$KRAFT_PROTOCOL_DEFS``, else the copy vendored in ``net/protocol/kafka-protocol``.
kraft's own messages (``net/protocol/kraft-protocol``: requests Kafka has no equivalent for,
with API keys from 10000) are always read after Kafka's, in the same format.

The output holds facts of the protocol only (names, types, versions, defaults), in the
project's own form: one slotted dataclass per message with snake_case attributes and its
structs nested inside it, plus the tables (``FieldSpec`` / ``MessageSpec``) the codec compiles
into encoders and decoders. Output is deterministic: same definitions, same bytes.
"""

from __future__ import annotations

import argparse
import json
import keyword
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT = Path(__file__).with_name("_generated.py")
# kraft's own definitions, in Kafka's format; read with every definitions directory.
OWN_DEFS = Path(__file__).resolve().parent / "kraft-protocol"
DEFS_ENV = "KRAFT_PROTOCOL_DEFS"
# Definition kinds we generate classes for; "header" is hand-written in codec.py because its
# client_id field breaks the flexible-encoding rules.
KINDS = ("request", "response", "metadata", "data")
RESERVED_FIELD_NAMES = frozenset({"unknown_tagged_fields"})
# Kept in step with schema.PRIMITIVE_TYPES; the generator imports nothing of the project so that
# it still runs (as `python net/protocol/generator.py`) when _generated.py is broken or missing.
PRIMITIVE_TYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "float64",
        "uuid",
        "string",
        "bytes",
        "records",
    }
)


@dataclass(frozen=True)
class Versions:
    """An inclusive version range; ``hi=None`` is open-ended (Kafka's ``N+``)."""

    lo: int
    hi: int | None = None

    def __str__(self) -> str:
        if self.hi is None:
            return f"{self.lo}+"
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


class DefinitionError(Exception):
    """A definition file is malformed or uses something the generator does not support."""


def default_defs_dir() -> Path:
    env = os.environ.get(DEFS_ENV)
    if env:
        return Path(env)
    # Vendored beside this module (Apache 2.0, see its LICENSE and NOTICE).
    return Path(__file__).resolve().parent / "kafka-protocol"


# ---------------------------------------------------------------------------------------------
# Loading


def strip_comments(text: str) -> str:
    """Remove ``//`` comments (outside string literals) from a JSON definition file."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def parse_versions(text: str | None) -> Versions | None:
    """Parse ``"0+"``, ``"3-5"``, ``"7"`` or ``"none"``."""
    if text is None or text == "none":
        return None
    text = text.strip()
    m = re.fullmatch(r"(\d+)\+", text)
    if m:
        return Versions(int(m.group(1)))
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise DefinitionError(f"empty version range {text!r}")
        return Versions(lo, hi)
    if re.fullmatch(r"\d+", text):
        return Versions(int(text), int(text))
    raise DefinitionError(f"bad version range {text!r}")


def is_subset(a: Versions | None, b: Versions | None) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    if a.lo < b.lo:
        return False
    if b.hi is None:
        return True
    return a.hi is not None and a.hi <= b.hi


def snake_case(name: str) -> str:
    """``TransactionalId`` -> ``transactional_id``; ``KRaftVersion`` -> ``kraft_version``."""
    s = name.replace("KRaft", "Kraft")
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s)
    s = s.lower()
    if keyword.iskeyword(s) or keyword.issoftkeyword(s):
        s += "_"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", s):
        raise DefinitionError(f"cannot make an identifier of {name!r}")
    return s


@dataclass
class Field:
    name: str  # python attribute name
    kafka_name: str
    type: str  # primitive type name or "struct"
    array: bool
    versions: Versions | None
    nullable: Versions | None
    tagged: Versions | None
    tag: int | None
    ignorable: bool
    default: str  # python source of the table default (constant, None or EMPTY)
    struct: Struct | None = None


@dataclass
class Struct:
    name: str
    fields: list[Field] = field(default_factory=list)


@dataclass
class Definition:
    name: str
    kind: str
    api_key: int | None
    valid: Versions
    flexible: Versions | None
    deprecated: Versions | None
    latest_version_unstable: bool
    listeners: tuple[str, ...]
    body: Struct
    structs: dict[str, Struct]  # every nested struct by name, in definition order
    source: str


def load_definitions(defs_dir: Path, own_dir: Path | None = OWN_DEFS) -> list[Definition]:
    files = sorted((defs_dir / "message").glob("*.json")) + sorted(
        (defs_dir / "metadata").glob("*.json")
    )
    if not files:
        raise DefinitionError(f"no definition files under {defs_dir}")
    if own_dir is not None:
        files += sorted((own_dir / "message").glob("*.json"))
    out = []
    for path in files:
        try:
            raw = json.loads(strip_comments(path.read_text(encoding="utf-8")))
        except (ValueError, OSError) as e:
            raise DefinitionError(f"{path}: {e}") from e
        if raw.get("type") not in KINDS:
            continue
        try:
            out.append(_build_definition(raw, path.name))
        except DefinitionError as e:
            raise DefinitionError(f"{path.name}: {e}") from e
    _validate_set(out)
    return out


def _build_definition(raw: dict, source: str) -> Definition:
    name = raw["name"]
    kind = raw["type"]
    valid = parse_versions(raw["validVersions"])
    if valid is None or valid.hi is None:
        raise DefinitionError("validVersions must be a closed range")
    structs: dict[str, Struct] = {}
    common: dict[str, list[dict]] = {}
    for cs in raw.get("commonStructs", []):
        if cs["name"] in common:
            raise DefinitionError(f"duplicate common struct {cs['name']}")
        common[cs["name"]] = cs["fields"]
    builder = _StructBuilder(name, structs, common)
    body = builder.build(name, raw.get("fields", []), top=True)
    # Common structs referenced nowhere are not generated.
    flexible = parse_versions(raw.get("flexibleVersions"))
    for struct in [body, *structs.values()]:
        for f in struct.fields:
            if not is_subset(f.tagged, flexible):
                raise DefinitionError(f"{struct.name}.{f.kafka_name}: tagged outside flexible")
    api_key = raw.get("apiKey")
    if kind in ("request", "response", "metadata") and not isinstance(api_key, int):
        raise DefinitionError("missing apiKey")
    return Definition(
        name=name,
        kind=kind,
        api_key=api_key,
        valid=valid,
        flexible=flexible,
        deprecated=parse_versions(raw.get("deprecatedVersions")),
        latest_version_unstable=bool(raw.get("latestVersionUnstable", False)),
        listeners=tuple(raw.get("listeners", ())),
        body=body,
        structs=structs,
        source=source,
    )


class _StructBuilder:
    def __init__(self, message: str, structs: dict[str, Struct], common: dict[str, list[dict]]):
        self.message = message
        self.structs = structs
        self.common = common
        self.building: set[str] = set()

    def build(self, name: str, raw_fields: list[dict], top: bool = False) -> Struct:
        if not top:
            if name in self.structs:
                raise DefinitionError(f"struct {name} defined twice")
            if name == self.message or name in self.building:
                raise DefinitionError(f"struct {name} is recursive or shadows the message")
        self.building.add(name)
        struct = Struct(name)
        if not top:
            # Register before the fields so definition order is pre-order.
            self.structs[name] = struct
        seen: set[str] = set()
        tags: dict[int, str] = {}
        for rf in raw_fields:
            f = self.field(rf)
            if f.name in seen or f.name in RESERVED_FIELD_NAMES:
                raise DefinitionError(f"{name}: duplicate or reserved field name {f.name}")
            seen.add(f.name)
            if f.tag is not None:
                if f.tag in tags:
                    raise DefinitionError(f"{name}: tag {f.tag} used by {tags[f.tag]} and {f.name}")
                tags[f.tag] = f.name
            struct.fields.append(f)
        self.building.discard(name)
        return struct

    def field(self, rf: dict) -> Field:
        kafka_name = rf["name"]
        name = snake_case(kafka_name)
        if "flexibleVersions" in rf:
            raise DefinitionError(f"{kafka_name}: per-field flexibleVersions is not supported")
        type_name: str = rf["type"]
        array = type_name.startswith("[]")
        elem = type_name[2:] if array else type_name
        versions = parse_versions(rf.get("versions"))
        nullable = parse_versions(rf.get("nullableVersions"))
        tagged = parse_versions(rf.get("taggedVersions"))
        tag = rf.get("tag")
        if (tagged is None) != (tag is None):
            raise DefinitionError(f"{kafka_name}: tag and taggedVersions go together")
        if tag is not None:
            try:
                tag = int(tag)  # a few definitions spell the tag as a string
            except ValueError:
                raise DefinitionError(f"{kafka_name}: bad tag {tag!r}") from None
            if tag < 0:
                raise DefinitionError(f"{kafka_name}: negative tag {tag}")
        if not is_subset(tagged, versions):
            raise DefinitionError(f"{kafka_name}: taggedVersions outside versions")
        struct: Struct | None = None
        if elem in PRIMITIVE_TYPES:
            if "fields" in rf:
                raise DefinitionError(f"{kafka_name}: primitive type with fields")
            ftype = elem
        else:
            ftype = "struct"
            if "fields" in rf:
                if elem in self.common:
                    raise DefinitionError(f"{kafka_name}: redefines common struct {elem}")
                struct = self.build(elem, rf["fields"])
            elif elem in self.structs:
                struct = self.structs[elem]
            elif elem in self.common:
                struct = self.build(elem, self.common[elem])
            else:
                raise DefinitionError(f"{kafka_name}: unknown type {type_name}")
        if (
            nullable is not None
            and not array
            and ftype
            not in (
                "string",
                "bytes",
                "records",
                "struct",
            )
        ):
            raise DefinitionError(f"{kafka_name}: type {type_name} cannot be nullable")
        default = self.default(rf, ftype, array, nullable)
        return Field(
            name=name,
            kafka_name=kafka_name,
            type=ftype,
            array=array,
            versions=versions,
            nullable=nullable,
            tagged=tagged,
            tag=tag,
            ignorable=bool(rf.get("ignorable", False)),
            default=default,
            struct=struct,
        )

    @staticmethod
    def default(rf: dict, ftype: str, array: bool, nullable: Versions | None) -> str:
        raw = rf.get("default")
        text = None if raw is None else str(raw)
        if text == "null":
            if nullable is None:
                raise DefinitionError(f"{rf['name']}: default null but never nullable")
            return "None"
        if array or ftype == "struct":
            if text not in (None, ""):
                raise DefinitionError(f"{rf['name']}: unsupported default {text!r}")
            return "EMPTY"
        if ftype in ("int8", "int16", "uint16", "int32", "uint32", "int64"):
            value = 0 if text is None else int(text, 0)
            return repr(value)
        if ftype == "float64":
            return repr(0.0 if text is None else float(text))
        if ftype == "bool":
            if text is None:
                return "False"
            if text.lower() not in ("true", "false"):
                raise DefinitionError(f"{rf['name']}: bad bool default {text!r}")
            return repr(text.lower() == "true")
        if ftype == "string":
            return repr(text or "")
        if ftype == "uuid":
            if text not in (None, ""):
                raise DefinitionError(f"{rf['name']}: unsupported uuid default {text!r}")
            return "ZERO_UUID"
        if ftype == "bytes":
            if text not in (None, ""):
                raise DefinitionError(f"{rf['name']}: unsupported bytes default {text!r}")
            return "b''"
        if ftype == "records":
            # Kafka's records fields default to null where they may be null.
            return "None" if nullable is not None else "b''"
        raise DefinitionError(f"{rf['name']}: no default rule for {ftype}")


def _validate_set(defs: list[Definition]) -> None:
    names: set[str] = set()
    by_key: dict[tuple[str, int], Definition] = {}
    for d in defs:
        if d.name in names:
            raise DefinitionError(f"duplicate definition name {d.name}")
        names.add(d.name)
        if d.api_key is not None and d.kind != "data":
            key = (d.kind, d.api_key)
            if key in by_key:
                raise DefinitionError(f"{d.name} and {by_key[key].name} share {key}")
            by_key[key] = d
    for (kind, api_key), req in by_key.items():
        if kind != "request":
            continue
        resp = by_key.get(("response", api_key))
        if resp is None:
            raise DefinitionError(f"{req.name} has no response")
        if (req.valid, req.flexible) != (resp.valid, resp.flexible):
            raise DefinitionError(f"{req.name} and {resp.name} disagree on versions")
        if not req.name.endswith("Request") or resp.name != req.name[:-7] + "Response":
            raise DefinitionError(f"unexpected names {req.name} / {resp.name}")
    for kind, api_key in by_key:
        if kind == "response" and ("request", api_key) not in by_key:
            raise DefinitionError(f"response for api key {api_key} has no request")


# ---------------------------------------------------------------------------------------------
# Rendering


HEADER = '''\
# Generated by net/protocol/generator.py from Apache Kafka's JSON message definitions
# (Apache License 2.0). Do not edit: run `python -m kraft.net.protocol.generator` to regenerate.
"""Kafka message classes and the codec tables that describe them (generated)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from .schema import (
    EMPTY,
    ZERO_UUID,
    ApiInfo,
    Message,
    MetadataRecordInfo,
    Records,
    Struct,
    Versions,
)
from .schema import FieldSpec as F
from .schema import MessageSpec as M
from .schema import StructSpec as S

__all__ = [
    "API_KEYS",
    "METADATA_RECORDS",
    "MESSAGES",
    "ApiKey",
    "MetadataRecordType",
%(names)s
]

V = Versions
'''

PY_TYPES = {
    "bool": "bool",
    "int8": "int",
    "int16": "int",
    "uint16": "int",
    "int32": "int",
    "uint32": "int",
    "int64": "int",
    "float64": "float",
    "uuid": "uuid.UUID",
    "string": "str",
    "bytes": "bytes",
    "records": "Records",
}


def _versions_src(v: Versions | None) -> str:
    if v is None:
        return "None"
    if v.hi is None:
        return f"V({v.lo})"
    return f"V({v.lo}, {v.hi})"


def _upper_snake(name: str) -> str:
    return snake_case(name).upper().rstrip("_")


class _Renderer:
    def __init__(self, defs: list[Definition]):
        order = {"request": 0, "response": 1, "metadata": 2, "data": 3}
        # Requests and responses interleaved by api key, then metadata records, then data.
        self.defs = sorted(
            defs,
            key=lambda d: (
                0 if d.kind in ("request", "response") else order[d.kind],
                d.api_key if d.api_key is not None and d.kind != "data" else 0,
                order[d.kind],
                d.name,
            ),
        )
        self.lines: list[str] = []

    def emit(self, line: str = "") -> None:
        self.lines.append(line)

    def render(self) -> str:
        names = "\n".join(f'    "{d.name}",' for d in self.defs)
        self.lines = [HEADER % {"names": names}]
        for d in self.defs:
            self.emit()
            self.render_classes(d)
        self.emit()
        self.emit("# " + "-" * 94)
        self.emit("# Codec tables: one spec per struct, leaves first.")
        for d in self.defs:
            self.emit()
            self.render_specs(d)
        self.emit()
        self.render_registry()
        return "\n".join(self.lines).rstrip("\n") + "\n"

    # -- classes ------------------------------------------------------------------------------

    def annotation(self, d: Definition, f: Field) -> str:
        if f.type == "struct":
            assert f.struct is not None
            base = f"{d.name}.{f.struct.name}"
        else:
            base = PY_TYPES[f.type]
        if f.array:
            base = f"list[{base}]"
        if f.nullable is not None:
            base = f"{base} | None"
        return base

    def field_line(self, d: Definition, f: Field) -> str:
        ann = self.annotation(d, f)
        if f.default == "EMPTY":
            if f.array:
                value = "field(default_factory=list)"
            else:
                assert f.struct is not None
                value = f"field(default_factory=lambda: {d.name}.{f.struct.name}())"
        else:
            value = f.default
        return f"{f.name}: {ann} = {value}"

    def render_fields(self, d: Definition, fields: list[Field], indent: str) -> None:
        for f in fields:
            self.emit(f"{indent}{self.field_line(d, f)}")
        self.emit(
            f"{indent}unknown_tagged_fields: dict[int, bytes] | None = "
            "field(default=None, repr=False)"
        )

    def render_classes(self, d: Definition) -> None:
        what = {
            "request": f"api key {d.api_key}",
            "response": f"api key {d.api_key}",
            "metadata": f"metadata record type {d.api_key}",
            "data": "data",
        }[d.kind]
        flexible = f", flexible {d.flexible}" if d.flexible else ""
        self.emit()
        self.emit("@dataclass(slots=True, kw_only=True)")
        self.emit(f"class {d.name}(Message):")
        self.emit(f'    """{d.name}: {what}, versions {d.valid}{flexible}."""')
        self.emit()
        self.emit(f'    NAME: ClassVar[str] = "{d.name}"')
        api_key = "None" if d.kind == "data" else str(d.api_key)
        self.emit(f"    API_KEY: ClassVar[int | None] = {api_key}")
        for s in d.structs.values():
            self.emit()
            self.emit("    @dataclass(slots=True, kw_only=True)")
            self.emit(f"    class {s.name}(Struct):")
            self.render_fields(d, s.fields, "        ")
        self.emit()
        self.render_fields(d, d.body.fields, "    ")

    # -- specs --------------------------------------------------------------------------------

    @staticmethod
    def spec_name(d: Definition, s: Struct | None = None) -> str:
        return f"_SPEC_{d.name}" if s is None else f"_SPEC_{d.name}_{s.name}"

    def field_spec(self, d: Definition, f: Field) -> str:
        args = [repr(f.name), repr(f.kafka_name), repr(f.type), _versions_src(f.versions)]
        if f.array:
            args.append("array=True")
        if f.nullable is not None:
            args.append(f"nullable={_versions_src(f.nullable)}")
        if f.tagged is not None:
            args.append(f"tagged={_versions_src(f.tagged)}, tag={f.tag}")
        if f.default != "None":
            args.append(f"default={f.default}")
        if f.struct is not None:
            args.append(f"struct={self.spec_name(d, f.struct)}")
        if f.ignorable:
            args.append("ignorable=True")
        return f"F({', '.join(args)})"

    def struct_spec_body(self, d: Definition, name: str, cls: str, fields: list[Field]) -> None:
        self.emit(f"    {name!r},")
        self.emit(f"    {cls},")
        if not fields:
            self.emit("    (),")
            return
        self.emit("    (")
        for f in fields:
            self.emit(f"        {self.field_spec(d, f)},")
        self.emit("    ),")

    def render_specs(self, d: Definition) -> None:
        done: set[str] = set()

        def visit(s: Struct) -> None:
            for f in s.fields:
                if f.struct is not None and f.struct.name not in done:
                    done.add(f.struct.name)
                    visit(f.struct)
                    self.emit(f"{self.spec_name(d, f.struct)} = S(")
                    self.struct_spec_body(
                        d, f.struct.name, f"{d.name}.{f.struct.name}", f.struct.fields
                    )
                    self.emit(")")

        visit(d.body)
        self.emit(f"{self.spec_name(d)} = M(")
        self.struct_spec_body(d, d.name, d.name, d.body.fields)
        self.emit(f"    kind={d.kind!r},")
        self.emit(f"    api_key={None if d.kind == 'data' else d.api_key},")
        self.emit(f"    valid={_versions_src(d.valid)},")
        self.emit(f"    flexible={_versions_src(d.flexible)},")
        if d.deprecated is not None:
            self.emit(f"    deprecated={_versions_src(d.deprecated)},")
        if d.latest_version_unstable:
            self.emit("    latest_version_unstable=True,")
        if d.listeners:
            self.emit(f"    listeners={d.listeners!r},")
        self.emit(")")

    # -- registry -----------------------------------------------------------------------------

    def render_registry(self) -> None:
        emit = self.emit
        emit("MESSAGES: tuple[M, ...] = (")
        for d in self.defs:
            emit(f"    {self.spec_name(d)},")
        emit(")")
        requests = [d for d in self.defs if d.kind == "request"]
        records = sorted(
            (d for d in self.defs if d.kind == "metadata"), key=lambda d: d.api_key or 0
        )
        emit()
        emit()
        emit("class ApiKey(IntEnum):")
        emit('    """Kafka API keys."""')
        emit()
        for d in requests:
            emit(f"    {_upper_snake(d.name[:-7])} = {d.api_key}")
        emit()
        emit()
        emit("class MetadataRecordType(IntEnum):")
        emit('    """KRaft metadata record types (the api keys of metadata records)."""')
        emit()
        for d in records:
            emit(f"    {_upper_snake(d.name)} = {d.api_key}")
        emit()
        emit()
        emit("API_KEYS: dict[int, ApiInfo] = {")
        for d in requests:
            assert d.valid.hi is not None
            resp = d.name[:-7] + "Response"
            emit(f"    {d.api_key}: ApiInfo(")
            emit(
                f"        {d.name[:-7]!r}, {d.api_key}, {d.name}, {resp}, "
                f"{d.valid.lo}, {d.valid.hi},"
            )
            emit(
                f"        {_versions_src(d.flexible)}, {_versions_src(d.deprecated)}, "
                f"{d.latest_version_unstable}, {d.listeners!r},"
            )
            emit("    ),")
        emit("}")
        emit()
        emit("METADATA_RECORDS: dict[int, MetadataRecordInfo] = {")
        for d in records:
            assert d.valid.hi is not None
            emit(
                f"    {d.api_key}: MetadataRecordInfo({d.name!r}, {d.api_key}, {d.name}, "
                f"{d.valid.lo}, {d.valid.hi}),"
            )
        emit("}")


def generate(defs_dir: Path) -> str:
    """Return the source of ``_generated.py`` for the definitions in ``defs_dir``."""
    return _Renderer(load_definitions(defs_dir)).render()


def _iter_lines(a: str, b: str) -> Iterator[str]:
    import difflib

    yield from difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True), "committed", "generated", n=1
    )


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kraft.net.protocol.generator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--defs",
        type=Path,
        default=None,
        help=f"definitions directory (default: ${DEFS_ENV} or net/protocol/kafka-protocol)",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="output file")
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the output file is not up to date",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    defs_dir: Path = args.defs or default_defs_dir()
    if not defs_dir.is_dir():
        print(f"definitions directory not found: {defs_dir}", file=sys.stderr)
        return 2
    try:
        source = generate(defs_dir)
    except DefinitionError as e:
        print(f"bad definitions: {e}", file=sys.stderr)
        return 2
    output: Path = args.output
    current = output.read_text(encoding="utf-8") if output.exists() else ""
    if args.check:
        if current != source:
            sys.stderr.writelines(list(_iter_lines(current, source))[:40])
            print(
                f"\n{output} is out of date: run python -m kraft.net.protocol.generator",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != source:
        output.write_text(source, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
