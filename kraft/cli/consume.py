"""`kraft consume`: print a topic's records and follow new ones, like
kafka-console-consumer.sh.

It fetches from the partition leaders itself (no group membership). With `--group` it starts
from the group's committed offsets and commits its position after each batch it prints, as an
admin commit: the group must have no active members. It stops at `--max-messages`, after
`--timeout-ms` without a new record, or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from kraft.log.batch import HEADER_SIZE, LOG_OVERHEAD, parse_header
from kraft.log.errors import CorruptRecordError
from kraft.log.records import AbsoluteRecord, decode_absolute
from kraft.net.protocol import ErrorCode, FetchRequest, FetchResponse

from .group_requests import commit_offsets, committed_offsets, find_coordinator
from .kafka_admin import EARLIEST, LATEST, KafkaAdmin, Unreachable, check, list_offsets
from .output import UsageError, add_connection_options, run

_MAX_WAIT_MS = 500
_RETRY_BACKOFF_S = 0.1
_PARTITION_MAX_BYTES = 1 << 20
_REFRESH = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_LEADER_EPOCH,
}


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("consume", help="print and follow a topic")
    add_connection_options(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--partition", type=int, help="only this partition")
    p.add_argument(
        "--offset", default=None, help="start offset of --partition: N, earliest or latest"
    )
    p.add_argument("--max-messages", type=int, help="stop after this many records")
    p.add_argument("--group", help="start from and commit to this group's offsets")
    p.add_argument("--timeout-ms", type=int, help="stop after this long without a record")
    p.add_argument(
        "--format",
        help="record template: {topic} {partition} {offset} {timestamp} {key} {value} {headers}",
    )
    p.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="print.key, print.timestamp, print.headers, print.partition, "
        "print.offset, key.separator, null.literal (as kafka-console-consumer)",
    )
    p.set_defaults(run=lambda args: run(args, _command))


def _text(data: bytes | None, null: str) -> str:
    return null if data is None else data.decode("utf-8", errors="backslashreplace")


class Formatter:
    def __init__(self, args: argparse.Namespace) -> None:
        props = {}
        for item in args.property:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--property {item!r}: expected KEY=VALUE")
            props[key.strip()] = value
        self.template = _unescape(args.format) if args.format else None
        self.json = args.json
        self.flags = {
            k: props.get(f"print.{k}", "false") == "true"
            for k in ("timestamp", "partition", "offset", "headers", "key")
        }
        self.separator = _unescape(props.get("key.separator", "\t"))
        self.null = props.get("null.literal", "null")

    def __call__(self, topic: str, partition: int, r: AbsoluteRecord) -> str:
        key = _text(r.record.key, self.null)
        value = _text(r.record.value, self.null)
        headers = {k: _text(v, self.null) for k, v in r.record.headers}
        if self.json:
            return orjson.dumps(
                {
                    "topic": topic,
                    "partition": partition,
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "key": key if r.record.key is not None else None,
                    "value": value if r.record.value is not None else None,
                    "headers": headers,
                }
            ).decode()
        header_text = ",".join(f"{k}:{v}" for k, v in headers.items()) or "NO_HEADERS"
        if self.template is not None:
            return self.template.format(
                topic=topic,
                partition=partition,
                offset=r.offset,
                timestamp=r.timestamp,
                key=key,
                value=value,
                headers=header_text,
            )
        parts = []
        if self.flags["timestamp"]:
            parts.append(f"CreateTime:{r.timestamp}")
        if self.flags["partition"]:
            parts.append(f"Partition:{partition}")
        if self.flags["offset"]:
            parts.append(f"Offset:{r.offset}")
        if self.flags["headers"]:
            parts.append(header_text)
        if self.flags["key"]:
            parts.append(key)
        parts.append(value)
        return self.separator.join(parts)


def _unescape(text: str) -> str:
    return text.replace("\\t", "\t").replace("\\n", "\n")


def split_batches(data: bytes | bytearray | memoryview) -> list[AbsoluteRecord]:
    """The data records of a Fetch response's records (a trailing partial batch is left)."""
    buf = memoryview(data)
    out: list[AbsoluteRecord] = []
    pos = 0
    while pos + HEADER_SIZE <= len(buf):
        header = parse_header(buf, pos)
        end = pos + LOG_OVERHEAD + header.batch_length
        if end > len(buf):
            break
        if not header.is_control:
            out.extend(decode_absolute(bytes(buf[pos:end])))
        pos = end
    return out


async def _start_positions(
    admin: KafkaAdmin, args: argparse.Namespace, partitions: list[int]
) -> dict[int, int]:
    topic = args.topic
    if args.offset is not None:
        if args.partition is None:
            raise UsageError("--offset needs --partition")
        if args.offset in ("earliest", "latest"):
            at = EARLIEST if args.offset == "earliest" else LATEST
            return await list_offsets(admin, topic, partitions, at)
        try:
            return {args.partition: int(args.offset)}
        except ValueError as e:
            raise UsageError(f"--offset {args.offset!r}: expected N, earliest or latest") from e
    default = await list_offsets(
        admin, topic, partitions, EARLIEST if args.from_beginning else LATEST
    )
    if args.group:
        coordinator = await find_coordinator(admin, args.group)
        committed = await committed_offsets(admin, args.group, coordinator)
        default.update({p: o for (t, p), o in committed.items() if t == topic and p in default})
    return default


async def _command(admin: KafkaAdmin, args: argparse.Namespace) -> int:
    fmt = Formatter(args)
    topic = args.topic
    leaders = await admin.leaders(topic)
    if args.partition is not None and args.partition not in leaders:
        raise UsageError(f"topic {topic!r} has no partition {args.partition}")
    partitions = sorted(leaders) if args.partition is None else [args.partition]
    positions = await _start_positions(admin, args, partitions)
    loop = asyncio.get_running_loop()
    idle_deadline = None if args.timeout_ms is None else loop.time() + args.timeout_ms / 1000
    printed = 0
    coordinator = await find_coordinator(admin, args.group) if args.group else None
    while args.max_messages is None or printed < args.max_messages:
        if idle_deadline is not None and loop.time() >= idle_deadline:
            break
        by_leader: dict[int, list[int]] = {}
        for p in partitions:
            by_leader.setdefault(leaders.get(p, -1), []).append(p)
        results = await asyncio.gather(
            *(
                _fetch(admin, topic, leader, {p: positions[p] for p in parts})
                for leader, parts in by_leader.items()
                if leader >= 0
            )
        )
        refresh = -1 in by_leader
        got = 0
        for result in results:
            for partition, (code, records) in result.items():
                if code in _REFRESH:
                    refresh = True
                    continue
                if code == ErrorCode.OFFSET_OUT_OF_RANGE:
                    positions.update(await list_offsets(admin, topic, [partition], EARLIEST))
                    continue
                check(code, f"fetch from {topic}-{partition}")
                for r in records:
                    if r.offset < positions[partition]:
                        continue  # a compressed batch starts before the position
                    if args.max_messages is not None and printed >= args.max_messages:
                        break
                    sys.stdout.write(fmt(topic, partition, r) + "\n")
                    printed += 1
                    got += 1
                    positions[partition] = r.offset + 1
                if records:
                    positions[partition] = max(positions[partition], records[-1].offset + 1)
        if got:
            sys.stdout.flush()
            if idle_deadline is not None:
                idle_deadline = loop.time() + args.timeout_ms / 1000
            if coordinator is not None:
                await commit_offsets(
                    admin, args.group, coordinator, {(topic, p): o for p, o in positions.items()}
                )
        if refresh:
            if not got:
                await asyncio.sleep(_RETRY_BACKOFF_S)  # retry.backoff.ms while leaders move
            leaders = await admin.leaders(topic)
    if not args.json:
        print(f"Processed a total of {printed} messages", file=sys.stderr)
    return 0


async def _fetch(
    admin: KafkaAdmin, topic: str, leader: int, offsets: dict[int, int]
) -> dict[int, tuple[int, list[AbsoluteRecord]]]:
    request = FetchRequest(
        replica_id=-1,
        max_wait_ms=_MAX_WAIT_MS,
        min_bytes=1,
        max_bytes=16 * _PARTITION_MAX_BYTES,
        session_id=0,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=p, fetch_offset=o, partition_max_bytes=_PARTITION_MAX_BYTES
                    )
                    for p, o in offsets.items()
                ],
            )
        ],
    )
    try:
        # v13+ names topics by id; v4 is the oldest Kafka 4 serves.
        response = await admin.call(leader, request, FetchResponse, max_version=12, min_version=4)
    except Unreachable:
        # A leader that died: ask the metadata for its successor.
        return {p: (ErrorCode.NOT_LEADER_OR_FOLLOWER, []) for p in offsets}
    check(response.error_code, f"fetch from {topic}")
    out: dict[int, tuple[int, list[AbsoluteRecord]]] = {}
    for t in response.responses:
        for p in t.partitions:
            try:
                records = split_batches(p.records) if p.records else []
            except CorruptRecordError:
                records = []
            out[p.partition_index] = (p.error_code, records)
    return out
