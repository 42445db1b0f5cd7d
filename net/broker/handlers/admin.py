"""Admin requests on the broker: DescribeConfigs answered from this node's image and config;
the requests that change metadata are relayed to the active controller, which answers them
(`kraft.controller.admin_requests`).
"""

from __future__ import annotations

from kraft.controller.config_describe import (
    ConfigEntry,
    describe_broker_configs,
    describe_topic_configs,
)
from kraft.metadata.image import BROKER_RESOURCE, TOPIC_RESOURCE
from kraft.net.protocol import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    ErrorCode,
    Message,
    RequestHeader,
)
from kraft.net.server import Connection

from .context import AdminContext


async def handle_forwarded(
    ctx: AdminContext, header: RequestHeader, request: Message, conn: Connection
) -> Message:
    """CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, IncrementalAlterConfigs and
    ElectLeaders change metadata: the active controller answers them
    (`kraft.controller.admin_requests`), this node's own when it is the active one."""
    return await ctx.forward(request, header.api_version)


# ----------------------------------------------------------------------- configs


async def handle_describe_configs(
    ctx: AdminContext, header: RequestHeader, request: DescribeConfigsRequest, conn: Connection
) -> DescribeConfigsResponse:
    """Answered from this node's image and config (`kraft.controller.config_describe`)."""
    results = []
    for resource in request.resources:
        keys = set(resource.configuration_keys) if resource.configuration_keys else None
        described: list[ConfigEntry] | None = []
        code, message = 0, None
        if resource.resource_type == TOPIC_RESOURCE:
            described = describe_topic_configs(ctx.config, ctx.image, resource.resource_name, keys)
            if described is None:
                code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "unknown topic"
        elif resource.resource_type == BROKER_RESOURCE:
            if resource.resource_name not in ("", str(ctx.node_id)):
                code, message = ErrorCode.INVALID_REQUEST, "configs of other brokers live there"
            else:
                described = describe_broker_configs(ctx.config, keys, ctx.image)
        else:
            code = ErrorCode.INVALID_REQUEST
            message = f"resource type {resource.resource_type} has no configs here"
        results.append(
            DescribeConfigsResponse.DescribeConfigsResult(
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=[_entry(e, request.include_synonyms) for e in described or [] if not code],
            )
        )
    return DescribeConfigsResponse(results=results)


_SYNONYM = DescribeConfigsResponse.DescribeConfigsSynonym


def _entry(
    entry: ConfigEntry, include_synonyms: bool
) -> DescribeConfigsResponse.DescribeConfigsResourceResult:
    return DescribeConfigsResponse.DescribeConfigsResourceResult(
        name=entry.name,
        value=entry.value,
        read_only=entry.read_only,
        is_default=entry.is_default,
        config_source=entry.source,
        synonyms=[_SYNONYM(name=s.name, value=s.value, source=s.source) for s in entry.synonyms]
        if include_synonyms
        else [],
        config_type=entry.config_type,
        documentation=None,
    )
