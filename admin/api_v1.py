"""The `/v1` admin API: its routes, declared once, give both the aiohttp routes and the
OpenAPI 3.1 document at `/v1/openapi.json`.

A route names its method and path, its path and query parameters, its request body model
(pydantic, strict, unknown fields refused), its response type (a façade dataclass, whose JSON
schema pydantic derives) and the error statuses it may answer. Handlers only call the façade;
a Kafka error the façade reports maps to an HTTP status with the Kafka error name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kraft.admin.app_keys import API_KEY
from kraft.admin.replies import ApiError, json_response
from kraft.cluster_groups import GroupDetail, GroupList
from kraft.node_api import (
    BrokerInfo,
    ClusterOverview,
    GroupOffsetsReset,
    Health,
    NodeApi,
    PartitionRecords,
    QuorumInfo,
    TopicDescription,
    TopicInfo,
    WriteResult,
)

PREFIX = "/v1"
TOPIC_NAME = r"^[a-zA-Z0-9._-]{1,249}$"
NOT_FOUND = {
    "UNKNOWN_TOPIC_OR_PARTITION",
    "GROUP_ID_NOT_FOUND",
    "UNKNOWN_TOPIC_ID",
    "BROKER_ID_NOT_REGISTERED",
}
CONFLICT = {
    "TOPIC_ALREADY_EXISTS",
    "NON_EMPTY_GROUP",
    "UNKNOWN_MEMBER_ID",  # an admin commit to a group with members
    "ILLEGAL_GENERATION",
    "REBALANCE_IN_PROGRESS",
    "PREFERRED_LEADER_NOT_AVAILABLE",
    "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    "INELIGIBLE_REPLICA",  # a named replica out of the ISR, fenced, shutting down, in maintenance
}
UNAVAILABLE = {
    "NOT_CONTROLLER",
    "REQUEST_TIMED_OUT",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_OR_FOLLOWER",
    "BROKER_NOT_AVAILABLE",
}
FINE = {"ELECTION_NOT_NEEDED"}  # the preferred leader already leads: nothing to do


def http_status(error: str) -> int:
    """The HTTP status of a Kafka error name."""
    if error in NOT_FOUND:
        return 404
    if error in CONFLICT:
        return 409
    if error in UNAVAILABLE:
        return 503
    if error.isupper() and error.replace("_", "").isalnum():
        return 400  # INVALID_*, POLICY_VIOLATION, TOPIC_DELETION_DISABLED, ...
    return 503  # not a Kafka error: a broker did not answer (the façade says why)


def kafka_error(error: str, message: str | None) -> ApiError:
    status = http_status(error)
    name = error if status != 503 or error.isupper() else "BROKER_NOT_AVAILABLE"
    return ApiError(status, name, message or error)


# ------------------------------------------------------------------ request models


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


TopicName = Annotated[str, Field(pattern=TOPIC_NAME)]
ConfigKey = Annotated[str, Field(min_length=1, max_length=249)]


class CreateTopic(Strict):
    name: TopicName
    partitions: int = Field(-1, ge=-1, le=1000, description="-1: num.partitions")
    replication_factor: int = Field(-1, ge=-1, le=32, description="-1: the broker default")
    configs: dict[ConfigKey, str] = Field(default_factory=dict)
    validate_only: bool = False


class CreatePartitions(Strict):
    count: int = Field(ge=1, le=1000, description="the topic's partition count in all")


class AlterConfigs(Strict):
    set: dict[ConfigKey, str] = Field(default_factory=dict)
    delete: list[ConfigKey] = Field(default_factory=list)


class PartitionRef(Strict):
    topic: TopicName
    partition: int = Field(ge=0, le=2**31 - 1)


class ElectLeaders(Strict):
    partitions: list[PartitionRef] | None = Field(
        None, description="null: every partition whose preferred replica does not lead"
    )
    election: Literal["preferred", "unclean"] = "preferred"
    replica: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="a named replica to lead the one partition in `partitions` (a leadership "
        "transfer: the replica order stays, so a preferred election moves it back). It must "
        "be in the ISR, its broker registered, unfenced, not in controlled shutdown and not "
        "in maintenance (409 INELIGIBLE_REPLICA otherwise; 400 INVALID_REPLICA_ASSIGNMENT "
        "for a broker holding no replica)",
    )


class ResetOffsets(Strict):
    to: Literal["earliest", "latest", "timestamp", "offset"]
    topic: TopicName | None = Field(None, description="null: every partition the group committed")
    partitions: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = None
    timestamp: int | None = Field(None, ge=0, description="ms since the epoch (to=timestamp)")
    offset: int | None = Field(None, ge=0, description="clamped into [log start, log end]")


class RecordsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: int = Field(20, ge=1, le=1000)


class ErrorBody(BaseModel):
    error: str = Field(description="Kafka's error name, or a short HTTP code")
    message: str


# ------------------------------------------------------------------ routes


@dataclass(frozen=True, slots=True)
class Args:
    api: NodeApi
    path: dict[str, Any]
    query: Any
    body: Any


@dataclass(frozen=True, slots=True)
class Reply:
    body: Any
    status: int = 200


Handler = Callable[[Args], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: Any  # a type pydantic can describe
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_params: dict[str, type] = field(default_factory=dict)
    status: int = 200
    errors: tuple[int, ...] = ()
    tag: str = "cluster"
    write: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")


def _one(results: list[WriteResult]) -> WriteResult:
    r = results[0]
    if r.error is not None and r.error not in FINE:
        raise kafka_error(r.error, r.message)
    return r


def _checked(result: WriteResult) -> WriteResult:
    return _one([result])


async def _health(a: Args) -> Health:
    return a.api.health()


async def _ready(a: Args) -> Reply:
    health = a.api.health()
    return Reply(health, 200 if health.ready else 503)


async def _cluster(a: Args) -> ClusterOverview:
    return a.api.overview()


async def _brokers(a: Args) -> list[BrokerInfo]:
    return a.api.brokers()


async def _quorum(a: Args) -> QuorumInfo:
    quorum = a.api.quorum()
    if quorum is None:
        raise ApiError(404, "NOT_A_QUORUM_MEMBER", "this node is not a controller")
    return quorum


async def _topics(a: Args) -> list[TopicInfo]:
    return a.api.topics()


def _unknown_topic(name: str) -> ApiError:
    return ApiError(404, "UNKNOWN_TOPIC_OR_PARTITION", f"topic {name!r} does not exist")


async def _topic(a: Args) -> TopicDescription:
    described = a.api.describe_topic(a.path["topic"])
    if described is None:
        raise _unknown_topic(a.path["topic"])
    return described


async def _records(a: Args) -> Any:
    topic, partition = a.path["topic"], a.path["partition"]
    found = await a.api.records(topic, partition, a.query.limit)
    if found is None:
        raise ApiError(
            404, "UNKNOWN_TOPIC_OR_PARTITION", f"partition {topic}-{partition} does not exist"
        )
    if found.error is not None:
        raise kafka_error(found.error, f"reading {topic}-{partition}: {found.error}")
    return found


async def _groups(a: Args) -> GroupList:
    return await a.api.list_groups()


async def _group(a: Args) -> GroupDetail:
    group_id = a.path["group"]
    detail = await a.api.group(group_id)
    if detail is None:
        raise ApiError(404, "GROUP_ID_NOT_FOUND", f"group {group_id!r} does not exist")
    if detail.error is not None:
        raise kafka_error(detail.error, f"group {group_id!r}: {detail.error}")
    return detail


async def _create_topic(a: Args) -> Reply:
    b: CreateTopic = a.body
    result = await a.api.create_topic(
        b.name, b.partitions, b.replication_factor, b.configs, b.validate_only
    )
    return Reply(_checked(result), 201)


async def _delete_topic(a: Args) -> WriteResult:
    return _checked(await a.api.delete_topic(a.path["topic"]))


async def _create_partitions(a: Args) -> WriteResult:
    b: CreatePartitions = a.body
    return _checked(await a.api.create_partitions(a.path["topic"], b.count))


async def _alter_configs(a: Args) -> WriteResult:
    b: AlterConfigs = a.body
    if not b.set and not b.delete:
        raise ApiError(400, "INVALID_REQUEST", "body: nothing to set or delete")
    return _checked(await a.api.alter_topic_configs(a.path["topic"], b.set, b.delete))


async def _elect_leaders(a: Args) -> list[WriteResult]:
    b: ElectLeaders = a.body
    if b.replica is not None:
        if b.election != "preferred":
            raise ApiError(
                400, "INVALID_REQUEST", "body.replica: a named replica is not an unclean election"
            )
        if b.partitions is None or len(b.partitions) != 1:
            raise ApiError(
                400, "INVALID_REQUEST", "body.replica: needs exactly one partition in partitions"
            )
        (p,) = b.partitions
        return [_checked(await a.api.transfer_leadership(p.topic, p.partition, b.replica))]
    partitions = None if b.partitions is None else [(p.topic, p.partition) for p in b.partitions]
    results = await a.api.elect_leaders(partitions, b.election == "unclean")
    failed = [r for r in results if r.error is not None and r.error not in FINE]
    if results and len(failed) == len(results) and len({r.error for r in failed}) == 1:
        _one(failed)
    return results


async def _reset_offsets(a: Args) -> Any:
    b: ResetOffsets = a.body
    group_id = a.path["group"]
    if b.to == "timestamp" and b.timestamp is None:
        raise ApiError(400, "INVALID_REQUEST", "body.timestamp: required with to=timestamp")
    if b.to == "offset" and b.offset is None:
        raise ApiError(400, "INVALID_REQUEST", "body.offset: required with to=offset")
    if b.partitions is not None and b.topic is None:
        raise ApiError(400, "INVALID_REQUEST", "body.partitions: needs body.topic")
    result = await a.api.reset_group_offsets(
        group_id, b.to, b.topic, b.partitions, b.timestamp, b.offset
    )
    if result is None:
        raise ApiError(404, "GROUP_ID_NOT_FOUND", f"group {group_id!r} has no committed offsets")
    if result.error is not None:
        raise kafka_error(result.error, f"group {group_id!r}: {result.error}")
    return result


async def _delete_group(a: Args) -> WriteResult:
    return _checked(await a.api.delete_group(a.path["group"]))


async def _controlled_shutdown(a: Args) -> WriteResult:
    return _checked(await a.api.controlled_shutdown(a.path["broker"]))


async def _end_controlled_shutdown(a: Args) -> WriteResult:
    raise ApiError(
        400,
        "INVALID_REQUEST",
        f"broker {a.path['broker']}: a broker leaves controlled shutdown only by restarting "
        "(it registers again and is unfenced once caught up); Kafka has no request to undo it. "
        "To take a running broker out of leadership and back, use "
        f"PUT / DELETE /v1/brokers/{a.path['broker']}/maintenance",
    )


async def _enter_maintenance(a: Args) -> WriteResult:
    return _checked(await a.api.set_maintenance(a.path["broker"], True))


async def _exit_maintenance(a: Args) -> WriteResult:
    return _checked(await a.api.set_maintenance(a.path["broker"], False))


async def _openapi(a: Args) -> Any:
    return openapi()


T = str  # path parameter types
I = int  # noqa: E741
ROUTES: list[Route] = [
    Route("GET", "/health", _health, "Liveness: the process answers", Health, tag="health"),
    Route(
        "GET",
        "/ready",
        _ready,
        "Readiness: registered, unfenced, caught up with the metadata (503 otherwise)",
        Health,
        errors=(503,),
        tag="health",
    ),
    Route("GET", "/cluster", _cluster, "Cluster overview and health", ClusterOverview),
    Route("GET", "/brokers", _brokers, "Registered brokers", list[BrokerInfo]),
    Route(
        "GET", "/quorum", _quorum, "The metadata quorum", QuorumInfo, errors=(404,), tag="cluster"
    ),
    Route("GET", "/topics", _topics, "Topics", list[TopicInfo], tag="topics"),
    Route(
        "GET",
        "/topics/{topic}",
        _topic,
        "A topic with its partitions and configs",
        TopicDescription,
        path_params={"topic": T},
        errors=(404,),
        tag="topics",
    ),
    Route(
        "GET",
        "/topics/{topic}/partitions/{partition}/records",
        _records,
        "The latest records of a partition (read from its leader)",
        PartitionRecords,
        query=RecordsQuery,
        path_params={"topic": T, "partition": I},
        errors=(400, 404, 503),
        tag="topics",
    ),
    Route("GET", "/groups", _groups, "Consumer groups", GroupList, errors=(503,), tag="groups"),
    Route(
        "GET",
        "/groups/{group}",
        _group,
        "A group: members, assignment, committed offsets and lag",
        GroupDetail,
        path_params={"group": T},
        errors=(404, 503),
        tag="groups",
    ),
    Route(
        "POST",
        "/topics",
        _create_topic,
        "Create a topic",
        WriteResult,
        body=CreateTopic,
        status=201,
        errors=(400, 409, 503),
        tag="topics",
        write=True,
    ),
    Route(
        "DELETE",
        "/topics/{topic}",
        _delete_topic,
        "Delete a topic",
        WriteResult,
        path_params={"topic": T},
        errors=(400, 404, 503),
        tag="topics",
        write=True,
    ),
    Route(
        "POST",
        "/topics/{topic}/partitions",
        _create_partitions,
        "Grow a topic to `count` partitions",
        WriteResult,
        body=CreatePartitions,
        path_params={"topic": T},
        errors=(400, 404, 503),
        tag="topics",
        write=True,
    ),
    Route(
        "PATCH",
        "/topics/{topic}/configs",
        _alter_configs,
        "Set and delete a topic's config overrides (others stay)",
        WriteResult,
        body=AlterConfigs,
        path_params={"topic": T},
        errors=(400, 404, 503),
        tag="topics",
        write=True,
    ),
    Route(
        "POST",
        "/elect-leaders",
        _elect_leaders,
        "Elect leaders: preferred (default), unclean, or a named replica of one partition",
        list[WriteResult],
        body=ElectLeaders,
        errors=(400, 404, 409, 503),
        tag="cluster",
        write=True,
    ),
    Route(
        "POST",
        "/groups/{group}/reset-offsets",
        _reset_offsets,
        "Reset an empty group's committed offsets",
        GroupOffsetsReset,
        body=ResetOffsets,
        path_params={"group": T},
        errors=(400, 404, 409, 503),
        tag="groups",
        write=True,
    ),
    Route(
        "DELETE",
        "/groups/{group}",
        _delete_group,
        "Delete an empty group",
        WriteResult,
        path_params={"group": T},
        errors=(400, 404, 409, 503),
        tag="groups",
        write=True,
    ),
    Route(
        "POST",
        "/brokers/{broker}/controlled-shutdown",
        _controlled_shutdown,
        "Controlled shutdown of this node's broker (leaderships move away; fenced until restart)",
        WriteResult,
        path_params={"broker": I},
        errors=(400, 503),
        tag="cluster",
        write=True,
    ),
    Route(
        "DELETE",
        "/brokers/{broker}/controlled-shutdown",
        _end_controlled_shutdown,
        "Not supported: a broker leaves controlled shutdown by restarting (always 400; "
        "maintenance is the state to enter and leave)",
        WriteResult,
        path_params={"broker": I},
        errors=(400,),
        tag="cluster",
        write=True,
    ),
    Route(
        "PUT",
        "/brokers/{broker}/maintenance",
        _enter_maintenance,
        "Put any broker into maintenance: its leaderships move to other in-sync replicas; "
        "it stays a follower and elections pass it over (kept in the metadata log)",
        WriteResult,
        path_params={"broker": I},
        errors=(400, 404, 503),
        tag="cluster",
        write=True,
    ),
    Route(
        "DELETE",
        "/brokers/{broker}/maintenance",
        _exit_maintenance,
        "Take a broker out of maintenance: eligible to lead again (a preferred election "
        "brings its leaderships back)",
        WriteResult,
        path_params={"broker": I},
        errors=(400, 404, 503),
        tag="cluster",
        write=True,
    ),
    Route("GET", "/openapi.json", _openapi, "This document", dict[str, Any], tag="meta"),
]


# ------------------------------------------------------------------ wiring


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        result = await route.handler(await _parse(route, request))
        reply = result if isinstance(result, Reply) else Reply(result, route.status)
        return json_response(reply.body, reply.status)

    return handle


async def _parse(route: Route, request: web.Request) -> Args:
    path: dict[str, Any] = {}
    for name, kind in route.path_params.items():
        raw = request.match_info[name]
        if kind is int:
            try:
                path[name] = int(raw)
            except ValueError:
                raise ApiError(400, "INVALID_REQUEST", f"path.{name}: not an integer") from None
            if not -(2**31) <= path[name] < 2**31:
                raise ApiError(400, "INVALID_REQUEST", f"path.{name}: out of range")
        else:
            path[name] = raw
    query = None
    if route.query is not None:
        try:
            query = route.query.model_validate(dict(request.query))
        except ValidationError as e:
            raise ApiError(400, "INVALID_REQUEST", _describe(e, "query")) from None
    body = None
    if route.body is not None:
        raw_body = await request.read()
        try:
            data = orjson.loads(raw_body or b"{}")
        except orjson.JSONDecodeError as e:
            raise ApiError(400, "INVALID_JSON", f"body: malformed JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "INVALID_REQUEST", "body: a JSON object is expected")
        try:
            body = route.body.model_validate(_integral(data))
        except ValidationError as e:
            raise ApiError(400, "INVALID_REQUEST", _describe(e, "body")) from None
    return Args(request.app[API_KEY], path, query, body)


def _integral(data: Any) -> Any:
    """JSON numbers with no fraction as ints (JSON Schema's "integer" counts 3.0 as one)."""
    if isinstance(data, float) and data.is_integer() and abs(data) < 2**63:
        return int(data)
    if isinstance(data, list):
        return [_integral(v) for v in data]
    if isinstance(data, dict):
        return {k: _integral(v) for k, v in data.items()}
    return data


def _describe(error: ValidationError, where: str) -> str:
    return "; ".join(
        f"{'.'.join([where, *(str(p) for p in e['loc'])])}: {e['msg']}" for e in error.errors()
    )


def setup(app: web.Application, api: NodeApi) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, PREFIX + route.path, _handler(route))


# ------------------------------------------------------------------ OpenAPI

_document: dict[str, Any] | None = None
REF = "#/components/schemas/{model}"


def _schema(kind: Any, mode: Literal["validation", "serialization"], defs: dict[str, Any]) -> Any:
    schema = _no_tuples(TypeAdapter(kind).json_schema(mode=mode, ref_template=REF))
    defs.update(schema.pop("$defs", {}))
    return schema


def _no_tuples(schema: Any) -> Any:
    """Tuples (e.g. a [topic, partition] pair) as arrays of any of their item types:
    `prefixItems` is 3.1-only and not every OpenAPI tool reads it."""
    if isinstance(schema, list):
        return [_no_tuples(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _no_tuples(v) for k, v in schema.items()}
    items = out.pop("prefixItems", None)
    if items is not None:
        out["items"] = {"anyOf": items}
    return out


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ROUTES (built once)."""
    global _document
    if _document is not None:
        return _document
    defs: dict[str, Any] = {}
    error_ref = {"$ref": REF.format(model="ErrorBody")}
    defs["ErrorBody"] = _schema(ErrorBody, "serialization", defs)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        params: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
                if kind is int
                else {"type": "string"},
            }
            for name, kind in route.path_params.items()
        ]
        if route.query is not None:
            for name, prop in _schema(route.query, "validation", defs)["properties"].items():
                params.append({"name": name, "in": "query", "required": False, "schema": prop})
        ok = _schema(route.response, "serialization", defs)
        responses: dict[str, Any] = {
            str(route.status): {
                "description": "OK",
                "content": {"application/json": {"schema": ok}},
            }
        }
        statuses = set(route.errors)
        if params or route.body is not None:
            statuses.add(400)
        if route.path_params:
            statuses.add(404)  # also what the router answers for a path it has no route for
        if route.body is not None:
            statuses.add(413)
        if route.write:
            statuses.update((401, 403))
        for status in sorted(statuses):
            schema = ok if (route.path == "/ready" and status == 503) else error_ref
            responses[str(status)] = {
                "description": "error",
                "content": {"application/json": {"schema": schema}},
            }
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
            "responses": responses,
        }
        if params:
            operation["parameters"] = params
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema(route.body, "validation", defs)}
                },
            }
        if route.write:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = operation
    _document = {
        "openapi": "3.1.0",
        "info": {
            "title": "kraft admin API",
            "version": "1",
            "description": "Every node serves it. Errors: {error, message}; Kafka errors keep "
            "their names. Writes need the bearer token when kraft.admin.auth.token is set.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    return _document
