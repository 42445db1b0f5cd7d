"""The CLI client's pure parts: Kafka's default partitioner hash, splitting a Fetch
response's records into batches, record formatting, option parsing and tables."""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from kraft.cli.consume import Formatter, split_batches
from kraft.cli.groups import parse_datetime
from kraft.cli.kafka_admin import parse_bootstrap
from kraft.cli.output import UsageError, table
from kraft.cli.produce import murmur2, partition_for_key
from kraft.cli.topics import parse_configs
from kraft.log.records import AbsoluteRecord, Record, build_batch


def test_murmur2_is_kafkas() -> None:
    rng = random.Random(11)
    for size in [*range(12), 100, 1000]:
        key = rng.randbytes(size)
        # kafka-python's value is the same 32 bits, not always as a signed int.
        assert murmur2(key) & 0xFFFFFFFF == kafka_python_murmur2(key) & 0xFFFFFFFF, key
    # Values from Kafka's UtilsTest (Java's signed ints).
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"abc") == 479470107
    assert partition_for_key(b"abc", 3) == (479470107 & 0x7FFFFFFF) % 3


def test_split_batches_skips_control_batches_and_a_trailing_partial_batch() -> None:
    first = build_batch(
        [Record(0, 0, b"k", b"a"), Record(1, 5, None, b"b")], base_offset=10, base_timestamp=1000
    )
    control = build_batch([Record(0, 0, b"\0\0\0\0", b"")], base_offset=12, is_control=True)
    third = build_batch([Record(0, 0, None, b"c")], base_offset=13, base_timestamp=2000)
    records = split_batches(first + control + third + third[:30])
    assert [(r.offset, r.timestamp, r.record.key, r.record.value) for r in records] == [
        (10, 1000, b"k", b"a"),
        (11, 1005, None, b"b"),
        (13, 2000, None, b"c"),
    ]
    assert split_batches(b"") == []


def _args(**kwargs: object) -> argparse.Namespace:
    defaults: dict[str, object] = {"property": [], "format": None, "json": False}
    return argparse.Namespace(**{**defaults, **kwargs})


def test_formatter_options_template_and_json() -> None:
    record = AbsoluteRecord(7, 1234, Record(0, 0, b"k", b"v\xff", (("h", b"1"), ("n", None))))
    assert Formatter(_args())("t", 0, record) == "v\\xff"
    props = ["print.key=true", "print.timestamp=true", "print.headers=true", "key.separator=|"]
    assert Formatter(_args(property=props))("t", 0, record) == "CreateTime:1234|h:1,n:null|k|v\\xff"
    template = Formatter(_args(format="{partition}:{offset}\\t{key}={value} {headers}"))
    assert template("t", 2, record) == "2:7\tk=v\\xff h:1,n:null"
    null = AbsoluteRecord(0, 0, Record(0, 0, None, None))
    assert Formatter(_args(json=True))("t", 1, null) == (
        '{"topic":"t","partition":1,"offset":0,"timestamp":0,"key":null,"value":null,"headers":{}}'
    )


def test_option_parsing() -> None:
    assert parse_bootstrap("a:1, [::1]:2") == [("a", 1), ("::1", 2)]
    with pytest.raises(ValueError):
        parse_bootstrap("nohost")
    assert parse_configs(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError):
        parse_configs(["novalue"])
    when = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_datetime("2026-01-31T12:00:00Z") == int(when.timestamp() * 1000)
    assert parse_datetime("2026-01-31T13:00:00+01:00") == int(when.timestamp() * 1000)
    assert parse_datetime("2026-01-31T12:00:00") == int(when.timestamp() * 1000)
    with pytest.raises(UsageError):
        parse_datetime("yesterday")


def test_table() -> None:
    assert table([[1, None, "long value"], [22, "x", ""]], ["A", "B", "C"]).splitlines() == [
        "A   B  C",
        "1   -  long value",
        "22  x",
    ]
