"""Admin requests on the broker: DescribeConfigs answered from this node's image and config;
the requests that change metadata are relayed to the active controller, which answers them
(`kraft.controller.admin_requests`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kraft.controller.admin_requests import DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG, topic_defaults
from kraft.controller.topic_configs import BROKER_SYNONYMS
from kraft.metadata.image import BROKER_RESOURCE, TOPIC_RESOURCE
from kraft.net.protocol import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    ErrorCode,
    Message,
    RequestHeader,
)
from kraft.net.server import Connection

if TYPE_CHECKING:
    from kraft.net.broker.broker import Broker

STATIC_BROKER_CONFIG = 4
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


async def handle_forwarded(
    broker: Broker, header: RequestHeader, request: Message, conn: Connection
) -> Message:
    """CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, IncrementalAlterConfigs and
    ElectLeaders change metadata: the active controller answers them
    (`kraft.controller.admin_requests`), this node's own when it is the active one."""
    return await broker.forward(request, header.api_version)


# ----------------------------------------------------------------------- configs


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
    for topic_key, value in topic_defaults(broker.config).items():
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
                for key, default in sorted(topic_defaults(broker.config).items()):
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
