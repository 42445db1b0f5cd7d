"""`kraft produce`: records from stdin lines, like kafka-console-producer.sh.

One record per line; with `--property parse.key=true` the key is the text before the first
`key.separator` (a tab by default). Keyed records go to the partition Kafka's default
partitioner picks (murmur2 of the key), so a Java or librdkafka consumer sees the same
placement; unkeyed records fill one partition per batch, round robin.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from kraft.log.records import Record, build_batch
from kraft.net.protocol import ErrorCode, ProduceRequest, ProduceResponse

from .kafka_admin import KafkaAdmin, Unreachable, check, send_without_response
from .output import UsageError, add_connection_options, run

ACKS = {"all": -1, "-1": -1, "1": 1, "0": 0}
_RETRY_BACKOFF_S = 0.1
_LEADER_MOVED = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_LEADER_EPOCH,
}
_BATCH_LINES = 500


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("produce", help="produce stdin lines to a topic")
    add_connection_options(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--partition", type=int, help="send every record to this partition")
    p.add_argument("--key-separator", help="separator of key and value (implies parse.key)")
    p.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="parse.key=true, key.separator=S (as kafka-console-producer)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="header added to every record (repeatable)",
    )
    p.add_argument("--acks", choices=sorted(ACKS), default="all")
    p.set_defaults(run=lambda args: run(args, _command))


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (the default partitioner's hash), as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _properties(items: list[str]) -> dict[str, str]:
    props = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--property {item!r}: expected KEY=VALUE")
        props[key.strip()] = value
    return props


def _lines(stream: BinaryIO, batch_lines: int) -> Iterator[list[bytes]]:
    """Batches of lines; one line at a time from a terminal, so what is typed is sent."""
    interactive = stream.isatty()
    batch: list[bytes] = []
    for raw in stream:
        batch.append(raw.rstrip(b"\r\n"))
        if interactive or len(batch) >= batch_lines:
            yield batch
            batch = []
    if batch:
        yield batch


async def _command(admin: KafkaAdmin, args: argparse.Namespace) -> int:
    props = _properties(args.property)
    separator = (args.key_separator or props.get("key.separator", "\t")).encode()
    parse_key = args.key_separator is not None or props.get("parse.key", "false") == "true"
    headers = []
    for item in args.header:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--header {item!r}: expected KEY=VALUE")
        headers.append((name, text.encode()))
    acks = ACKS[args.acks]
    leaders = await admin.leaders(args.topic)
    if args.partition is not None and args.partition not in leaders:
        raise UsageError(f"topic {args.topic!r} has no partition {args.partition}")
    produced: dict[int, int] = {}
    next_partition = 0
    line_number = 0
    for lines in _lines(sys.stdin.buffer, _BATCH_LINES):
        per_partition: dict[int, list[Record]] = {}
        for line in lines:
            line_number += 1
            key: bytes | None = None
            value = line
            if parse_key:
                key, sep, value = line.partition(separator)
                if not sep:
                    raise UsageError(f"line {line_number}: no key separator {separator!r}")
            if args.partition is not None:
                partition = args.partition
            elif key is not None:
                partition = partition_for_key(key, len(leaders))
            else:
                partition = next_partition % len(leaders)
            records = per_partition.setdefault(partition, [])
            records.append(Record(len(records), 0, key, value, tuple(headers)))
        next_partition += 1
        await produce_batches(admin, args.topic, leaders, per_partition, acks)
        for partition, records in per_partition.items():
            produced[partition] = produced.get(partition, 0) + len(records)
    if args.json:
        sys.stdout.write(
            orjson.dumps(
                {"topic": args.topic, "records": sum(produced.values()), "partitions": produced},
                option=orjson.OPT_NON_STR_KEYS,
            ).decode()
            + "\n"
        )
    return 0


async def produce_batches(
    admin: KafkaAdmin,
    topic: str,
    leaders: dict[int, int],
    per_partition: dict[int, list[Record]],
    acks: int,
) -> None:
    """Send each partition's records to its leader; partitions whose leader moved (or has
    none yet) are sent again to the new one, within the admin's timeout. `leaders` is
    updated in place."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + admin.timeout
    batches = {p: build_batch(records) for p, records in per_partition.items()}
    while True:
        retry = await _send(admin, topic, leaders, batches, acks)
        if not retry:
            return
        if loop.time() >= deadline:
            code, partition = next(iter(retry.items()))
            check(code, f"produce to {topic}-{partition}")
        await asyncio.sleep(_RETRY_BACKOFF_S)  # retry.backoff.ms, not a wait for an event
        leaders.update(await admin.leaders(topic))
        batches = {p: batches[p] for p in retry}


async def _send(
    admin: KafkaAdmin, topic: str, leaders: dict[int, int], batches: dict[int, bytes], acks: int
) -> dict[int, int]:
    """One round of Produce requests; partition -> retriable error code of those to resend."""
    retry: dict[int, int] = {}
    by_leader: dict[int, list[ProduceRequest.PartitionProduceData]] = {}
    for partition, batch in batches.items():
        leader = leaders[partition]
        if leader < 0:
            retry[partition] = ErrorCode.LEADER_NOT_AVAILABLE
            continue
        by_leader.setdefault(leader, []).append(
            ProduceRequest.PartitionProduceData(index=partition, records=batch)
        )
    for leader, data in by_leader.items():
        request = ProduceRequest(
            acks=acks,
            timeout_ms=int(admin.timeout * 1000),
            topic_data=[ProduceRequest.TopicProduceData(name=topic, partition_data=data)],
        )
        if acks == 0:
            await send_without_response(admin, leader, request)
            continue
        try:
            # v3 is the first with record batches (magic 2); v12+ may name topics by id.
            response = await admin.call(
                leader, request, ProduceResponse, max_version=11, min_version=3
            )
        except Unreachable:
            # A leader that died: the metadata names its successor soon (a request that timed
            # out may have been written, so a resend can duplicate: at least once, as a
            # non-idempotent Kafka producer).
            retry.update((d.index, ErrorCode.NOT_LEADER_OR_FOLLOWER) for d in data)
            continue
        for t in response.responses:
            for p in t.partition_responses:
                if p.error_code in _LEADER_MOVED:
                    retry[p.index] = p.error_code
                else:
                    check(p.error_code, f"produce to {t.name}-{p.index}", p.error_message)
    return retry
