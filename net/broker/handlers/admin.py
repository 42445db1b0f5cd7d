"""Admin requests that change or read metadata: topics, partitions and configs.

Changes go through the controller (records committed, then applied); the response is sent
once they are.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kraft.controller.controller import Result, TopicSpec
from kraft.controller.topic_configs import BROKER_SYNONYMS, broker_topic_defaults
from kraft.metadata.image import BROKER_RESOURCE, TOPIC_RESOURCE, MetadataImage
from kraft.metadata.publisher import MetadataCommitTimeout, NotController
from kraft.net.protocol import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    ElectLeadersRequest,
    ElectLeadersResponse,
    ErrorCode,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    RequestHeader,
)
from kraft.net.server import Connection

if TYPE_CHECKING:
    from kraft.net.broker.broker import Broker

logger = logging.getLogger(__name__)
T = TypeVar("T")

DYNAMIC_TOPIC_CONFIG = 1
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
_LIST_CONFIGS = {"cleanup.policy"}
# DescribeConfigs v3 config_type: 1 bool, 2 string, 3 int, 5 long, 6 double, 7 list.
_CONFIG_TYPES = {
    "cleanup.policy": 7,
    "compression.type": 2,
    "message.timestamp.type": 2,
    "unclean.leader.election.enable": 1,
    "min.cleanable.dirty.ratio": 6,
    "min.insync.replicas": 3,
    "max.message.bytes": 3,
    "segment.bytes": 3,
    "index.interval.bytes": 3,
}


async def handle_create_topics(
    broker: Broker, header: RequestHeader, request: CreateTopicsRequest, conn: Connection
) -> CreateTopicsResponse:
    specs = [
        TopicSpec(
            name=t.name,
            num_partitions=t.num_partitions,
            replication_factor=t.replication_factor,
            assignments={a.partition_index: list(a.broker_ids) for a in t.assignments},
            configs={c.name: c.value for c in t.configs if c.value is not None},
        )
        for t in request.topics
    ]
    code, results = await submit(
        broker, broker.controller.create_topics(specs, request.validate_only)
    )
    if code:
        return CreateTopicsResponse(
            topics=[
                CreateTopicsResponse.CreatableTopicResult(name=t.name, error_code=code)
                for t in request.topics
            ]
        )
    defaults = _topic_defaults(broker)
    out = []
    for r in results:
        if r.error_code:
            logger.info("%screate topic %s refused: %s", broker.tag, r.name, r.error_message)
        else:
            logger.info(
                "%s%s topic %s (%d partitions, replication factor %d)",
                broker.tag,
                "validated" if request.validate_only else "created",
                r.name,
                r.num_partitions,
                r.replication_factor,
            )
        configs = None
        if r.error_code == 0:
            configs = [
                CreateTopicsResponse.CreatableTopicConfigs(
                    name=key,
                    value=r.configs.get(key, value),
                    config_source=DYNAMIC_TOPIC_CONFIG if key in r.configs else DEFAULT_CONFIG,
                )
                for key, value in sorted(defaults.items())
            ]
        out.append(
            CreateTopicsResponse.CreatableTopicResult(
                name=r.name,
                topic_id=r.topic_id,
                error_code=r.error_code,
                error_message=r.error_message,
                num_partitions=r.num_partitions,
                replication_factor=r.replication_factor,
                configs=configs,
            )
        )
    return CreateTopicsResponse(topics=out)


async def handle_delete_topics(
    broker: Broker, header: RequestHeader, request: DeleteTopicsRequest, conn: Connection
) -> DeleteTopicsResponse:
    if not broker.config.delete_topic_enable:
        names = request.topic_names or [t.name or "" for t in request.topics]
        return DeleteTopicsResponse(
            responses=[
                DeleteTopicsResponse.DeletableTopicResult(
                    name=n, error_code=ErrorCode.TOPIC_DELETION_DISABLED
                )
                for n in names
            ]
        )
    if header.api_version >= 6:
        names = [t.name for t in request.topics if t.name is not None]
        ids = [t.topic_id for t in request.topics if t.name is None]
    else:
        names, ids = list(request.topic_names), []
    code, results = await submit(broker, broker.controller.delete_topics(names, ids))
    if code:
        results = [(name, uuid.UUID(int=0), code, None) for name in names] + [
            (None, topic_id, code, None) for topic_id in ids
        ]
    for name, _, code, _ in results:
        if code == 0:
            logger.info("%sdeleted topic %s", broker.tag, name)
    return DeleteTopicsResponse(
        responses=[
            DeleteTopicsResponse.DeletableTopicResult(
                name=name, topic_id=topic_id, error_code=code, error_message=message
            )
            for name, topic_id, code, message in results
        ]
    )


async def handle_create_partitions(
    broker: Broker, header: RequestHeader, request: CreatePartitionsRequest, conn: Connection
) -> CreatePartitionsResponse:
    results = []
    seen: set[str] = set()
    for topic in request.topics:
        if topic.name in seen:
            results.append(
                CreatePartitionsResponse.CreatePartitionsTopicResult(
                    name=topic.name,
                    error_code=ErrorCode.INVALID_REQUEST,
                    error_message="topic listed twice",
                )
            )
            continue
        seen.add(topic.name)
        assignments = [list(a.broker_ids) for a in topic.assignments] if topic.assignments else None
        code, outcome = await submit(
            broker,
            broker.controller.create_partitions(
                topic.name, topic.count, assignments, request.validate_only
            ),
        )
        message = None
        if not code:
            code, message = outcome
        results.append(
            CreatePartitionsResponse.CreatePartitionsTopicResult(
                name=topic.name, error_code=code, error_message=message
            )
        )
    return CreatePartitionsResponse(results=results)


async def handle_elect_leaders(
    broker: Broker, header: RequestHeader, request: ElectLeadersRequest, conn: Connection
) -> ElectLeadersResponse:
    """ElectLeaders (KIP-460): PREFERRED or UNCLEAN elections, through the controller."""
    election_type = request.election_type if header.api_version >= 1 else 0
    partitions = (
        None
        if request.topic_partitions is None
        else {t.topic: list(t.partitions) for t in request.topic_partitions}
    )
    code, results = await submit(broker, broker.controller.elect_leaders(election_type, partitions))
    if code:
        return ElectLeadersResponse(
            error_code=code,
            replica_election_results=[
                ElectLeadersResponse.ReplicaElectionResult(
                    topic=topic,
                    partition_result=[
                        ElectLeadersResponse.PartitionResult(partition_id=p, error_code=code)
                        for p in indexes
                    ],
                )
                for topic, indexes in (partitions or {}).items()
            ],
        )
    for topic, outcomes in results.items():
        for index, error, _ in outcomes:
            if error == 0:
                logger.info(
                    "%selected a leader for %s-%d (%s)",
                    broker.tag,
                    topic,
                    index,
                    "unclean" if election_type == 1 else "preferred",
                )
    return ElectLeadersResponse(
        replica_election_results=[
            ElectLeadersResponse.ReplicaElectionResult(
                topic=topic,
                partition_result=[
                    ElectLeadersResponse.PartitionResult(
                        partition_id=index, error_code=error, error_message=message
                    )
                    for index, error, message in outcomes
                ],
            )
            for topic, outcomes in results.items()
        ]
    )


async def submit(broker: Any, command: Callable[[MetadataImage], Result[T]]) -> tuple[int, Any]:
    """Run a controller command: (0, response), or (error code, None) when this node cannot
    commit it (not the active controller: NOT_CONTROLLER, the client retries elsewhere; no
    quorum in time: REQUEST_TIMED_OUT)."""
    try:
        return 0, await broker.controller.run(command)
    except NotController:
        return ErrorCode.NOT_CONTROLLER, None
    except MetadataCommitTimeout:
        return ErrorCode.REQUEST_TIMED_OUT, None


# ----------------------------------------------------------------------- configs


def _topic_defaults(broker: Broker) -> dict[str, str]:
    cfg = broker.config
    return broker_topic_defaults(
        cfg.log_config, cfg.min_insync_replicas, cfg.unclean_leader_election_enable
    )


def _broker_configs(broker: Broker) -> dict[str, str]:
    cfg = broker.config
    out = {
        "node.id": str(cfg.node_id),
        "broker.id": str(cfg.node_id),
        "process.roles": ",".join(cfg.process_roles),
        "listeners": ",".join(str(e) for e in cfg.listeners),
        "advertised.listeners": ",".join(str(e) for e in cfg.advertised_listeners),
        "log.dirs": ",".join(cfg.log_dirs),
        "num.partitions": str(cfg.num_partitions),
        "default.replication.factor": str(cfg.default_replication_factor),
        "auto.create.topics.enable": str(cfg.auto_create_topics_enable).lower(),
        "delete.topic.enable": str(cfg.delete_topic_enable).lower(),
        "broker.session.timeout.ms": str(cfg.broker_session_timeout_ms),
        "socket.request.max.bytes": str(cfg.socket_request_max_bytes),
    }
    for topic_key, value in _topic_defaults(broker).items():
        out[BROKER_SYNONYMS.get(topic_key, "log." + topic_key)] = value
    if cfg.broker_rack:
        out["broker.rack"] = cfg.broker_rack
    return out


async def handle_describe_configs(
    broker: Broker, header: RequestHeader, request: DescribeConfigsRequest, conn: Connection
) -> DescribeConfigsResponse:
    results = []
    Entry = DescribeConfigsResponse.DescribeConfigsResourceResult
    Synonym = DescribeConfigsResponse.DescribeConfigsSynonym
    for resource in request.resources:
        keys = set(resource.configuration_keys) if resource.configuration_keys else None
        entries: list[DescribeConfigsResponse.DescribeConfigsResourceResult] = []
        code, message = 0, None
        if resource.resource_type == TOPIC_RESOURCE:
            if resource.resource_name not in broker.image.topics:
                code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "unknown topic"
            else:
                overrides = broker.image.topic_config(resource.resource_name)
                for key, default in sorted(_topic_defaults(broker).items()):
                    if keys is not None and key not in keys:
                        continue
                    dynamic = key in overrides
                    synonyms = []
                    if request.include_synonyms:
                        if dynamic:
                            synonyms.append(
                                Synonym(name=key, value=overrides[key], source=DYNAMIC_TOPIC_CONFIG)
                            )
                        synonyms.append(
                            Synonym(
                                name=BROKER_SYNONYMS.get(key, "log." + key),
                                value=default,
                                source=DEFAULT_CONFIG,
                            )
                        )
                    entries.append(
                        Entry(
                            name=key,
                            value=overrides.get(key, default),
                            read_only=False,
                            is_default=not dynamic,
                            config_source=DYNAMIC_TOPIC_CONFIG if dynamic else DEFAULT_CONFIG,
                            synonyms=synonyms,
                            config_type=_CONFIG_TYPES.get(key, 5),
                            documentation=None,
                        )
                    )
        elif resource.resource_type == BROKER_RESOURCE:
            if resource.resource_name not in ("", str(broker.node_id)):
                code, message = ErrorCode.INVALID_REQUEST, "configs of other brokers live there"
            else:
                for key, value in sorted(_broker_configs(broker).items()):
                    if keys is None or key in keys:
                        entries.append(
                            Entry(
                                name=key,
                                value=value,
                                read_only=True,
                                config_source=STATIC_BROKER_CONFIG,
                                config_type=2,
                                documentation=None,
                            )
                        )
        else:
            code = ErrorCode.INVALID_REQUEST
            message = f"resource type {resource.resource_type} has no configs here"
        results.append(
            DescribeConfigsResponse.DescribeConfigsResult(
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=entries,
            )
        )
    return DescribeConfigsResponse(results=results)


async def _alter(
    broker: Broker,
    resource_type: int,
    name: str,
    changes: dict[str, str | None],
    incremental: bool,
    validate_only: bool,
) -> tuple[int, str | None]:
    if resource_type == BROKER_RESOURCE:
        return ErrorCode.INVALID_REQUEST, "dynamic broker configs are not supported"
    if resource_type != TOPIC_RESOURCE:
        return ErrorCode.INVALID_REQUEST, f"resource type {resource_type} cannot be altered"
    code, outcome = await submit(
        broker, broker.controller.alter_topic_configs(name, changes, incremental, validate_only)
    )
    if code:
        return code, None
    code, message = outcome
    if code == 0 and not validate_only:
        logger.info("%saltered configs of topic %s: %s", broker.tag, name, changes)
    return code, message


async def handle_alter_configs(
    broker: Broker, header: RequestHeader, request: AlterConfigsRequest, conn: Connection
) -> AlterConfigsResponse:
    responses = []
    for res in request.resources:
        changes: dict[str, str | None] = {c.name: c.value for c in res.configs}
        code, message = await _alter(
            broker, res.resource_type, res.resource_name, changes, False, request.validate_only
        )
        responses.append(
            AlterConfigsResponse.AlterConfigsResourceResponse(
                error_code=code,
                error_message=message,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
            )
        )
    return AlterConfigsResponse(responses=responses)


async def handle_incremental_alter_configs(
    broker: Broker,
    header: RequestHeader,
    request: IncrementalAlterConfigsRequest,
    conn: Connection,
) -> IncrementalAlterConfigsResponse:
    responses = []
    for res in request.resources:
        code, message = 0, None
        changes: dict[str, str | None] = {}
        current = (
            broker.image.topic_config(res.resource_name)
            if res.resource_type == TOPIC_RESOURCE
            else {}
        )
        defaults = _topic_defaults(broker)
        for c in res.configs:
            op = c.config_operation
            if op == 0:  # SET
                changes[c.name] = c.value
            elif op == 1:  # DELETE
                changes[c.name] = None
            elif op in (2, 3) and c.name in _LIST_CONFIGS:  # APPEND, SUBTRACT
                base = current.get(c.name, defaults.get(c.name, ""))
                items = [x for x in base.split(",") if x]
                values = [x for x in (c.value or "").split(",") if x]
                if op == 2:
                    items += [v for v in values if v not in items]
                else:
                    items = [x for x in items if x not in values]
                changes[c.name] = ",".join(items)
            else:
                code = ErrorCode.INVALID_CONFIG
                message = f"operation {op} is not valid for config {c.name}"
                break
        if code == 0:
            code, message = await _alter(
                broker, res.resource_type, res.resource_name, changes, True, request.validate_only
            )
        responses.append(
            IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
                error_code=code,
                error_message=message,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
            )
        )
    return IncrementalAlterConfigsResponse(responses=responses)
