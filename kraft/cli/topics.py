"""`kraft topics`: list, describe, create, delete and alter topics, like kafka-topics.sh."""

from __future__ import annotations

import argparse
from typing import Any

from kraft.net.protocol import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)

from .kafka_admin import KafkaAdmin, check
from .output import UsageError, add_connection_options, print_json, run, table

TOPIC_RESOURCE = 2
SET, DELETE = 0, 1
DYNAMIC_TOPIC_CONFIG = 1


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "topics", help="list, describe, create, delete and alter topics (Kafka protocol)"
    )
    add_connection_options(p)
    action = p.add_mutually_exclusive_group(required=True)
    for name in ("list", "describe", "create", "delete", "alter"):
        action.add_argument(f"--{name}", dest="action", action="store_const", const=name)
    p.add_argument("--topic", help="topic name")
    p.add_argument("--partitions", type=int, help="number of partitions (create, alter)")
    p.add_argument("--replication-factor", type=int, help="replicas per partition (create)")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="topic config (create, alter; repeatable)",
    )
    p.add_argument(
        "--delete-config",
        action="append",
        default=[],
        metavar="KEY",
        help="remove a topic config override (alter; repeatable)",
    )
    p.set_defaults(run=lambda args: run(args, _command))


def parse_configs(items: list[str]) -> dict[str, str]:
    configs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--config {item!r}: expected KEY=VALUE")
        configs[key.strip()] = value.strip()
    return configs


def _need_topic(args: argparse.Namespace) -> str:
    if not args.topic:
        raise UsageError(f"--{args.action} needs --topic")
    return str(args.topic)


async def _command(admin: KafkaAdmin, args: argparse.Namespace) -> int:
    if args.action == "list":
        names = sorted(t.name or "" for t in (await admin.metadata()).topics)
        if args.json:
            print_json(names)
        else:
            for name in names:
                print(name)
    elif args.action == "describe":
        described = await describe_topics(admin, [args.topic] if args.topic else None)
        if args.json:
            print_json(described)
        else:
            _print_described(described)
    elif args.action == "create":
        await create_topic(
            admin,
            _need_topic(args),
            args.partitions,
            args.replication_factor,
            parse_configs(args.config),
        )
        _done(args, {"topic": args.topic, "created": True}, f"Created topic {args.topic}.")
    elif args.action == "delete":
        await delete_topic(admin, _need_topic(args))
        _done(args, {"topic": args.topic, "deleted": True}, f"Deleted topic {args.topic}.")
    else:
        topic = _need_topic(args)
        configs = parse_configs(args.config)
        if args.partitions is None and not configs and not args.delete_config:
            raise UsageError("--alter needs --partitions, --config or --delete-config")
        await admin.topic_metadata([topic])  # an unknown topic is named as such
        if args.partitions is not None:
            await create_partitions(admin, topic, args.partitions)
        if configs or args.delete_config:
            await alter_configs(admin, topic, configs, args.delete_config)
        _done(args, {"topic": topic, "altered": True}, f"Altered topic {topic}.")
    return 0


def _done(args: argparse.Namespace, value: dict[str, Any], text: str) -> None:
    if args.json:
        print_json(value)
    else:
        print(text)


async def describe_topics(admin: KafkaAdmin, topics: list[str] | None) -> list[dict[str, Any]]:
    metadata = await (admin.topic_metadata(topics) if topics else admin.metadata())
    configs = await topic_configs(admin, [t.name or "" for t in metadata.topics])
    out = []
    for t in sorted(metadata.topics, key=lambda t: t.name or ""):
        partitions = sorted(t.partitions, key=lambda p: p.partition_index)
        out.append(
            {
                "name": t.name,
                "topic_id": str(t.topic_id),
                "internal": t.is_internal,
                "partition_count": len(partitions),
                "replication_factor": len(partitions[0].replica_nodes) if partitions else 0,
                "configs": configs.get(t.name or "", {}),
                "partitions": [
                    {
                        "partition": p.partition_index,
                        "leader": p.leader_id,
                        "leader_epoch": p.leader_epoch,
                        "replicas": list(p.replica_nodes),
                        "isr": list(p.isr_nodes),
                        "offline": list(p.offline_replicas),
                    }
                    for p in partitions
                ],
            }
        )
    return out


def _print_described(described: list[dict[str, Any]]) -> None:
    for i, t in enumerate(described):
        if i:
            print()
        configs = ",".join(f"{k}={v}" for k, v in sorted(t["configs"].items()))
        print(
            f"Topic: {t['name']}\tTopicId: {t['topic_id']}\tPartitionCount: "
            f"{t['partition_count']}\tReplicationFactor: {t['replication_factor']}\t"
            f"Configs: {configs}"
        )
        rows = [
            [
                p["partition"],
                p["leader"],
                ",".join(map(str, p["replicas"])),
                ",".join(map(str, p["isr"])),
            ]
            for p in t["partitions"]
        ]
        print(table(rows, ["PARTITION", "LEADER", "REPLICAS", "ISR"]))


async def topic_configs(admin: KafkaAdmin, topics: list[str]) -> dict[str, dict[str, str]]:
    """The topic-level overrides (dynamic topic configs) of each topic."""
    if not topics:
        return {}
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=TOPIC_RESOURCE, resource_name=name, configuration_keys=None
            )
            for name in topics
        ]
    )
    response = await admin.call(
        admin.any_broker(), request, DescribeConfigsResponse, max_version=4, min_version=1
    )
    out: dict[str, dict[str, str]] = {}
    for result in response.results:
        check(result.error_code, f"topic {result.resource_name!r}", result.error_message)
        out[result.resource_name] = {
            c.name: c.value or ""
            for c in result.configs
            if c.config_source == DYNAMIC_TOPIC_CONFIG and not c.is_sensitive
        }
    return out


async def create_topic(
    admin: KafkaAdmin,
    topic: str,
    partitions: int | None,
    replication_factor: int | None,
    configs: dict[str, str],
) -> None:
    request = CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(
                name=topic,
                num_partitions=-1 if partitions is None else partitions,
                replication_factor=-1 if replication_factor is None else replication_factor,
                configs=[
                    CreateTopicsRequest.CreatableTopicConfig(name=k, value=v)
                    for k, v in configs.items()
                ],
            )
        ],
        timeout_ms=int(admin.timeout * 1000),
    )
    # v4+ lets the broker pick defaults for -1 partitions / replication factor (KIP-464).
    response = await admin.call(admin.controller(), request, CreateTopicsResponse, min_version=4)
    for result in response.topics:
        check(result.error_code, f"topic {result.name!r}", result.error_message)


async def delete_topic(admin: KafkaAdmin, topic: str) -> None:
    await admin.topic_metadata([topic])
    conn = await admin.connection(admin.controller())
    request = DeleteTopicsRequest(timeout_ms=int(admin.timeout * 1000))
    if admin.version(conn, request, None) >= 6:
        request.topics = [DeleteTopicsRequest.DeleteTopicState(name=topic)]
    else:
        request.topic_names = [topic]
    response = await admin.call(admin.controller(), request, DeleteTopicsResponse)
    for result in response.responses:
        check(result.error_code, f"topic {result.name!r}", result.error_message)


async def create_partitions(admin: KafkaAdmin, topic: str, count: int) -> None:
    request = CreatePartitionsRequest(
        topics=[
            CreatePartitionsRequest.CreatePartitionsTopic(name=topic, count=count, assignments=None)
        ],
        timeout_ms=int(admin.timeout * 1000),
    )
    response = await admin.call(admin.controller(), request, CreatePartitionsResponse)
    for result in response.results:
        check(result.error_code, f"topic {result.name!r}", result.error_message)


async def alter_configs(
    admin: KafkaAdmin, topic: str, configs: dict[str, str], deletes: list[str]
) -> None:
    alterations = [
        IncrementalAlterConfigsRequest.AlterableConfig(name=k, config_operation=SET, value=v)
        for k, v in configs.items()
    ] + [
        IncrementalAlterConfigsRequest.AlterableConfig(name=k, config_operation=DELETE, value=None)
        for k in deletes
    ]
    request = IncrementalAlterConfigsRequest(
        resources=[
            IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=TOPIC_RESOURCE, resource_name=topic, configs=alterations
            )
        ]
    )
    response = await admin.call(admin.controller(), request, IncrementalAlterConfigsResponse)
    for result in response.responses:
        check(result.error_code, f"topic {result.resource_name!r}", result.error_message)
