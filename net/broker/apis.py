"""Request dispatch (Kafka's KafkaApis): the handler of each api key, within the versions this
broker advertises, called with the broker's collaborators — the replica manager, the metadata
image, the group coordinator, forwarding to the active controller and producer ids — rather
than the broker. Each handler declares the part it uses (`handlers.context`); this class is
the one that implements them all, and mypy checks it against each."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from kraft.config import NodeConfig
from kraft.controller.controller import TopicSpec
from kraft.metadata.image import MetadataImage
from kraft.metrics import NodeMetrics
from kraft.net.broker.forwarding import ForwardingManager
from kraft.net.broker.handlers import HANDLERS, supported_versions
from kraft.net.broker.handlers.context import (
    AdminContext,
    ApiVersionsContext,
    GroupContext,
    MetadataContext,
    ProduceContext,
    ReplicaContext,
)
from kraft.net.broker.replica_manager import ReplicaManager
from kraft.net.groups.service import GroupCoordinatorService
from kraft.net.protocol import ApiKey, FetchRequest, Message, RequestHeader
from kraft.net.server import CloseConnection, Connection

API_VERSIONS_KEY = 18
FETCH_KEY = 1


def _request_names() -> dict[int, str]:
    """RequestMetrics' `request` tag: Kafka's API names (ApiKeys.name), e.g. `Produce`,
    `ApiVersions`, `OffsetCommit`; Fetch is split into FetchConsumer and FetchFollower."""
    names = {k.value: "".join(p.capitalize() for p in k.name.split("_")) for k in ApiKey}
    return names


REQUEST_NAMES = _request_names()


class KafkaApis(
    ProduceContext,
    ReplicaContext,
    MetadataContext,
    AdminContext,
    GroupContext,
    ApiVersionsContext,
):
    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        config: NodeConfig,
        image: Callable[[], MetadataImage],
        replica_manager: ReplicaManager,
        groups: GroupCoordinatorService,
        forwarding: ForwardingManager,
        next_producer_id: Callable[[], Awaitable[int]],
        tag: str = "",
        metrics: NodeMetrics | None = None,
    ) -> None:
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._config = config
        self._image = image
        self._replica_manager = replica_manager
        self._groups = groups
        self._forwarding = forwarding
        self._next_producer_id = next_producer_id
        self._tag = tag
        self._handlers = HANDLERS
        self._supported_versions = supported_versions()
        self.metrics = metrics or NodeMetrics()

    async def handle(
        self, header: RequestHeader, request: Message, conn: Connection
    ) -> Message | None:
        handler = self._handlers.get(header.api_key)
        versions = self._supported_versions.get(header.api_key)
        if handler is None or versions is None:
            # Like Kafka: a request for an API we never advertised cannot be answered in a
            # form the client expects.
            raise CloseConnection(f"api key {header.api_key} is not supported by this broker")
        if not versions[0] <= header.api_version <= versions[1]:
            raise CloseConnection(
                f"version {header.api_version} of api key {header.api_key} is outside the "
                f"advertised range {versions[0]}-{versions[1]}"
            )
        start = time.perf_counter()
        response: Message | None = await handler(self, header, request, conn)
        if header.api_key == FETCH_KEY:
            name = "FetchFollower" if _fetch_replica_id(request, header) >= 0 else "FetchConsumer"
        else:
            name = REQUEST_NAMES[header.api_key]
        self.metrics.request_done(name, time.perf_counter() - start)
        return response

    # ------------------------------------------------ the handlers' collaborators

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def tag(self) -> str:
        return self._tag

    @property
    def image(self) -> MetadataImage:
        return self._image()

    @property
    def replica_manager(self) -> ReplicaManager:
        return self._replica_manager

    @property
    def groups(self) -> GroupCoordinatorService:
        return self._groups

    @property
    def supported_versions(self) -> dict[int, tuple[int, int]]:
        return self._supported_versions

    async def forward(self, request: Message, version: int | None = None) -> Message:
        return await self._forwarding.forward(request, version)

    async def create_topics(self, specs: list[TopicSpec]) -> list[tuple[str, int]]:
        return await self._forwarding.create_topics(specs)

    async def next_producer_id(self) -> int:
        return await self._next_producer_id()


def _fetch_replica_id(request: Message, header: RequestHeader) -> int:
    assert isinstance(request, FetchRequest)
    if header.api_version >= 15:
        return request.replica_state.replica_id
    return request.replica_id
