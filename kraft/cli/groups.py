"""`kraft groups`: list, describe (members, assignment, committed offset, log end and lag per
partition), reset offsets and delete consumer groups, like kafka-consumer-groups.sh."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from kraft.net.protocol import ErrorCode

from .group_requests import (
    commit_offsets,
    committed_offsets,
    delete_group,
    describe_group,
    find_coordinator,
    list_groups,
)
from .kafka_admin import EARLIEST, LATEST, KafkaAdmin, KafkaError, NotFound, list_offsets
from .output import UsageError, add_connection_options, print_json, run, table

_INACTIVE = {"Empty", "Dead"}


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "groups", help="list, describe, reset offsets of and delete consumer groups"
    )
    add_connection_options(p)
    action = p.add_mutually_exclusive_group(required=True)
    for name in ("list", "describe", "reset-offsets", "delete"):
        action.add_argument(
            f"--{name}", dest="action", action="store_const", const=name.replace("-", "_")
        )
    p.add_argument("--group", help="group id")
    p.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC[:P,P...]",
        help="topic (and partitions) to reset (repeatable)",
    )
    p.add_argument("--all-topics", action="store_true", help="reset every committed topic")
    to = p.add_mutually_exclusive_group()
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-datetime", metavar="ISO8601", help="e.g. 2026-01-31T12:00:00Z")
    to.add_argument("--to-offset", type=int, metavar="N")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    mode.add_argument("--dry-run", action="store_true", help="only show them (default)")
    p.set_defaults(run=lambda args: run(args, _command))


def parse_datetime(text: str) -> int:
    """ms since the epoch of an ISO 8601 time (UTC when it names no zone)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise UsageError(f"--to-datetime {text!r}: not an ISO 8601 date-time") from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _need_group(args: argparse.Namespace) -> str:
    if not args.group:
        raise UsageError(f"--{args.action.replace('_', '-')} needs --group")
    return str(args.group)


async def _command(admin: KafkaAdmin, args: argparse.Namespace) -> int:
    if args.action == "list":
        groups = await list_groups(admin)
        if args.json:
            print_json(groups)
        else:
            rows = [[g["group"], g["state"], g["type"], g["protocol_type"]] for g in groups]
            print(table(rows, ["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"]))
        return 0
    group = _need_group(args)
    coordinator = await find_coordinator(admin, group)
    if args.action == "describe":
        described = await describe_with_lag(admin, group, coordinator)
        if args.json:
            print_json(described)
        else:
            _print_described(described)
    elif args.action == "delete":
        await delete_group(admin, group, coordinator)
        if args.json:
            print_json({"group": group, "deleted": True})
        else:
            print(f"Deleted group {group}.")
    else:
        await _reset(admin, args, group, coordinator)
    return 0


async def describe_with_lag(admin: KafkaAdmin, group: str, coordinator: int) -> dict[str, Any]:
    described = await describe_group(admin, group, coordinator)
    committed = await committed_offsets(admin, group, coordinator)
    owners = {tuple(tp): m for m in described["members"] for tp in m["assignment"]}
    keys = set(committed) | set(owners)
    ends: dict[str, dict[int, int]] = {}
    for topic in sorted({t for t, _ in keys}):
        ends[topic] = await list_offsets(admin, topic, None, LATEST)
    partitions = []
    for topic, partition in sorted(keys):
        offset = committed.get((topic, partition))
        end = ends[topic].get(partition)
        member = owners.get((topic, partition))
        partitions.append(
            {
                "topic": topic,
                "partition": partition,
                "committed_offset": offset,
                "log_end_offset": end,
                "lag": None if offset is None or end is None else max(0, end - offset),
                "member_id": member["member_id"] if member else None,
                "client_id": member["client_id"] if member else None,
                "host": member["host"] if member else None,
            }
        )
    described["members"] = [
        {**m, "assignment": [{"topic": t, "partition": p} for t, p in m["assignment"]]}
        for m in described["members"]
    ]
    described["partitions"] = partitions
    return described


def _print_described(d: dict[str, Any]) -> None:
    print(
        f"Group: {d['group']}  State: {d['state']}  Protocol: {d['protocol'] or '-'}  "
        f"Coordinator: {d['coordinator']}  Members: {len(d['members'])}"
    )
    print()
    rows = [
        [
            p["topic"],
            p["partition"],
            p["committed_offset"],
            p["log_end_offset"],
            p["lag"],
            p["member_id"],
            p["host"],
            p["client_id"],
        ]
        for p in d["partitions"]
    ]
    print(
        table(
            rows,
            [
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
            ],
        )
    )


def _parse_topic(item: str) -> tuple[str, list[int] | None]:
    topic, sep, parts = item.partition(":")
    if not sep:
        return topic, None
    try:
        return topic, [int(p) for p in parts.split(",") if p.strip()]
    except ValueError as e:
        raise UsageError(f"--topic {item!r}: expected TOPIC:PARTITION[,PARTITION...]") from e


async def _reset(admin: KafkaAdmin, args: argparse.Namespace, group: str, coordinator: int) -> None:
    if not (args.to_earliest or args.to_latest or args.to_datetime or args.to_offset is not None):
        raise UsageError(
            "--reset-offsets needs --to-earliest, --to-latest, --to-datetime or --to-offset"
        )
    if not args.topic and not args.all_topics:
        raise UsageError("--reset-offsets needs --topic or --all-topics")
    described = await describe_group_or_empty(admin, group, coordinator)
    committed = await committed_offsets(admin, group, coordinator)
    wanted = [_parse_topic(t) for t in args.topic]
    if args.all_topics:
        wanted += [(t, None) for t in sorted({t for t, _ in committed})]
    plan: dict[tuple[str, int], int] = {}
    for topic, partitions in wanted:
        earliest = await list_offsets(admin, topic, partitions, EARLIEST)
        latest = await list_offsets(admin, topic, partitions, LATEST)
        if args.to_earliest:
            targets = earliest
        elif args.to_latest:
            targets = latest
        elif args.to_datetime:
            at = await list_offsets(admin, topic, partitions, parse_datetime(args.to_datetime))
            # No record that recent: the end of the log, as Kafka's tool does.
            targets = {p: latest[p] if o < 0 else o for p, o in at.items()}
        else:
            # Kafka's tool clamps an out-of-range offset into the log.
            targets = {p: min(max(args.to_offset, earliest[p]), latest[p]) for p in latest}
        for partition, offset in targets.items():
            plan[(topic, partition)] = offset
    if args.execute:
        if described["state"] not in _INACTIVE:
            raise KafkaError(
                ErrorCode.NON_EMPTY_GROUP,
                f"group {group!r} is {described['state']}: offsets can only be reset while "
                "it has no active members",
            )
        await commit_offsets(admin, group, coordinator, plan)
    rows = [
        {"topic": t, "partition": p, "new_offset": o, "previous_offset": committed.get((t, p))}
        for (t, p), o in sorted(plan.items())
    ]
    if args.json:
        print_json({"group": group, "executed": bool(args.execute), "partitions": rows})
        return
    print(
        table(
            [
                [group, r["topic"], r["partition"], r["previous_offset"], r["new_offset"]]
                for r in rows
            ],
            ["GROUP", "TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"],
        )
    )
    if not args.execute:
        print("(dry run: add --execute to commit these offsets)")


async def describe_group_or_empty(
    admin: KafkaAdmin, group: str, coordinator: int
) -> dict[str, Any]:
    """A group not known yet can still be given offsets (Kafka's tool creates it)."""
    try:
        return await describe_group(admin, group, coordinator)
    except NotFound:
        return {"group": group, "state": "Dead", "members": []}
