"""The controller's request service on the CONTROLLER listener (Kafka's ControllerApis).

Brokers talk to the active controller here: BrokerRegistration, BrokerHeartbeat,
AlterPartition, AllocateProducerIds, DescribeQuorum, the admin requests they forward
(CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, IncrementalAlterConfigs,
ElectLeaders, and kraft's own TransferLeadership, which no ApiVersions answer lists), and
broker-only nodes' Fetch / FetchSnapshot of the metadata log
(`metadata_fetch`). A controller that is not active answers NOT_CONTROLLER so the caller
tries another.

The active controller also owns broker sessions: a broker that has not heartbeated for
`broker.session.timeout.ms` is fenced and loses its leaderships.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kraft.config import NodeConfig
from kraft.controller.admin_requests import AdminRequests
from kraft.controller.controller import Controller, Result
from kraft.controller.metadata_fetch import MetadataFetch
from kraft.controller.replication import (
    BrokerHeartbeats,
    alter_partition,
    elect_leaderless,
    partitions_of,
    preferred_leader_changes,
    remove_broker,
    usable_brokers,
)
from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataCommitTimeout, NotController
from kraft.metadata.record_log import METADATA_TOPIC
from kraft.net.protocol import (
    API_KEYS,
    AllocateProducerIdsRequest,
    AllocateProducerIdsResponse,
    AlterPartitionRequest,
    AlterPartitionResponse,
    ApiVersionsRequest,
    ApiVersionsResponse,
    BrokerHeartbeatRequest,
    BrokerHeartbeatResponse,
    BrokerRegistrationRequest,
    BrokerRegistrationResponse,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    ErrorCode,
    Message,
    RequestHeader,
)
from kraft.net.protocol import _generated as m
from kraft.net.server import CloseConnection, Connection

logger = logging.getLogger(__name__)

SESSION_CHECK_INTERVAL_S = 0.25
# auto.leader.rebalance.enable with leader.imbalance.check.interval.seconds (Kafka: 300 s).
PREFERRED_LEADER_CHECK_S = 30.0


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class ControllerService:
    def __init__(
        self,
        config: NodeConfig,
        cluster_id: str,
        image: MetadataImage,
        controller: Controller,
        is_active: Callable[[], bool],
        quorum_status: Callable[[], Any],
        last_offset: Callable[[], int],
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.cluster_id = cluster_id
        self.image = image
        self.controller = controller
        self.is_active = is_active
        self.quorum_status = quorum_status
        self.last_offset = last_offset
        self.heartbeats = BrokerHeartbeats(_monotonic_ms)
        self.tag = f"[controller {config.node_id}] "
        self._tasks: list[asyncio.Task[None]] = []
        # Brokers following the metadata log (Fetch / FetchSnapshot on __cluster_metadata).
        self.metadata_fetch = MetadataFetch(
            config.node_id,
            cluster_id,
            image,
            is_active,
            leader=lambda: (quorum_status().leader_id, quorum_status().term),
        )
        self._handlers: dict[int, Callable[[RequestHeader, Any], Awaitable[Message]]] = {
            18: self._api_versions,
            1: self.metadata_fetch.fetch,
            59: self.metadata_fetch.fetch_snapshot,
            62: self._register,
            63: self._heartbeat,
            56: self._alter_partition,
            67: self._allocate_producer_ids,
            55: self._describe_quorum,
        }
        self.admin = AdminRequests(config, image, controller, self.tag, may_decide=is_active)
        for api_key in AdminRequests.API_KEYS | AdminRequests.OWN_API_KEYS:
            self._handlers[api_key] = self._admin
        # kraft's own requests are not advertised: only kraft's controller client sends them.
        self.versions = {
            k: (0, API_KEYS[k].max_version)
            for k in self._handlers
            if k not in AdminRequests.OWN_API_KEYS
        }

    # ------------------------------------------------------------------ server

    def api_versions_range(self) -> tuple[int, int]:
        return self.versions[18]

    async def handle(
        self, header: RequestHeader, request: Message, conn: Connection
    ) -> Message | None:
        handler = self._handlers.get(header.api_key)
        if handler is None:
            raise CloseConnection(f"api key {header.api_key} is not served by controllers")
        return await handler(header, request)

    async def handle_request(self, request: Message, version: int) -> Message:
        """A request from this node's own broker, answered in-process (the controller
        client's local path): as if it had come over the CONTROLLER listener."""
        api_key = type(request).API_KEY
        assert api_key is not None
        handler = self._handlers.get(api_key)
        if handler is None:
            raise ValueError(f"api key {api_key} is not served by controllers")
        return await handler(
            RequestHeader(api_key=api_key, api_version=version, correlation_id=0), request
        )

    async def _api_versions(self, header: RequestHeader, request: ApiVersionsRequest) -> Message:
        return ApiVersionsResponse(
            api_keys=[
                ApiVersionsResponse.ApiVersion(api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(self.versions.items())
            ]
        )

    async def _run(self, command: Callable[[MetadataImage], Result[Any]]) -> tuple[int, Any]:
        """Run a command as the active controller: (error code, response)."""
        if not self.is_active():
            return ErrorCode.NOT_CONTROLLER, None
        try:
            return 0, await self.controller.run(command)
        except NotController:
            return ErrorCode.NOT_CONTROLLER, None
        except MetadataCommitTimeout:
            return ErrorCode.REQUEST_TIMED_OUT, None

    # ------------------------------------------------------------- brokers

    async def _register(self, header: RequestHeader, request: BrokerRegistrationRequest) -> Message:
        if request.cluster_id != self.cluster_id:
            return BrokerRegistrationResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        if not self.is_active():
            return BrokerRegistrationResponse(error_code=ErrorCode.NOT_CONTROLLER)
        existing = self.image.brokers.get(request.broker_id)
        if existing is not None and existing.incarnation_id == request.incarnation_id:
            # A retry of a registration that was committed.
            self.heartbeats.touch(request.broker_id)
            return BrokerRegistrationResponse(broker_epoch=existing.epoch)
        endpoints = [(x.name, x.host, x.port) for x in request.listeners]
        # KIP-966: a broker that shut down cleanly names the epoch it had then; any other
        # value means it may have lost unflushed writes, and it leaves every ELR.
        unclean = existing is not None and request.previous_broker_epoch != existing.epoch
        code, epoch = await self._run(
            self._registration_command(
                request.broker_id,
                request.incarnation_id,
                endpoints,
                request.rack or None,
                unclean_shutdown=unclean,
            )
        )
        if code:
            return BrokerRegistrationResponse(error_code=code)
        self.heartbeats.touch(request.broker_id)
        logger.info("%sregistered broker %d at epoch %d", self.tag, request.broker_id, epoch)
        if unclean:
            logger.info(
                "%sbroker %d registers after an unclean shutdown (previous epoch %d, not %d): "
                "it leaves every ELR",
                self.tag,
                request.broker_id,
                request.previous_broker_epoch,
                existing.epoch if existing else -1,
            )
        return BrokerRegistrationResponse(broker_epoch=epoch)

    def _registration_command(
        self,
        broker_id: int,
        incarnation: uuid.UUID,
        endpoints: list[tuple[str, str, int]],
        rack: str | None,
        unclean_shutdown: bool = False,
    ) -> Callable[[MetadataImage], Result[int]]:
        register = self.controller.register_broker(broker_id, incarnation, endpoints, rack, True)

        def command(image: MetadataImage) -> Result[int]:
            result = register(image)
            # A restarted broker is a new incarnation: its old self leads nothing any more.
            moves = self._remove_broker(image, broker_id, unclean_shutdown=unclean_shutdown)
            return Result(list(result.records) + moves, result.response)

        return command

    def _remove_broker(
        self, image: MetadataImage, broker_id: int, unclean_shutdown: bool = False
    ) -> list[Message]:
        return remove_broker(
            image,
            broker_id,
            self.controller.unclean_for(image),
            usable_brokers(image),
            self.controller.min_isr_for(image),
            unclean_shutdown=unclean_shutdown,
        )

    async def _heartbeat(self, header: RequestHeader, request: BrokerHeartbeatRequest) -> Message:
        if not self.is_active():
            return BrokerHeartbeatResponse(error_code=ErrorCode.NOT_CONTROLLER)
        broker = self.image.brokers.get(request.broker_id)
        if broker is None:
            return BrokerHeartbeatResponse(error_code=ErrorCode.BROKER_ID_NOT_REGISTERED)
        if broker.epoch != request.broker_epoch:
            return BrokerHeartbeatResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
        self.heartbeats.touch(request.broker_id)
        caught_up = request.current_metadata_offset >= broker.epoch
        broker_id, epoch = request.broker_id, request.broker_epoch
        if request.want_shut_down:
            code, _ = await self._run(self._shutdown_command(broker_id, epoch))
            if code:
                return BrokerHeartbeatResponse(error_code=code)
            leads = any(
                ref.state.leader == broker_id for ref in partitions_of(self.image, broker_id)
            )
            return BrokerHeartbeatResponse(
                is_caught_up=caught_up, is_fenced=True, should_shut_down=not leads
            )
        if broker.fenced and caught_up and not request.want_fence:
            code, _ = await self._run(self.controller.unfence_broker(broker_id, epoch))
            if code:
                return BrokerHeartbeatResponse(error_code=code)
            logger.info("%sunfenced broker %d (caught up to %d)", self.tag, broker_id, epoch)
        current = self.image.brokers.get(broker_id)
        return BrokerHeartbeatResponse(
            is_caught_up=caught_up, is_fenced=current is None or current.fenced
        )

    def _fence_command(self, broker_id: int) -> Callable[[MetadataImage], Result[None]]:
        def command(image: MetadataImage) -> Result[None]:
            broker = image.brokers.get(broker_id)
            if broker is None or broker.fenced:
                return Result([], None)
            records: list[Message] = [m.FenceBrokerRecord(id=broker_id, epoch=broker.epoch)]
            records += self._remove_broker(image, broker_id)
            return Result(records, None)

        return command

    def _shutdown_command(
        self, broker_id: int, epoch: int
    ) -> Callable[[MetadataImage], Result[None]]:
        """Controlled shutdown: leaderships move away now, not after a session timeout."""

        def command(image: MetadataImage) -> Result[None]:
            broker = image.brokers.get(broker_id)
            if broker is None or broker.epoch != epoch:
                return Result([], None)
            records: list[Message] = []
            if not broker.in_controlled_shutdown:
                records.append(
                    m.BrokerRegistrationChangeRecord(
                        broker_id=broker_id, broker_epoch=epoch, in_controlled_shutdown=1
                    )
                )
            records += self._remove_broker(image, broker_id)
            return Result(records, None)

        return command

    # ------------------------------------------------------------ sessions

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._expire_sessions()),
            asyncio.create_task(self._rebalance_leaders()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []

    async def _rebalance_leaders(self) -> None:
        """Preferred-leader election: leadership returns to each partition's first replica
        once it is back in the ISR (so a restarted broker takes its share again). First,
        leaderless partitions get any leader they can have now, uncleanly where the topic
        allows it (Kafka's periodic unclean-election check)."""
        while True:
            await asyncio.sleep(PREFERRED_LEADER_CHECK_S)
            if self.is_active():
                await self._run(_leaderless_command(self.controller))
                await self._run(_preferred_command(self.controller))

    def on_became_active(self, previous_leader_silent_ms: int | None = None) -> None:
        """A new active controller gives every registered broker a fresh session: their
        heartbeats went to the previous leader, which kept them to itself.

        The session counts from the last moment the previous leader was heard from (until
        then the brokers' heartbeats could reach it), but leaves each broker at least two
        heartbeat intervals from now to find this controller. So a broker that went silent
        with the previous leader (the same frozen process) is fenced one session after it
        went silent, not one session after the election, while a healthy broker whose
        heartbeat was waiting on the frozen leader has time to retry here."""
        timeout = self.config.broker_session_timeout_ms
        grace = 2 * self.config.broker_heartbeat_interval_ms
        age = min(previous_leader_silent_ms or 0, max(timeout - grace, 0))
        self.heartbeats.reset(self.image.brokers, age_ms=age)
        logger.info(
            "%sactive: every broker's session restarts (%d ms already spent)", self.tag, age
        )

    async def _expire_sessions(self) -> None:
        timeout = self.config.broker_session_timeout_ms
        last = _monotonic_ms()
        while True:
            await asyncio.sleep(SESSION_CHECK_INTERVAL_S)
            now = _monotonic_ms()
            gap, last = now - last, now
            if gap > timeout // 2:
                # This process was frozen (SIGSTOP, a stalled host): the brokers' heartbeats
                # are waiting in its sockets, unread. Silence it caused is no evidence.
                logger.warning(
                    "%sno session check for %d ms: every broker's session restarts",
                    self.tag,
                    gap,
                )
                self.heartbeats.reset(self.heartbeats.known())
                continue
            if not self.is_active():
                continue
            for broker_id in self.heartbeats.expired(timeout):
                # Checked again before each decision: an earlier fence took time, and the
                # leadership may have gone meanwhile.
                if not self.is_active():
                    break
                self.heartbeats.forget(broker_id)
                broker = self.image.brokers.get(broker_id)
                if broker is None or broker.fenced:
                    continue
                logger.info(
                    "%sfencing broker %d: no heartbeat for %d ms", self.tag, broker_id, timeout
                )
                await self._run(self._fence_command(broker_id))

    # ---------------------------------------------------------- partitions

    async def _alter_partition(
        self, header: RequestHeader, request: AlterPartitionRequest
    ) -> Message:
        if not self.is_active():
            return AlterPartitionResponse(error_code=ErrorCode.NOT_CONTROLLER)
        if stale_broker_epoch(self.image, request):
            return AlterPartitionResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
        topics = []
        for t in request.topics:
            topic_id = t.topic_id
            if not topic_id.int and t.topic_name in self.image.topics:
                topic_id = self.image.topics[t.topic_name].topic_id
            parts = []
            for p in t.partitions:
                isr = list(p.new_isr) or [b.broker_id for b in p.new_isr_with_epochs]
                code, result = await self._run(
                    _alter_command(
                        self.controller,
                        request.broker_id,
                        topic_id,
                        p.partition_index,
                        p.leader_epoch,
                        p.partition_epoch,
                        isr,
                        p.leader_recovery_state,
                    )
                )
                code = code or result
                parts.append(alter_partition_data(self.image, topic_id, p.partition_index, code))
            topics.append(
                AlterPartitionResponse.TopicData(
                    topic_name=t.topic_name, topic_id=topic_id, partitions=parts
                )
            )
        return AlterPartitionResponse(topics=topics)

    async def _allocate_producer_ids(
        self, header: RequestHeader, request: AllocateProducerIdsRequest
    ) -> Message:
        code, block = await self._run(
            self.controller.allocate_producer_ids(request.broker_id, request.broker_epoch)
        )
        if code:
            return AllocateProducerIdsResponse(error_code=code)
        start, length = block
        return AllocateProducerIdsResponse(producer_id_start=start, producer_id_len=length)

    async def _describe_quorum(
        self, header: RequestHeader, request: DescribeQuorumRequest
    ) -> Message:
        status = self.quorum_status()
        if not self.is_active():
            return DescribeQuorumResponse(
                error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER,
                error_message="DescribeQuorum is answered by the active controller",
            )
        voters = [
            DescribeQuorumResponse.ReplicaState(
                replica_id=v.node_id,
                log_end_offset=(v.match_index if v.match_index is not None else -1),
                last_fetch_timestamp=-1,
                last_caught_up_timestamp=-1,
            )
            for v in status.voters
        ]
        return DescribeQuorumResponse(
            topics=[
                DescribeQuorumResponse.TopicData(
                    topic_name=METADATA_TOPIC,
                    partitions=[
                        DescribeQuorumResponse.PartitionData(
                            partition_index=0,
                            leader_id=status.leader_id if status.leader_id is not None else -1,
                            leader_epoch=status.term,
                            high_watermark=status.commit_index,
                            current_voters=voters,
                        )
                    ],
                )
            ]
        )

    # ------------------------------------------------------------ forwarded

    async def _admin(self, header: RequestHeader, request: Message) -> Message:
        return await self.admin.handle(request, header.api_version)


def _leaderless_command(controller: Controller) -> Callable[[MetadataImage], Result[None]]:
    def command(image: MetadataImage) -> Result[None]:
        records = elect_leaderless(
            image,
            usable_brokers(image),
            controller.unclean_for(image),
            controller.min_isr_for(image),
        )
        return Result(records, None)

    return command


def _preferred_command(controller: Controller) -> Callable[[MetadataImage], Result[None]]:
    def command(image: MetadataImage) -> Result[None]:
        records = preferred_leader_changes(
            image, usable_brokers(image), controller.min_isr_for(image)
        )
        return Result(records, None)

    return command


def _alter_command(
    controller: Controller,
    broker_id: int,
    topic_id: uuid.UUID,
    index: int,
    leader_epoch: int,
    partition_epoch: int,
    isr: list[int],
    recovery: int,
) -> Callable[[MetadataImage], Result[int]]:
    def command(image: MetadataImage) -> Result[int]:
        result = alter_partition(
            image,
            broker_id,
            topic_id,
            index,
            leader_epoch,
            partition_epoch,
            isr,
            recovery,
            controller.min_isr_for(image),
            controller.unclean_for(image),
        )
        return Result([result.record] if result.record else [], result.error_code)

    return command


def stale_broker_epoch(image: MetadataImage, request: AlterPartitionRequest) -> bool:
    """AlterPartition from a broker that is not registered, or not with this epoch."""
    broker = image.brokers.get(request.broker_id)
    return broker is None or (request.broker_epoch >= 0 and broker.epoch != request.broker_epoch)


def alter_partition_data(
    image: MetadataImage, topic_id: uuid.UUID, index: int, error_code: int
) -> AlterPartitionResponse.PartitionData:
    """One partition of an AlterPartition answer: the error and the partition as it is now."""
    topic = image.topics_by_id.get(topic_id)
    state = topic.partitions.get(index) if topic else None
    return AlterPartitionResponse.PartitionData(
        partition_index=index,
        error_code=error_code,
        leader_id=state.leader if state else -1,
        leader_epoch=state.leader_epoch if state else -1,
        isr=list(state.isr) if state else [],
        leader_recovery_state=state.leader_recovery_state if state else 0,
        partition_epoch=state.partition_epoch if state else -1,
    )
