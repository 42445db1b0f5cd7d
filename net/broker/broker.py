"""The broker: its collaborators wired together, and its reaction to metadata changes (the
partitions hosted here are its replica manager's; leaders keep their ISR through
AlterPartition).

Requests go to `KafkaApis` (`net.broker.apis`), which calls the handlers of
`net.broker.handlers` with the collaborators they declare — the replica manager, the image,
the group coordinator, forwarding, producer ids — never with the broker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Callable

from kraft.config import NodeConfig
from kraft.controller.client import ControllerClient
from kraft.controller.controller import Controller
from kraft.controller.topic_configs import log_config_for
from kraft.log.config import LogConfig
from kraft.log.manager import LogManager
from kraft.metadata.image import MetadataImage
from kraft.metrics import NodeMetrics
from kraft.net.broker.apis import API_VERSIONS_KEY, KafkaApis
from kraft.net.broker.coordinator_partitions import CoordinatorPartitionWriter
from kraft.net.broker.forwarding import FORWARD_TIMEOUT_S, ForwardingManager
from kraft.net.broker.partition import Partition, monotonic_ms
from kraft.net.broker.producer_ids import ProducerIdManager
from kraft.net.broker.replica_manager import ReplicaManager
from kraft.net.broker.replication import FetchSettings, ReplicaFetcherManager
from kraft.net.groups.service import GroupCoordinatorService
from kraft.net.protocol import (
    AlterPartitionRequest,
    AlterPartitionResponse,
    Message,
    RequestHeader,
)
from kraft.net.server import Connection

logger = logging.getLogger(__name__)

# After a follower catching up wakes the ISR task: its next fetches (which wake it again)
# coalesce, and an expansion in flight is not asked for twice before its metadata arrives.
ISR_WAKE_COALESCE_S = 0.05


class Broker:
    def __init__(
        self,
        config: NodeConfig,
        image: MetadataImage,
        log_manager: LogManager,
        controller: Controller,
        cluster_id: str,
        broker_epoch_getter: Callable[[], int] = lambda: -1,
        clock: Callable[[], int] = monotonic_ms,
        metrics: NodeMetrics | None = None,
        inter_broker_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or NodeMetrics()
        self.node_id = config.node_id
        self.image = image
        self.log_manager = log_manager
        self.controller = controller
        self.cluster_id = cluster_id
        self.broker_epoch = broker_epoch_getter
        self.clock = clock  # milliseconds, for replica lag; a simulation injects its own
        self._isr_wake = asyncio.Event()
        self.metadata_ready = False
        # Topic → (its config overrides, the LogConfig built from them): rebuilt on change.
        self._topic_configs: dict[str, tuple[dict[str, str], LogConfig]] = {}
        # The way to the active controller, this node's own when it is the active one (set
        # by the node before it serves; None only in tests that need no controller).
        self.controller_client: ControllerClient | None = None
        self.tag = f"[broker {self.node_id}] "
        self.replica_manager = ReplicaManager(
            self.node_id,
            log_manager,
            lambda: self.image,
            ReplicaFetcherManager(
                self.node_id,
                self.endpoint_of,
                self.tag,
                settings=FetchSettings(
                    max_wait_ms=config.replica_fetch_wait_max_ms,
                    partition_max_bytes=config.replica_fetch_max_bytes,
                    ssl_context=inter_broker_ssl,
                ),
            ),
            clock=clock,
            # Through a lambda: a simulation replaces the event after construction.
            on_follower_caught_up=lambda: self._isr_wake.set(),
            tag=self.tag,
            metrics=self.metrics,
        )
        self.replica_manager.fetchers.on_bytes = self.metrics.replication_bytes_in.inc
        self.forwarding = ForwardingManager(lambda: self.controller_client)
        self.producer_ids = ProducerIdManager(
            self.node_id, lambda: self.broker_epoch(), lambda: self.controller_client
        )
        self.groups = GroupCoordinatorService(
            config,
            lambda: self.image,
            CoordinatorPartitionWriter(self.replica_manager),
            self.forwarding.create_topics,
            tag=self.tag,
        )
        self.apis = KafkaApis(
            node_id=self.node_id,
            cluster_id=cluster_id,
            config=config,
            image=lambda: self.image,
            replica_manager=self.replica_manager,
            groups=self.groups,
            forwarding=self.forwarding,
            next_producer_id=self.producer_ids.next_producer_id,
            tag=self.tag,
            metrics=self.metrics,
        )

    @property
    def partitions(self) -> dict[tuple[str, int], Partition]:
        return self.replica_manager.partitions

    @property
    def fetchers(self) -> ReplicaFetcherManager:
        return self.replica_manager.fetchers

    # ---------------------------------------------------------------- requests

    async def handle(
        self, header: RequestHeader, request: Message, conn: Connection
    ) -> Message | None:
        return await self.apis.handle(header, request, conn)

    async def forward(self, request: Message, version: int | None = None) -> Message:
        """The active controller's answer (`ForwardingManager.forward`)."""
        return await self.forwarding.forward(request, version)

    @property
    def supported_versions(self) -> dict[int, tuple[int, int]]:
        return self.apis.supported_versions

    def api_versions_range(self) -> tuple[int, int]:
        return self.supported_versions[API_VERSIONS_KEY]

    # ------------------------------------------------------------ metadata

    def topic_config(self, topic: str) -> dict[str, str]:
        return self.image.topic_config(topic)

    def log_config(self, topic: str) -> LogConfig:
        return log_config_for(self.config.log_config, self.image.topic_config(topic))

    def min_insync_replicas(self, topic: str) -> int:
        value = self.image.topic_config(topic).get("min.insync.replicas")
        return int(value) if value is not None else self.config.min_insync_replicas

    def on_metadata_change(self) -> None:
        """Make the hosted partitions match the image: create logs, take leadership or
        follow, delete logs of removed topics.

        Nothing happens until `metadata_ready`: while a restarted node replays the metadata
        log its image is partial, and acting on it would lead stale partitions and delete
        logs of topics it has not replayed yet."""
        if not self.metadata_ready:
            return
        wanted: set[tuple[str, int]] = set()
        configs: dict[str, tuple[dict[str, str], LogConfig]] = {}
        replicas = self.replica_manager
        for topic in self.image.topics.values():
            overrides = self.image.topic_config(topic.name)
            cached = self._topic_configs.get(topic.name)
            if cached is None or cached[0] != overrides:
                cached = (overrides, self.log_config(topic.name))
            configs[topic.name] = cached
            min_isr = self.min_insync_replicas(topic.name)
            for index, state in topic.partitions.items():
                if self.node_id not in state.replicas:
                    continue
                wanted.add((topic.name, index))
                partition = replicas.get_or_create_partition(
                    topic.name, index, topic.topic_id, cached[1]
                )
                partition.min_insync_replicas = min_isr
                if (
                    partition.partition_epoch == state.partition_epoch
                    and partition.leader_epoch == state.leader_epoch
                ):
                    continue  # every change of leader, replicas or ISR bumps an epoch
                if state.leader == self.node_id:
                    self._count_isr_change(partition, state.leader_epoch, state.isr)
                    replicas.become_leader(
                        partition,
                        state.leader_epoch,
                        state.partition_epoch,
                        state.replicas,
                        state.isr,
                    )
                else:
                    replicas.become_follower(
                        partition,
                        state.leader,
                        state.leader_epoch,
                        state.partition_epoch,
                        state.replicas,
                        state.isr,
                    )
        self._topic_configs = configs
        for gone in self.metrics.topics() - self.image.topics.keys():
            self.metrics.forget_topic(gone)
        for key in list(replicas.partitions):
            if key not in wanted:
                replicas.stop_replica(key)
        # Logs on disk for partitions the image does not know (deleted now or while down).
        for key in list(self.log_manager.all_logs()):
            if key not in wanted:
                try:
                    self.log_manager.delete_log(*key)
                except OSError as e:
                    # The metadata change stands; the files stay for the next start-up.
                    logger.error("%scannot delete the log of %s-%d: %s", self.tag, *key, e)
        # The group coordinator follows the leadership of the __consumer_offsets partitions.
        self.groups.on_metadata_change()

    def _count_isr_change(self, partition: Partition, leader_epoch: int, isr: list[int]) -> None:
        """IsrShrinks/IsrExpands: an ISR change committed for a partition this broker keeps
        leading (same leader epoch; a new leader's first ISR is no shrink or expansion)."""
        if not partition.is_leader or partition.leader_epoch != leader_epoch:
            return
        before, after = set(partition.isr), set(isr)
        if before - after:
            self.metrics.isr_shrinks.inc()
        if after - before:
            self.metrics.isr_expands.inc()

    async def maintain_isr(self) -> None:
        """Leaders shrink and expand their ISR through AlterPartition (every lag/2, like
        Kafka's isr-expiration task, and at once when a follower has caught up); the change
        takes effect when the metadata arrives."""
        lag = self.config.replica_lag_time_max_ms
        while True:
            try:
                async with asyncio.timeout(max(lag / 2000, 0.05)):
                    await self._isr_wake.wait()
                await asyncio.sleep(ISR_WAKE_COALESCE_S)
            except TimeoutError:
                pass
            self._isr_wake.clear()
            if self.controller_client is None:
                continue
            request = self.isr_changes(self.clock())
            if request is None:
                continue
            try:
                response = await self.controller_client.send(request, timeout_s=FORWARD_TIMEOUT_S)
            except TimeoutError:
                logger.warning("%sAlterPartition got no answer", self.tag)
                continue
            except Exception:
                logger.exception("%sAlterPartition failed", self.tag)
                continue
            if isinstance(response, AlterPartitionResponse):
                self.isr_changes_answered(request, response)

    def isr_changes(self, now_ms: int) -> AlterPartitionRequest | None:
        """The AlterPartition request for the ISR changes the partitions led here want now."""
        lag = self.config.replica_lag_time_max_ms
        alive = set(self.image.unfenced_brokers())
        topics: dict[str, list[AlterPartitionRequest.PartitionData]] = {}
        ids: dict[str, uuid.UUID] = {}
        for (topic, index), p in list(self.replica_manager.partitions.items()):
            new_isr = p.isr_change(now_ms, lag, alive)
            if new_isr is None and self._recovering(topic, index, p):
                # Elected by an unclean election: there is nothing to recover here (no
                # transaction state yet), so the leader reports RECOVERED at once.
                new_isr = list(p.isr)
                logger.info("%s%s-%d: reporting recovery complete", self.tag, topic, index)
            elif new_isr is None and p.pending_isr:
                # An earlier request went unanswered and may yet be committed: asking for the
                # ISR as it is gets an answer that settles it.
                new_isr = list(p.isr)
            elif new_isr is None:
                continue
            else:
                logger.info(
                    "%s%s-%d: asking to change the ISR %s -> %s",
                    self.tag,
                    topic,
                    index,
                    p.isr,
                    new_isr,
                )
            p.pending_isr.update(r for r in new_isr if r not in p.isr)
            ids[topic] = p.topic_id
            topics.setdefault(topic, []).append(
                AlterPartitionRequest.PartitionData(
                    partition_index=index,
                    leader_epoch=p.leader_epoch,
                    # v3+ carries the ISR with broker epochs (KIP-903) instead of new_isr.
                    new_isr_with_epochs=[
                        AlterPartitionRequest.BrokerState(
                            broker_id=b, broker_epoch=self._epoch_of(b)
                        )
                        for b in new_isr
                    ],
                    partition_epoch=p.partition_epoch,
                    leader_recovery_state=0,  # RECOVERED
                )
            )
        if not topics:
            return None
        return AlterPartitionRequest(
            broker_id=self.node_id,
            broker_epoch=self.broker_epoch(),
            topics=[
                AlterPartitionRequest.TopicData(topic_name=t, topic_id=ids[t], partitions=parts)
                for t, parts in topics.items()
            ],
        )

    def isr_changes_answered(
        self, request: AlterPartitionRequest, response: AlterPartitionResponse
    ) -> None:
        """The controller's answer to `isr_changes`: where it still has the partition epoch
        the request was made under (and this leader has too), nothing was committed, so the
        pending ISR additions are settled; otherwise the metadata will bring the change."""
        if response.error_code:
            return
        names = {t.topic_id: t.topic_name for t in request.topics}
        asked = {
            (t.topic_name, p.partition_index): p.partition_epoch
            for t in request.topics
            for p in t.partitions
        }
        for answer in response.topics:
            name = answer.topic_name or names.get(answer.topic_id, "")
            for data in answer.partitions:
                partition = self.replica_manager.get_partition((name, data.partition_index))
                sent = asked.get((name, data.partition_index))
                if (
                    partition is not None
                    and sent == data.partition_epoch == partition.partition_epoch
                ):
                    partition.pending_isr.clear()

    def _recovering(self, topic: str, index: int, partition: Partition) -> bool:
        """Whether this leader's current term began with an unclean election (its leader
        recovery state is RECOVERING in the metadata it leads by)."""
        state = self.image.partition(topic, index)
        return (
            partition.is_leader
            and state is not None
            and state.leader_recovery_state == 1
            and (state.leader_epoch, state.partition_epoch)
            == (partition.leader_epoch, partition.partition_epoch)
        )

    def _epoch_of(self, broker_id: int) -> int:
        reg = self.image.brokers.get(broker_id)
        return reg.epoch if reg is not None else -1

    def endpoint_of(self, broker_id: int) -> tuple[str, int] | None:
        """Where to reach a registered broker for replication: its inter-broker listener, or
        the address this node's config gives for it (`kraft.peer.broker.<id>.address`, e.g.
        a proxy on this directed link)."""
        reg = self.image.brokers.get(broker_id)
        if reg is None:
            return None
        override = self.config.peer_address("broker", broker_id)
        return override or reg.endpoints.get(self.config.inter_broker_listener_name)
