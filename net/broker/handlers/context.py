"""What each family of request handlers sees of the broker: narrow interfaces, like the
explicit collaborators of Kafka's KafkaApis (replicaManager, metadataCache, groupCoordinator,
forwardingManager, producer-id manager) — never the broker itself.

The dispatcher (`kraft.net.broker.apis.KafkaApis`) implements all of them; a handler names
the one it needs, so its dependencies are written in its signature and the handlers import
nothing above them.
"""

from __future__ import annotations

from typing import Protocol

from kraft.config import NodeConfig
from kraft.controller.controller import TopicSpec
from kraft.metadata.image import MetadataImage
from kraft.net.broker.replica_manager import ReplicaManager
from kraft.net.groups.service import GroupCoordinatorService
from kraft.net.protocol import Message


class ReplicaContext(Protocol):
    """Fetch, ListOffsets and OffsetForLeaderEpoch: the hosted partitions and the image."""

    @property
    def image(self) -> MetadataImage: ...

    @property
    def replica_manager(self) -> ReplicaManager: ...


class ProduceContext(ReplicaContext, Protocol):
    """Produce and InitProducerId: the replica manager, the image, and producer ids (blocks
    the active controller allocates)."""

    async def next_producer_id(self) -> int: ...


class Forwarder(Protocol):
    async def forward(self, request: Message, version: int | None = None) -> Message:
        """The active controller's answer to `request` (REQUEST_TIMED_OUT for every item when
        none came within the request's own timeout)."""
        ...


class AdminContext(Forwarder, Protocol):
    """The admin requests: forwarded to the active controller, or (DescribeConfigs) answered
    from this node's config and image."""

    @property
    def node_id(self) -> int: ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def image(self) -> MetadataImage: ...


class MetadataContext(AdminContext, Protocol):
    """Metadata, DescribeCluster and DescribeQuorum: the image, who this node is, and the
    controller (auto-created topics; the quorum of a cluster)."""

    @property
    def cluster_id(self) -> str: ...

    @property
    def tag(self) -> str: ...

    async def create_topics(self, specs: list[TopicSpec]) -> list[tuple[str, int]]:
        """Create topics through the active controller: (name, error code) per topic."""
        ...


class GroupContext(Protocol):
    """The consumer group APIs: the group coordinator, and the image (offsets are committed
    only for partitions that exist)."""

    @property
    def image(self) -> MetadataImage: ...

    @property
    def groups(self) -> GroupCoordinatorService: ...


class ApiVersionsContext(Protocol):
    @property
    def supported_versions(self) -> dict[int, tuple[int, int]]: ...
