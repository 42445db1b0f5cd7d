"""The controller's answers to the admin requests that change metadata (Kafka's
ControllerApis for CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs,
IncrementalAlterConfigs and ElectLeaders), and kraft's own TransferLeadership.

A broker's maintenance mode (`kraft.controller.leadership`) is set and cleared as the broker's
dynamic config `kraft.maintenance.mode` through AlterConfigs / IncrementalAlterConfigs of the
BROKER resource, so Kafka's tools can do it too; no other dynamic broker config is accepted.

Each request becomes controller commands (records plus a result, committed through the
metadata log) and the response is built once they are committed. The active controller runs
them for requests brokers forward to it, and a single node runs them for its own clients.
A node that cannot commit answers NOT_CONTROLLER (the sender tries the active controller)
or REQUEST_TIMED_OUT (no quorum in time) for every item.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kraft.config import NodeConfig
from kraft.controller.config_describe import DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG, topic_defaults
from kraft.controller.controller import Controller, Result, TopicSpec
from kraft.controller.leadership import maintenance_command, transfer_leadership_command
from kraft.controller.scram_credentials import alter_refused, alter_scram_credentials
from kraft.metadata.image import BROKER_RESOURCE, MAINTENANCE_KEY, TOPIC_RESOURCE, MetadataImage
from kraft.metadata.publisher import MetadataCommitTimeout, NotController
from kraft.net.protocol import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    ElectLeadersRequest,
    ElectLeadersResponse,
    ErrorCode,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    Message,
    TransferLeadershipRequest,
    TransferLeadershipResponse,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Configs whose values are lists (IncrementalAlterConfigs APPEND / SUBTRACT apply to them).
LIST_CONFIGS = frozenset({"cleanup.policy"})

AdminHandler = Callable[[Any, int], Awaitable[Message]]


class AdminRequests:
    """`handle(request, version)` for the admin request types in `API_KEYS`.

    `may_decide()` is asked before each command: a controller that is not (or no longer) the
    quorum's confirmed leader refuses with NOT_CONTROLLER instead of deciding."""

    API_KEYS = frozenset({19, 20, 33, 37, 43, 44, 51})
    # kraft's own requests: served on the CONTROLLER listener, advertised nowhere.
    OWN_API_KEYS = frozenset({TransferLeadershipRequest.API_KEY or 0})

    def __init__(
        self,
        config: NodeConfig,
        image: MetadataImage,
        controller: Controller,
        tag: str,
        may_decide: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.image = image
        self.controller = controller
        self.tag = tag
        self.may_decide = may_decide
        self._handlers: dict[int, AdminHandler] = {
            19: self.create_topics,
            20: self.delete_topics,
            37: self.create_partitions,
            33: self.alter_configs,
            44: self.incremental_alter_configs,
            43: self.elect_leaders,
            51: self.alter_user_scram_credentials,
            TransferLeadershipRequest.API_KEY or 0: self.transfer_leadership,
        }

    async def handle(self, request: Message, version: int) -> Message:
        api_key = type(request).API_KEY
        assert api_key is not None
        return await self._handlers[api_key](request, version)

    async def submit(self, command: Callable[[MetadataImage], Result[T]]) -> tuple[int, Any]:
        """Run a controller command: (0, its response), or (error code, None) when this node
        cannot commit it (not the active controller: NOT_CONTROLLER, the client retries
        elsewhere; no quorum in time: REQUEST_TIMED_OUT)."""
        if not self.may_decide():
            return ErrorCode.NOT_CONTROLLER, None
        try:
            return 0, await self.controller.run(command)
        except NotController:
            return ErrorCode.NOT_CONTROLLER, None
        except MetadataCommitTimeout:
            return ErrorCode.REQUEST_TIMED_OUT, None

    # ------------------------------------------------------------------ topics

    async def create_topics(
        self, request: CreateTopicsRequest, version: int
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
        code, results = await self.submit(
            self.controller.create_topics(specs, request.validate_only)
        )
        if code:
            return CreateTopicsResponse(
                topics=[
                    CreateTopicsResponse.CreatableTopicResult(name=t.name, error_code=code)
                    for t in request.topics
                ]
            )
        defaults = topic_defaults(self.config)
        out = []
        for r in results:
            if r.error_code:
                logger.info("%screate topic %s refused: %s", self.tag, r.name, r.error_message)
            else:
                logger.info(
                    "%s%s topic %s (%d partitions, replication factor %d)",
                    self.tag,
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

    async def delete_topics(
        self, request: DeleteTopicsRequest, version: int
    ) -> DeleteTopicsResponse:
        if not self.config.delete_topic_enable:
            names = request.topic_names or [t.name or "" for t in request.topics]
            return DeleteTopicsResponse(
                responses=[
                    DeleteTopicsResponse.DeletableTopicResult(
                        name=n, error_code=ErrorCode.TOPIC_DELETION_DISABLED
                    )
                    for n in names
                ]
            )
        if version >= 6:
            names = [t.name for t in request.topics if t.name is not None]
            ids = [t.topic_id for t in request.topics if t.name is None]
        else:
            names, ids = list(request.topic_names), []
        code, results = await self.submit(self.controller.delete_topics(names, ids))
        if code:
            results = [(name, uuid.UUID(int=0), code, None) for name in names] + [
                (None, topic_id, code, None) for topic_id in ids
            ]
        for name, _, code, _ in results:
            if code == 0:
                logger.info("%sdeleted topic %s", self.tag, name)
        return DeleteTopicsResponse(
            responses=[
                DeleteTopicsResponse.DeletableTopicResult(
                    name=name, topic_id=topic_id, error_code=code, error_message=message
                )
                for name, topic_id, code, message in results
            ]
        )

    async def create_partitions(
        self, request: CreatePartitionsRequest, version: int
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
            assignments = (
                [list(a.broker_ids) for a in topic.assignments] if topic.assignments else None
            )
            code, outcome = await self.submit(
                self.controller.create_partitions(
                    topic.name, topic.count, assignments, request.validate_only
                )
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

    async def elect_leaders(
        self, request: ElectLeadersRequest, version: int
    ) -> ElectLeadersResponse:
        """ElectLeaders (KIP-460): PREFERRED or UNCLEAN elections."""
        election_type = request.election_type if version >= 1 else 0
        partitions = (
            None
            if request.topic_partitions is None
            else {t.topic: list(t.partitions) for t in request.topic_partitions}
        )
        code, results = await self.submit(self.controller.elect_leaders(election_type, partitions))
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
                        self.tag,
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

    async def transfer_leadership(
        self, request: TransferLeadershipRequest, version: int
    ) -> TransferLeadershipResponse:
        topic, index, replica = request.topic_name, request.partition_index, request.leader_id
        code, outcome = await self.submit(
            transfer_leadership_command(self.controller, topic, index, replica)
        )
        message = None
        if not code:
            code, message = outcome
        state = self.image.partition(topic, index)
        if code == 0:
            logger.info(
                "%stransferred leadership of %s-%d to replica %d (leader epoch %d)",
                self.tag,
                topic,
                index,
                replica,
                state.leader_epoch if state else -1,
            )
        else:
            logger.info(
                "%sleadership transfer of %s-%d to replica %d refused: %s",
                self.tag,
                topic,
                index,
                replica,
                message or ErrorCode(code).name,
            )
        return TransferLeadershipResponse(
            error_code=code,
            error_message=message,
            leader_id=state.leader if state else -1,
            leader_epoch=state.leader_epoch if state else -1,
        )

    # ----------------------------------------------------------------- configs

    async def _maintenance(
        self, name: str, changes: dict[str, str | None], validate_only: bool
    ) -> tuple[int, str | None]:
        """kraft.maintenance.mode of broker `name`: "true" puts it in, "false" or a
        deletion takes it out."""
        if not name.isdigit() or int(name) >= 2**31:
            return ErrorCode.INVALID_REQUEST, f"broker {name!r}: a broker id is expected"
        value = changes[MAINTENANCE_KEY]
        if value is not None and value.lower() not in ("true", "false"):
            return ErrorCode.INVALID_CONFIG, f"{MAINTENANCE_KEY} must be true or false"
        enable = value is not None and value.lower() == "true"
        broker_id = int(name)
        before = _leaderships(self.image, broker_id)
        code, outcome = await self.submit(
            maintenance_command(self.controller, broker_id, enable, validate_only)
        )
        if code:
            return code, None
        code, message = outcome
        if code == 0 and not validate_only:
            after = _leaderships(self.image, broker_id)
            logger.info(
                "%sbroker %d %s maintenance (leader of %d partitions, %d before)",
                self.tag,
                broker_id,
                "in" if enable else "out of",
                after,
                before,
            )
        return code, message

    async def _alter(
        self,
        resource_type: int,
        name: str,
        changes: dict[str, str | None],
        incremental: bool,
        validate_only: bool,
    ) -> tuple[int, str | None]:
        if resource_type == BROKER_RESOURCE:
            if set(changes) == {MAINTENANCE_KEY}:
                return await self._maintenance(name, changes, validate_only)
            return (
                ErrorCode.INVALID_REQUEST,
                f"dynamic broker configs are not supported (only {MAINTENANCE_KEY})",
            )
        if resource_type != TOPIC_RESOURCE:
            return ErrorCode.INVALID_REQUEST, f"resource type {resource_type} cannot be altered"
        code, outcome = await self.submit(
            self.controller.alter_topic_configs(name, changes, incremental, validate_only)
        )
        if code:
            return code, None
        code, message = outcome
        if code == 0 and not validate_only:
            logger.info("%saltered configs of topic %s: %s", self.tag, name, changes)
        return code, message

    async def alter_user_scram_credentials(
        self, request: AlterUserScramCredentialsRequest, version: int
    ) -> AlterUserScramCredentialsResponse:
        code, response = await self.submit(alter_scram_credentials(request))
        if code:
            return alter_refused(request, code)
        for result in response.results:
            if result.error_code == 0:
                logger.info("%saltered SCRAM credentials of user %s", self.tag, result.user)
        return response

    async def alter_configs(
        self, request: AlterConfigsRequest, version: int
    ) -> AlterConfigsResponse:
        responses = []
        for res in request.resources:
            changes: dict[str, str | None] = {c.name: c.value for c in res.configs}
            code, message = await self._alter(
                res.resource_type, res.resource_name, changes, False, request.validate_only
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

    async def incremental_alter_configs(
        self, request: IncrementalAlterConfigsRequest, version: int
    ) -> IncrementalAlterConfigsResponse:
        responses = []
        for res in request.resources:
            code, message = 0, None
            changes: dict[str, str | None] = {}
            current = (
                self.image.topic_config(res.resource_name)
                if res.resource_type == TOPIC_RESOURCE
                else {}
            )
            defaults = topic_defaults(self.config)
            for c in res.configs:
                op = c.config_operation
                if op == 0:  # SET
                    changes[c.name] = c.value
                elif op == 1:  # DELETE
                    changes[c.name] = None
                elif op in (2, 3) and c.name in LIST_CONFIGS:  # APPEND, SUBTRACT
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
                code, message = await self._alter(
                    res.resource_type, res.resource_name, changes, True, request.validate_only
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


def _leaderships(image: MetadataImage, broker_id: int) -> int:
    return sum(
        state.leader == broker_id
        for topic in image.topics.values()
        for state in topic.partitions.values()
    )
