"""The node façade: what one running node knows and may change, as plain dataclasses.

The HTTP admin API, the CLI's embedded mode, the embedded Python API and the chaos suite call
this and hold no cluster logic of their own. Reads come from the node's metadata image (the
cluster as the metadata log describes it: brokers, topics, partitions with leader, replicas,
ISR and ELR), from the partitions hosted here (log start, log end, high watermark and, on the
leader, each follower's progress), from the local quorum member (controller nodes), and from
the group coordinator of the groups whose `__consumer_offsets` partition is led here. Writes go
through the controller client like any admin request, so they work on every node, whichever
one is the active controller.

A view is a snapshot taken when the call is made; nothing in it changes afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest

from kraft.cluster_groups import ClusterGroups, GroupDetail, GroupList, TopicPartition, error_name
from kraft.cluster_ops import (
    GroupOffsetsReset,
    PartitionRecords,
    ResetTo,
    latest_records,
    reset_offsets,
    set_maintenance,
    transfer_leadership,
)
from kraft.controller.config_describe import (
    ConfigEntry,
    describe_broker_configs,
    describe_topic_configs,
)
from kraft.controller.controller import INTERNAL_TOPICS
from kraft.metadata.image import MetadataImage, PartitionState
from kraft.net.protocol import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    ElectLeadersRequest,
    ElectLeadersResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    Message,
)
from kraft.node_views import (
    BrokerInfo,
    ClusterInfo,
    ClusterOverview,
    ConfigView,
    Health,
    PartitionInfo,
    QuorumInfo,
    ReplicaInfo,
    TopicDescription,
    TopicDetail,
    TopicInfo,
    VoterInfo,
    WriteResult,
)

if TYPE_CHECKING:
    from kraft.net.broker.partition import Partition
    from kraft.node import Node

OFFLINE = -1
TOPIC_RESOURCE = 2
SET, DELETE = 0, 1  # IncrementalAlterConfigs operations
PREFERRED, UNCLEAN = 0, 1  # ElectLeaders election types
WRITE_TIMEOUT_MS = 30_000
CONTROLLED_SHUTDOWN_TIMEOUT_S = 10.0
# Broker states in which it serves its replicas (in maintenance: as a follower).
SERVING = frozenset({"registered", "maintenance"})


def _result(name: str, code: int, message: str | None = None) -> WriteResult:
    return WriteResult(name, error_name(code), message if code else None)


class NodeApi:
    """Reads and writes on one running node (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.groups = ClusterGroups(
            self._image,
            self._endpoint_of,
            ssl_context=lambda: node.tls.client_for(node.config.inter_broker_listener_name),
        )

    # -------------------------------------------------------------- helpers

    @property
    def node_id(self) -> int:
        return self._node.config.node_id

    def _image(self) -> MetadataImage | None:
        broker = self._node.broker
        if broker is not None:
            return broker.image
        controller = self._node.controller
        return controller.image if controller is not None else None

    def _endpoint_of(self, broker_id: int) -> tuple[str, int] | None:
        broker = self._node.broker
        return broker.endpoint_of(broker_id) if broker is not None else None

    def _min_isr(self, image: MetadataImage, topic: str) -> int:
        value = image.topic_config(topic).get("min.insync.replicas")
        return int(value) if value is not None else self._node.config.min_insync_replicas

    def _controller_id(self) -> int | None:
        node = self._node
        if not node.config.is_cluster:
            return node.config.node_id  # a single node is its own controller
        if node.quorum is not None:
            return node.quorum.leader_id
        # A broker-only node: the controller its client last found active.
        client = node.controller_client
        if client is None or client.active is None:
            return None
        return next((c for c, i in client.endpoint_of_id.items() if i == client.active), None)

    # ---------------------------------------------------------------- reads

    def brokers(self) -> list[BrokerInfo]:
        image = self._image()
        if image is None:
            return []
        maintenance = image.in_maintenance()
        leads: dict[int, int] = {}
        for topic in image.topics.values():
            for state in topic.partitions.values():
                leads[state.leader] = leads.get(state.leader, 0) + 1
        return [
            BrokerInfo(
                node_id=reg.broker_id,
                epoch=reg.epoch,
                rack=reg.rack,
                fenced=reg.fenced,
                in_controlled_shutdown=reg.in_controlled_shutdown,
                endpoints={name: f"{h}:{p}" for name, (h, p) in sorted(reg.endpoints.items())},
                state=(
                    "controlled_shutdown"
                    if reg.in_controlled_shutdown
                    else "fenced"
                    if reg.fenced
                    else "maintenance"
                    if reg.broker_id in maintenance
                    else "registered"
                ),
                in_maintenance=reg.broker_id in maintenance,
                leaderships=leads.get(reg.broker_id, 0),
            )
            for _, reg in sorted(image.brokers.items())
        ]

    def quorum(self) -> QuorumInfo | None:
        """The metadata quorum as this node's quorum member sees it (None on broker-only
        nodes: they are not members)."""
        quorum = self._node.quorum
        if quorum is None:
            return None
        status = quorum.status()
        return QuorumInfo(
            node_id=status.node_id,
            leader_id=status.leader_id,
            term=status.term,
            is_leader=status.is_leader,
            commit_index=status.commit_index,
            applied_index=status.applied_index,
            last_index=status.last_index,
            snapshot_index=status.snapshot_index,
            voters=[
                VoterInfo(v.node_id, v.match_index, v.lag, v.connected, v.last_heard_ms)
                for v in status.voters
            ],
        )

    def topics(self) -> list[TopicInfo]:
        image = self._image()
        if image is None:
            return []
        return [self._topic_info(image, name) for name in sorted(image.topics)]

    def topic(self, name: str) -> TopicDetail | None:
        image = self._image()
        if image is None or name not in image.topics:
            return None
        parts = image.topics[name].partitions
        return TopicDetail(
            self._topic_info(image, name),
            [self._partition_info(image, name, i, parts[i]) for i in sorted(parts)],
        )

    def describe_topic(self, name: str) -> TopicDescription | None:
        """The topic, its partitions and every config with its source (None: unknown)."""
        detail = self.topic(name)
        entries = self.topic_configs(name)
        if detail is None or entries is None:
            return None
        configs = []
        for e in entries:
            below = [s.value for s in e.synonyms if s.source != e.source]
            configs.append(
                ConfigView(
                    e.name,
                    e.value,
                    e.source_name,
                    e.is_default,
                    e.read_only,
                    e.value if e.is_default else (below[0] if below else None),
                )
            )
        return TopicDescription(detail.topic, detail.partitions, configs)

    def partition(self, topic: str, index: int) -> PartitionInfo | None:
        image = self._image()
        state = image.partition(topic, index) if image is not None else None
        if image is None or state is None:
            return None
        return self._partition_info(image, topic, index, state)

    def cluster(self) -> ClusterInfo:
        node = self._node
        image = self._image()
        partitions = offline = under = under_min = 0
        topics = 0
        if image is not None:
            topics = len(image.topics)
            for topic in image.topics.values():
                min_isr = self._min_isr(image, topic.name)
                for state in topic.partitions.values():
                    partitions += 1
                    offline += state.leader == OFFLINE
                    under += len(state.isr) < len(state.replicas)
                    under_min += len(state.isr) < min_isr
        return ClusterInfo(
            cluster_id=node.cluster_id,
            node_id=node.config.node_id,
            controller_id=self._controller_id(),
            brokers=self.brokers(),
            topics=topics,
            partitions=partitions,
            offline_partitions=offline,
            under_replicated_partitions=under,
            under_min_isr_partitions=under_min,
            metadata_offset=image.last_offset if image is not None else -1,
        )

    def overview(self) -> ClusterOverview:
        image = self._image()
        brokers = self.brokers()
        live = {b.node_id for b in brokers if b.state in SERVING}
        under: list[TopicPartition] = []
        under_min: list[TopicPartition] = []
        offline: list[TopicPartition] = []
        leaderless: list[TopicPartition] = []
        partitions = 0
        for name in sorted(image.topics) if image is not None else []:
            assert image is not None
            min_isr = self._min_isr(image, name)
            for index, state in sorted(image.topics[name].partitions.items()):
                partitions += 1
                tp = (name, index)
                if len(state.isr) < len(state.replicas):
                    under.append(tp)
                if len(state.isr) < min_isr:
                    under_min.append(tp)
                if state.leader == OFFLINE:
                    leaderless.append(tp)
                    if not live.intersection(state.replicas):
                        offline.append(tp)
        controller_id = self._controller_id()
        reasons = []
        if controller_id is None:
            reasons.append("no active controller is known")
        if not_live := [b.node_id for b in brokers if b.state not in SERVING]:
            reasons.append(f"brokers not serving (fenced or shutting down): {not_live}")
        for what, items in (
            ("leaderless", leaderless),
            ("offline", offline),
            ("under-replicated", under),
            ("under min ISR", under_min),
        ):
            if items:
                reasons.append(f"{len(items)} {what} partition(s)")
        return ClusterOverview(
            cluster_id=self._node.cluster_id,
            node_id=self.node_id,
            controller_id=controller_id,
            quorum=self.quorum(),
            brokers=brokers,
            topics=len(image.topics) if image is not None else 0,
            partitions=partitions,
            under_replicated=under,
            under_min_isr=under_min,
            offline=offline,
            leaderless=leaderless,
            is_healthy=not reasons,
            reasons=reasons,
        )

    async def records(self, topic: str, partition: int, limit: int) -> PartitionRecords | None:
        """The latest `limit` records of a partition, read from its leader (None: unknown)."""
        return await latest_records(self.groups, self._image(), topic, partition, limit)

    async def reset_group_offsets(
        self,
        group_id: str,
        to: ResetTo,
        topic: str | None = None,
        partitions: list[int] | None = None,
        timestamp: int | None = None,
        offset: int | None = None,
    ) -> GroupOffsetsReset | None:
        return await reset_offsets(
            self.groups, self._image(), group_id, to, topic, partitions, timestamp, offset
        )

    async def controlled_shutdown(self, broker_id: int) -> WriteResult:
        """Kafka's controlled shutdown of this node's broker: the controller moves its
        leaderships away and it stops heartbeating (fenced) until the process restarts. Only
        the broker itself asks for it (its heartbeat carries want_shut_down), so another
        broker's is refused; there is no way back short of a restart. To take any broker
        out of leadership and back, there is maintenance (`set_maintenance`)."""
        name = str(broker_id)
        lifecycle = self._node.lifecycle
        if broker_id != self.node_id:
            return WriteResult(
                name,
                "INVALID_REQUEST",
                f"ask node {broker_id}'s own admin API: a broker "
                "enters controlled shutdown through its own heartbeat",
            )
        if lifecycle is None:
            return WriteResult(name, "INVALID_REQUEST", "this node runs no broker of a cluster")
        await lifecycle.controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT_S)
        return WriteResult(name)

    def health(self) -> Health:
        node = self._node
        cfg = node.config
        roles = [r for r in ("broker", "controller") if getattr(cfg, f"is_{r}")]
        reasons: list[str] = []
        image = self._image()
        registered = False
        fenced: bool | None = None
        if cfg.is_broker:
            broker = node.broker
            reg = image.brokers.get(cfg.node_id) if image is not None else None
            registered = reg is not None
            fenced = reg.fenced if reg is not None else True
            if broker is None or not broker.metadata_ready:
                reasons.append("the broker has not caught up with the metadata log")
            if not registered:
                reasons.append("the broker is not registered with the controller")
            elif fenced:
                reasons.append("the broker is fenced")
            elif reg is not None and reg.in_controlled_shutdown:
                reasons.append("the broker is in controlled shutdown")
        controller_id = self._controller_id()
        if cfg.is_cluster and controller_id is None:
            reasons.append("no active controller is known")
        info = self.cluster()
        return Health(
            node_id=cfg.node_id,
            ready=not reasons,
            roles=roles,
            reasons=reasons,
            broker_registered=registered,
            broker_fenced=fenced,
            controller_id=controller_id,
            offline_partitions=info.offline_partitions,
            under_replicated_partitions=info.under_replicated_partitions,
        )

    def topic_configs(self, topic: str) -> list[ConfigEntry] | None:
        """Every config of a topic with its value and source (None: unknown topic)."""
        image = self._image()
        if image is None:
            return None
        return describe_topic_configs(self._node.config, image, topic)

    def broker_configs(self) -> list[ConfigEntry]:
        image = self._image()
        return describe_broker_configs(self._node.config, image=image)

    # ---------------------------------------------------------------- metrics

    def metrics_registry(self) -> CollectorRegistry:
        """This node's Prometheus registry (instruments and scrape-time gauges)."""
        return self._node.metrics.registry

    async def metrics_text(self) -> bytes:
        """The node's metrics in the Prometheus text format. The consumer lag of groups
        coordinated here needs the log end of partitions led by other brokers: those are
        asked for first (ListOffsets, bounded like every façade request)."""
        collector = self._node.metrics_collector
        broker = self._node.broker
        local = broker.replica_manager.partitions if broker is not None else {}
        remote = {
            tp
            for offsets in collector.coordinated_offsets().values()
            for tp in offsets
            if not ((p := local.get(tp)) is not None and p.is_leader)
        }
        collector.remote_end_offsets = await self.groups.end_offsets(remote) if remote else {}
        return generate_latest(self._node.metrics.registry)

    # ----------------------------------------------------------------- groups

    async def list_groups(self) -> GroupList:
        return await self.groups.list_groups()

    async def group(self, group_id: str) -> GroupDetail | None:
        return await self.groups.describe_group(group_id)

    async def alter_group_offsets(
        self, group_id: str, offsets: dict[TopicPartition, int]
    ) -> list[WriteResult]:
        errors = await self.groups.alter_offsets(group_id, offsets)
        return [WriteResult(f"{t}-{p}", e) for (t, p), e in sorted(errors.items())]

    async def delete_group(self, group_id: str) -> WriteResult:
        return WriteResult(group_id, await self.groups.delete_group(group_id))

    # ----------------------------------------------------------------- writes
    # Through the controller client, like the same admin request from a Kafka client: the
    # active controller decides, wherever it runs.

    async def _forward(self, request: Message, version: int) -> Message:
        broker = self._node.broker
        if broker is None:
            raise RuntimeError("writes go through a broker; this node is controller-only")
        return await broker.forward(request, version)

    async def create_topic(
        self,
        name: str,
        partitions: int = -1,
        replication_factor: int = -1,
        configs: dict[str, str] | None = None,
        validate_only: bool = False,
    ) -> WriteResult:
        """-1 takes the broker's num.partitions / default.replication.factor."""
        request = CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    assignments=[],
                    configs=[
                        CreateTopicsRequest.CreatableTopicConfig(name=k, value=v)
                        for k, v in sorted((configs or {}).items())
                    ],
                )
            ],
            timeout_ms=WRITE_TIMEOUT_MS,
            validate_only=validate_only,
        )
        response = await self._forward(request, 7)
        assert isinstance(response, CreateTopicsResponse)
        t = response.topics[0]
        return _result(t.name, t.error_code, t.error_message)

    async def delete_topic(self, name: str) -> WriteResult:
        request = DeleteTopicsRequest(topic_names=[name], timeout_ms=WRITE_TIMEOUT_MS)
        response = await self._forward(request, 5)
        assert isinstance(response, DeleteTopicsResponse)
        r = response.responses[0]
        return _result(r.name or name, r.error_code, r.error_message)

    async def create_partitions(self, topic: str, count: int) -> WriteResult:
        """Grow `topic` to `count` partitions in all."""
        request = CreatePartitionsRequest(
            topics=[
                CreatePartitionsRequest.CreatePartitionsTopic(
                    name=topic, count=count, assignments=None
                )
            ],
            timeout_ms=WRITE_TIMEOUT_MS,
            validate_only=False,
        )
        response = await self._forward(request, 3)
        assert isinstance(response, CreatePartitionsResponse)
        r = response.results[0]
        return _result(r.name, r.error_code, r.error_message)

    async def alter_topic_configs(
        self, topic: str, set_: dict[str, str] | None = None, delete: list[str] | None = None
    ) -> WriteResult:
        """Set and remove a topic's config overrides (incrementally: others stay)."""
        Config = IncrementalAlterConfigsRequest.AlterableConfig
        changes = [Config(name=k, config_operation=SET, value=v) for k, v in (set_ or {}).items()]
        changes += [Config(name=k, config_operation=DELETE, value=None) for k in delete or []]
        request = IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=TOPIC_RESOURCE, resource_name=topic, configs=changes
                )
            ],
            validate_only=False,
        )
        response = await self._forward(request, 1)
        assert isinstance(response, IncrementalAlterConfigsResponse)
        r = response.responses[0]
        return _result(r.resource_name, r.error_code, r.error_message)

    async def transfer_leadership(self, topic: str, partition: int, replica: int) -> WriteResult:
        """Make `replica` the leader of `topic`-`partition` through the active controller
        (kraft's TransferLeadership): allowed when it is in the ISR and its broker is
        registered, unfenced, not in controlled shutdown and not in maintenance. The replica
        order stays, so a preferred election moves leadership back: not a reassignment."""
        return await transfer_leadership(self._forward, topic, partition, replica)

    async def set_maintenance(self, broker_id: int, enable: bool) -> WriteResult:
        """Put any registered broker into maintenance (its leaderships move to other ISR
        replicas; it stays a follower and is passed over by elections) or take it out
        (eligible again; a preferred election brings leadership back)."""
        return await set_maintenance(self._forward, broker_id, enable)

    async def elect_leaders(
        self, partitions: list[TopicPartition] | None = None, unclean: bool = False
    ) -> list[WriteResult]:
        """Preferred (or unclean) leader election for `partitions`, or all of them."""
        by_topic: dict[str, list[int]] = {}
        for topic, index in partitions or []:
            by_topic.setdefault(topic, []).append(index)
        request = ElectLeadersRequest(
            election_type=UNCLEAN if unclean else PREFERRED,
            topic_partitions=(
                None
                if partitions is None
                else [
                    ElectLeadersRequest.TopicPartitions(topic=t, partitions=sorted(ps))
                    for t, ps in sorted(by_topic.items())
                ]
            ),
            timeout_ms=WRITE_TIMEOUT_MS,
        )
        response = await self._forward(request, 2)
        assert isinstance(response, ElectLeadersResponse)
        if response.error_code:
            return [_result("", response.error_code)]
        return [
            _result(f"{t.topic}-{p.partition_id}", p.error_code, p.error_message)
            for t in response.replica_election_results
            for p in t.partition_result
        ]

    # ------------------------------------------------------------ builders

    def _topic_info(self, image: MetadataImage, name: str) -> TopicInfo:
        topic = image.topics[name]
        states = list(topic.partitions.values())
        return TopicInfo(
            name=name,
            topic_id=str(topic.topic_id),
            internal=name in INTERNAL_TOPICS,
            partitions=len(states),
            replication_factor=len(states[0].replicas) if states else 0,
            configs=image.topic_config(name),
            offline_partitions=sum(s.leader == OFFLINE for s in states),
            under_replicated_partitions=sum(len(s.isr) < len(s.replicas) for s in states),
        )

    def _partition_info(
        self, image: MetadataImage, topic: str, index: int, state: PartitionState
    ) -> PartitionInfo:
        local = self._local_log(topic, index, state)
        return PartitionInfo(
            topic=topic,
            partition=index,
            leader=state.leader,
            leader_epoch=state.leader_epoch,
            partition_epoch=state.partition_epoch,
            replicas=list(state.replicas),
            isr=list(state.isr),
            elr=list(state.eligible_leader_replicas),
            last_known_elr=list(state.last_known_elr),
            offline=state.leader == OFFLINE,
            under_replicated=len(state.isr) < len(state.replicas),
            under_min_isr=len(state.isr) < self._min_isr(image, topic),
            hosted_here=local is not None,
            log_start_offset=local.log_start_offset if local else None,
            log_end_offset=local.log_end_offset if local else None,
            high_watermark=local.high_watermark if local else None,
            replica_states=local.replicas if local else self._replicas(state, None, 0, 0),
        )

    def _local_log(self, topic: str, index: int, state: PartitionState) -> _LocalLog | None:
        broker = self._node.broker
        hosted = broker.replica_manager.get_partition((topic, index)) if broker else None
        if hosted is None:
            return None
        log = hosted.log
        leo = log.log_end_offset
        return _LocalLog(
            log.log_start_offset,
            leo,
            log.high_watermark,
            self._replicas(state, hosted, leo, hosted.clock()),
        )

    @staticmethod
    def _replicas(
        state: PartitionState, hosted: Partition | None, leo: int, now_ms: int
    ) -> list[ReplicaInfo]:
        """Each replica's membership; with the leader's partition, each one's progress too."""
        out: list[ReplicaInfo] = []
        for r in state.replicas:
            in_isr = r in state.isr
            eligible = r in state.eligible_leader_replicas
            if hosted is not None and r == hosted.broker_id:
                out.append(ReplicaInfo(r, in_isr, eligible, leo, 0, 0))
                continue
            follower = hosted.followers.get(r) if hosted is not None and hosted.is_leader else None
            if follower is None or follower.log_end_offset < 0:
                out.append(ReplicaInfo(r, in_isr, eligible))
                continue
            caught_up = follower.last_caught_up_ms
            out.append(
                ReplicaInfo(
                    r,
                    in_isr,
                    eligible,
                    follower.log_end_offset,
                    max(leo - follower.log_end_offset, 0),
                    max(now_ms - caught_up, 0) if caught_up else None,
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class _LocalLog:
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    replicas: list[ReplicaInfo]
