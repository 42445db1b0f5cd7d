"""The active controller of the simulation."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from kraft.config import NodeConfig
from kraft.controller.controller import Controller, ControllerDefaults, Result, TopicSpec
from kraft.controller.replication import BrokerHeartbeats
from kraft.controller.service import (
    ControllerService,
    _alter_command,
    _leaderless_command,
    _preferred_command,
    alter_partition_data,
    stale_broker_epoch,
)
from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataLog
from kraft.net.protocol import (
    AlterPartitionRequest,
    AlterPartitionResponse,
    ErrorCode,
    decode_message,
    decode_metadata_record,
    encode_message,
    encode_metadata_record,
)
from tests.net.replication_sim.model import (
    ALTER_PARTITION_VERSION,
    BROKERS,
    CONTROLLER,
    INDEX,
    TOPIC,
)

if TYPE_CHECKING:
    from tests.net.replication_sim.world import Sim


class SimController:
    """The active controller: ControllerService's request handling without sockets, running
    the real commands (`Controller`, the service's own command builders over
    `kraft.controller.replication`) and committing their records at once."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.image = MetadataImage()
        self.log: list[bytes] = []
        self.controller = Controller(
            self.image,
            cast(MetadataLog, None),  # records are committed by `run` below
            ControllerDefaults(num_partitions=1, default_replication_factor=len(BROKERS)),
            rng=random.Random(sim.seed),
        )
        config = NodeConfig(
            node_id=CONTROLLER,
            process_roles=("controller",),
            listeners=(),
            advertised_listeners=(),
            log_dirs=(sim.root,),
            broker_session_timeout_ms=sim.timing.session_timeout_ms,
        )
        self.service = ControllerService(
            config,
            "sim",
            self.image,
            self.controller,
            is_active=lambda: True,
            quorum_status=lambda: None,
            last_offset=lambda: self.image.last_offset,
        )
        self.heartbeats = BrokerHeartbeats(sim.clock)
        self.service.heartbeats = self.heartbeats
        self.replicas = sim.rng.sample(BROKERS, len(BROKERS))

    def start(self) -> None:
        timing = self.sim.timing
        self._every(timing.session_check_ms, "expire sessions", self._expire_sessions)
        self._every(timing.preferred_leader_ms, "rebalance leaders", self._rebalance_leaders)

    def _every(self, period: int, label: str, job: Callable[[], None]) -> None:
        def run() -> None:
            job()
            self.sim.after(period, label, run)

        self.sim.after(period, label, run)

    def run(self, command: Callable[[MetadataImage], Result[Any]]) -> Any:
        """Controller.run: the command sees the image, its records are committed (encoded, as
        in the metadata log) and applied before it answers."""
        result = command(self.image)
        for record in result.records:
            data = encode_metadata_record(record)
            offset = len(self.log)
            self.log.append(data)
            self.image.apply(decode_metadata_record(data), offset)
        return result.response

    # ---------------------------------------------------------- requests

    def register(self, broker_id: int, incarnation: uuid.UUID, previous_epoch: int) -> int:
        """ControllerService._register."""
        existing = self.image.brokers.get(broker_id)
        if existing is not None and existing.incarnation_id == incarnation:
            self.heartbeats.touch(broker_id)
            return existing.epoch
        unclean = existing is not None and previous_epoch != existing.epoch
        command = self.service._registration_command(
            broker_id, incarnation, [], None, unclean_shutdown=unclean
        )
        epoch: int = self.run(command)
        self.heartbeats.touch(broker_id)
        return epoch

    def heartbeat(
        self, broker_id: int, epoch: int, applied: int, shut_down: bool
    ) -> tuple[int, bool, bool]:
        """ControllerService._heartbeat: (error code, fenced, may shut down)."""
        broker = self.image.brokers.get(broker_id)
        if broker is None:
            return ErrorCode.BROKER_ID_NOT_REGISTERED, True, False
        if broker.epoch != epoch:
            return ErrorCode.STALE_BROKER_EPOCH, True, False
        self.heartbeats.touch(broker_id)
        if shut_down:
            # Controlled shutdown: leaderships move away first.
            self.run(self.service._shutdown_command(broker_id, epoch))
            state = self.image.partition(TOPIC, INDEX)
            return 0, True, state is None or state.leader != broker_id
        if broker.fenced and applied >= broker.epoch:
            self.run(self.controller.unfence_broker(broker_id, epoch))
            self._maybe_create_topic()
        current = self.image.brokers.get(broker_id)
        return 0, current is None or current.fenced, False

    def _maybe_create_topic(self) -> None:
        if TOPIC in self.image.topics or len(self.image.unfenced_brokers()) < len(BROKERS):
            return
        spec = TopicSpec(
            TOPIC,
            assignments={INDEX: self.replicas},
            configs={"min.insync.replicas": str(self.sim.min_insync_replicas)},
        )
        self.run(self.controller.create_topics([spec], False))

    def _expire_sessions(self) -> None:
        """ControllerService._expire_sessions."""
        for broker_id in self.heartbeats.expired(self.sim.timing.session_timeout_ms):
            self.heartbeats.forget(broker_id)
            broker = self.image.brokers.get(broker_id)
            if broker is None or broker.fenced:
                continue
            self.run(self.service._fence_command(broker_id))

    def _rebalance_leaders(self) -> None:
        """ControllerService._rebalance_leaders."""
        self.run(_leaderless_command(self.controller))
        self.run(_preferred_command(self.controller))

    def alter_partition(self, data: bytes) -> bytes:
        """ControllerService._alter_partition."""
        request = decode_message(AlterPartitionRequest, data, ALTER_PARTITION_VERSION)
        if stale_broker_epoch(self.image, request):
            response = AlterPartitionResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
            return bytes(encode_message(response, ALTER_PARTITION_VERSION))
        topics = []
        for t in request.topics:
            parts = []
            for p in t.partitions:
                isr = list(p.new_isr) or [b.broker_id for b in p.new_isr_with_epochs]
                code = self.run(
                    _alter_command(
                        self.controller,
                        request.broker_id,
                        t.topic_id,
                        p.partition_index,
                        p.leader_epoch,
                        p.partition_epoch,
                        isr,
                        p.leader_recovery_state,
                    )
                )
                parts.append(alter_partition_data(self.image, t.topic_id, p.partition_index, code))
            topics.append(
                AlterPartitionResponse.TopicData(
                    topic_name=t.topic_name, topic_id=t.topic_id, partitions=parts
                )
            )
        response = AlterPartitionResponse(topics=topics)
        return bytes(encode_message(response, ALTER_PARTITION_VERSION))

    def records_after(self, offset: int) -> list[tuple[int, bytes]]:
        start = offset + 1
        return [(start + i, r) for i, r in enumerate(self.log[start : start + 64])]
