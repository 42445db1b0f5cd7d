"""A node: one process, one asyncio loop, assembling storage, metadata, controller and broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from kraft.config import ConfigError, Endpoint, NodeConfig
from kraft.controller.client import ControllerClient
from kraft.controller.controller import Controller, ControllerDefaults
from kraft.log.cleaner import LogCleaner
from kraft.log.manager import LogManager
from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataLog, MetadataPublisher, NotController
from kraft.metadata.record_log import METADATA_TOPIC, LocalRecordLog
from kraft.metrics import NodeMetrics
from kraft.net.broker.broker import Broker
from kraft.net.broker.lifecycle import BrokerLifecycle
from kraft.net.broker.metadata_follower import MetadataFollower
from kraft.net.protocol import Message
from kraft.net.server import KafkaServer, RequestHandler
from kraft.node_metrics import NodeCollector
from kraft.security.faultlog import PeerFaultLog
from kraft.security.sasl import SaslGate, sasl_listeners
from kraft.security.scram import ScramCredential
from kraft.security.tls import CertificateReloader, NodeTls, node_tls
from kraft.storage import ensure_formatted

if TYPE_CHECKING:
    from kraft.admin.server import AdminServer
    from kraft.controller.service import ControllerService
    from kraft.metadata.quorum_log import QuorumMetadataLog
    from kraft.quorum import Quorum

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 5.0
# How often SSL listeners' keystore and truststore files are checked for a new certificate.
TLS_RELOAD_CHECK_S = 30.0
CONTROLLED_SHUTDOWN_TIMEOUT_S = 10.0
QUORUM_DIR = "__cluster_metadata-raft"


class _ControllersLog:
    """The metadata log of a broker-only node: it never writes; the active controller does
    (the broker forwards every change to it)."""

    async def append(self, records: Sequence[Message]) -> int:
        raise NotController(None)


class Node:
    """One node. `auto_format`: format unformatted log dirs with a new cluster id rather than
    refuse to start (for starters that own the dirs: the embedded node, `kraft serve`
    without --config); see kraft.storage."""

    def __init__(self, config: NodeConfig, auto_format: bool = False) -> None:
        self.config = config
        self.auto_format = auto_format
        self.tag = f"[node {config.node_id}] "
        self.cluster_id = ""
        self.servers: list[KafkaServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.cleaner = LogCleaner(backoff_ms=config.log_cleaner_backoff_ms)
        self.broker: Broker | None = None
        self.log_manager: LogManager | None = None
        self.record_log: LocalRecordLog | None = None
        self.controller: Controller | None = None
        self.controller_servers: list[KafkaServer] = []
        self.quorum: Quorum | None = None
        self.quorum_log: QuorumMetadataLog | None = None
        self.controller_service: ControllerService | None = None
        self.lifecycle: BrokerLifecycle | None = None
        self.follower: MetadataFollower | None = None
        self.controller_client: ControllerClient | None = None
        self.admin: AdminServer | None = None
        self.tls = NodeTls()
        # This node's instruments and scrape-time gauges, in a registry of its own.
        self.metrics = NodeMetrics()
        self.metrics_collector = NodeCollector(self)
        self.metrics.registry.register(self.metrics_collector)

    async def start(self) -> None:
        cfg = self.config
        # First: a keystore that cannot be read stops start-up before anything is written.
        self.tls = node_tls(cfg)
        self.cluster_id = ensure_formatted(cfg, self.auto_format)
        image = MetadataImage()
        publisher = MetadataPublisher(image, self.tag)
        defaults = ControllerDefaults(
            cfg.num_partitions,
            cfg.default_replication_factor,
            cfg.min_insync_replicas,
            cfg.unclean_leader_election_enable,
        )
        if cfg.is_cluster and cfg.is_controller:
            metadata_log: MetadataLog = await self._start_quorum(image, publisher, defaults)
        elif cfg.is_cluster:
            # Broker-only: the metadata comes from the active controller (MetadataFollower).
            metadata_log = _ControllersLog()
        else:
            self.record_log = LocalRecordLog(cfg.metadata_dir, publisher)
            self.record_log.replay_into_publisher()
            metadata_log = self.record_log
        if not cfg.is_broker:
            self._watch_certificates()
            await self._start_admin()
            logger.info("%sstarted: controller only, cluster %s", self.tag, self.cluster_id)
            return
        controller = self.controller or Controller(
            image, metadata_log, defaults, node_tag=self.tag, metrics=self.metrics
        )
        holder: dict[str, Broker] = {}
        self.log_manager = LogManager(
            cfg.log_dirs,
            cfg.log_config,
            config_for=lambda topic: holder["broker"].log_config(topic),
            exclude={f"{METADATA_TOPIC}-0", QUORUM_DIR},
        )
        self.log_manager.on_flush = self.metrics.flush_timer()
        epoch = {"value": -1}
        broker = Broker(
            cfg,
            image,
            self.log_manager,
            controller,
            self.cluster_id,
            lambda: epoch["value"],
            metrics=self.metrics,
            inter_broker_ssl=self.tls.client_for(cfg.inter_broker_listener_name),
        )
        holder["broker"] = broker
        self.broker = broker
        self.log_manager.startup()
        # Bind first: the registered endpoints must carry the ports actually bound. Clients
        # are let in only once the broker is registered, unfenced and caught up (as Kafka
        # enables request processing): before, Metadata would not list this broker and
        # clients would wait for a controller they cannot find.
        for endpoint in cfg.listeners:
            if endpoint.listener not in cfg.controller_listener_names:
                self.servers.append(await self._listen(broker, endpoint, serving=False))
        endpoints = []
        for server in self.servers:
            adv = cfg.advertised(server.listener)
            host = adv.host if adv else server.host
            port = adv.port if adv and adv.port else server.port
            endpoints.append((server.listener, host, port))
        publisher.listeners.append(broker.on_metadata_change)
        if cfg.is_cluster:
            await self._join_cluster(broker, publisher, endpoints, epoch)
            # Unfenced means caught up with the metadata up to this broker's registration:
            # from here the image is complete enough to act on.
            broker.metadata_ready = True
            broker.on_metadata_change()
        else:
            broker.controller_client = self._single_node_client(image, controller)
            broker.metadata_ready = True  # the local log was replayed in full
            broker.on_metadata_change()
            epoch["value"] = await controller.run(
                controller.register_broker(
                    cfg.node_id, uuid.uuid4(), endpoints, cfg.broker_rack, True
                )
            )
            # A single node has caught up with its own registration once it applied it.
            await controller.run(controller.unfence_broker(cfg.node_id, epoch["value"]))
        for server in self.servers:
            await server.start_serving()
        self.cleaner.start(lambda: self.log_manager.all_logs().values() if self.log_manager else [])
        self._every(cfg.log_retention_check_interval_ms / 1000, self._retention)
        self._every(CHECKPOINT_INTERVAL_S, self._checkpoint)
        self._every(cfg.producer_id_expiration_check_interval_ms / 1000, self._expire_producers)
        if cfg.log_flush_scheduler_interval_ms < 2**62:
            self._every(cfg.log_flush_scheduler_interval_ms / 1000, self._flush)
        self._watch_certificates()
        await self._start_admin()
        logger.info(
            "%sstarted: cluster %s, listening on %s",
            self.tag,
            self.cluster_id,
            ", ".join(f"{s.listener}://{s.host}:{s.port}" for s in self.servers),
        )

    def _watch_certificates(self) -> None:
        """New connections of an SSL listener get its keystore's new certificate once the
        file changes (no restart)."""
        reloader = CertificateReloader(self.config, self.tag)
        if not reloader.watching:
            return

        async def reload() -> None:
            for listener, context in reloader.changed().items():
                for server in [*self.servers, *self.controller_servers]:
                    if server.listener == listener:
                        server.ssl_context = context

        reload.__name__ = "certificate reload"
        self._every(TLS_RELOAD_CHECK_S, reload)

    async def _start_admin(self) -> None:
        """The HTTP admin API (kraft.admin.listener), once the node is up."""
        endpoint = self.config.admin_listener
        if endpoint is None:
            return
        # Imported here: the admin API sits above the node assembly (it uses the façade).
        from kraft.admin.server import AdminServer
        from kraft.node_api import NodeApi

        admin = AdminServer(
            NodeApi(self),
            endpoint.host or "127.0.0.1",
            endpoint.port,
            self.config.admin_auth_token,
            tag=self.tag,
        )
        await admin.start()
        self.admin = admin

    async def _listen(
        self, handler: RequestHandler, endpoint: Endpoint, serving: bool = True
    ) -> KafkaServer:
        sasl = sasl_listeners(self.config).get(endpoint.listener)
        if sasl is not None:
            faults = PeerFaultLog(logger, self.tag)
            handler = SaslGate(handler, sasl, self.scram_credential, fault=faults.warn)
        server = KafkaServer(
            handler,
            endpoint.host,
            endpoint.port,
            listener=endpoint.listener,
            max_request_bytes=self.config.socket_request_max_bytes,
            log_prefix=self.tag,
            ssl_context=self.tls.servers.get(endpoint.listener),
        )
        await server.start(serving)
        return server

    async def _start_quorum(
        self, image: MetadataImage, publisher: MetadataPublisher, defaults: ControllerDefaults
    ) -> MetadataLog:
        """Controller role of a cluster: the Raft quorum, the controller and its listener."""
        from kraft.controller.service import ControllerService
        from kraft.metadata.quorum_log import QuorumMetadataLog
        from kraft.quorum import Quorum

        cfg = self.config
        for voter_id, (host, port) in cfg.raft_voters().items():
            try:
                socket.getaddrinfo(host, port)
            except OSError as e:
                key = (
                    f"kraft.peer.raft.{voter_id}.address"
                    if cfg.peer_address("raft", voter_id)
                    else "controller.quorum.voters"
                )
                raise ConfigError(
                    f"{key}: cannot resolve {host} of voter {voter_id}: {e}"
                ) from None
        qlog = QuorumMetadataLog(publisher)
        self.controller = Controller(image, qlog, defaults, node_tag=self.tag, metrics=self.metrics)
        # Decisions are taken only while the quorum's thread confirms this node leads, in
        # the term the loop knows, heard by a majority (a frozen leader wakes believing it
        # still leads).
        confirm_within_s = cfg.controller_quorum_fetch_timeout_ms / 1000
        service = ControllerService(
            cfg,
            self.cluster_id,
            image,
            self.controller,
            is_active=lambda: (
                qlog.leader_term is not None and quorum.leadership_confirmed(confirm_within_s)
            ),
            quorum_status=lambda: quorum.status(),
            last_offset=lambda: qlog.last_offset,
        )
        previous = {"leader": -1}

        def on_commit(index: int, entry: bytes) -> None:
            first = qlog.next_offset
            qlog.on_commit(index, entry)
            # Brokers fetch committed entries by metadata offset (MetadataFetch).
            service.metadata_fetch.on_commit(first, entry, qlog.next_offset - first)

        def on_leader_change(leader_id: int | None, term: int) -> None:
            was_active = qlog.leader_term is not None
            qlog.on_leader_change(leader_id, term, cfg.node_id)
            logger.info("%squorum leader %s at term %d", self.tag, leader_id, term)
            if qlog.leader_term is not None and not was_active:
                service.on_became_active(self._silent_ms(previous["leader"]))
            if leader_id is not None and leader_id != cfg.node_id:
                previous["leader"] = leader_id
            service.metadata_fetch.on_leader_change()

        quorum = Quorum(
            cfg.node_id,
            cfg.raft_voters(),  # the peers as this node dials them (kraft.peer.raft.<id>)
            os.path.join(cfg.metadata_dir, QUORUM_DIR),
            cfg.cluster_secret or self.cluster_id,
            on_commit=on_commit,
            on_leader_change=on_leader_change,
            snapshot_provider=qlog.snapshot,
            on_snapshot=qlog.load_snapshot,
            fetch_timeout_ms=cfg.controller_quorum_fetch_timeout_ms,
            election_timeout_ms=cfg.controller_quorum_election_timeout_ms,
            listen=cfg.raft_listen_address(),
            tls=self.tls.raft_links(cfg.controller_listener_names),
        )
        qlog.quorum = quorum
        self.quorum = quorum
        self.quorum_log = qlog
        self.controller_service = service
        for endpoint in cfg.listeners:
            if endpoint.listener in cfg.controller_listener_names:
                self.controller_servers.append(await self._listen(service, endpoint))
        await quorum.start()
        service.start()
        return qlog

    async def _join_cluster(
        self,
        broker: Broker,
        publisher: MetadataPublisher,
        endpoints: list[tuple[str, str, int]],
        epoch: dict[str, int],
    ) -> None:
        """Broker role of a cluster: register with the active controller, heartbeat, and wait
        until unfenced (caught up with the metadata up to its own registration)."""
        cfg = self.config
        quorum = self.quorum
        client = ControllerClient(
            cfg.controller_endpoints(),
            attempt_timeout_s=cfg.broker_heartbeat_interval_ms / 1000,
            local=self.controller_service,
            leader_hint=(lambda: quorum.leader_id) if quorum is not None else lambda: None,
            tag=self.tag,
            ssl_context=self.tls.client_for(cfg.controller_listener_names[0]),
        )
        self.controller_client = client
        qlog = self.quorum_log
        if qlog is None:
            # Broker-only: follow the metadata log from the active controller, on a client of
            # its own (its long polls wait longer than a heartbeat interval).
            self.follower = MetadataFollower(
                cfg.node_id,
                self.cluster_id,
                ControllerClient(
                    cfg.controller_endpoints(),
                    attempt_timeout_s=cfg.broker_heartbeat_interval_ms / 1000,
                    tag=self.tag,
                    ssl_context=self.tls.client_for(cfg.controller_listener_names[0]),
                ),
                publisher,
                broker_epoch=lambda: epoch["value"],
                # A long poll plus one heartbeat interval before the controller counts as hung.
                request_timeout_s=cfg.broker_heartbeat_interval_ms / 1000,
            )
            self.follower.start()
        lifecycle = BrokerLifecycle(
            cfg.node_id,
            self.cluster_id,
            client,
            endpoints,
            cfg.broker_rack,
            applied_offset=lambda: qlog.last_offset if qlog else publisher.image.last_offset,
            heartbeat_interval_ms=cfg.broker_heartbeat_interval_ms,
            previous_broker_epoch=(
                self.log_manager.previous_broker_epoch if self.log_manager else -1
            ),
        )
        broker.controller_client = client
        self.lifecycle = lifecycle
        self._tasks.append(asyncio.create_task(broker.maintain_isr()))
        epoch["value"] = await lifecycle.register()
        lifecycle.start()
        await lifecycle.unfenced.wait()

    def _single_node_client(self, image: MetadataImage, controller: Controller) -> ControllerClient:
        """A single node is its own active controller: every request is answered locally."""
        from kraft.controller.service import ControllerService

        service = ControllerService(
            self.config,
            self.cluster_id,
            image,
            controller,
            is_active=lambda: True,
            quorum_status=lambda: None,
            last_offset=lambda: image.last_offset,
        )
        return ControllerClient([], attempt_timeout_s=1.0, local=service, tag=self.tag)

    def _silent_ms(self, voter: int) -> int | None:
        """How long ago the quorum last heard from `voter` (None: unknown)."""
        if self.quorum is None:
            return None
        for v in self.quorum.status().voters:
            if v.node_id == voter:
                return v.last_heard_ms
        return None

    def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except OSError as e:
                    logger.error("%s%s failed: %s", self.tag, job.__name__, e)

        self._tasks.append(asyncio.create_task(loop()))

    async def _retention(self) -> None:
        if self.log_manager is not None:
            self.log_manager.run_retention()

    async def _expire_producers(self) -> None:
        """`producer.id.expiration.ms`: forget idle producers in every partition."""
        if self.log_manager is None:
            return
        for tp, log in self.log_manager.all_logs().items():
            with log.lock:
                expired = log.producer_state.remove_expired_producers(
                    log.clock(), self.config.producer_id_expiration_ms
                )
            if expired:
                logger.debug("%s%s: producer ids %s expired", self.tag, tp, expired)

    async def _checkpoint(self) -> None:
        if self.log_manager is not None:
            self.log_manager.checkpoint()

    async def _flush(self) -> None:
        if self.log_manager is not None:
            self.log_manager.flush_due()

    def scram_credential(self, mechanism: str, user: str) -> ScramCredential | None:
        """A SCRAM user's credential, as the metadata image this node follows has it."""
        if self.broker is None:
            return None
        return self.broker.image.scram_credential(mechanism, user)

    @property
    def admin_port(self) -> int | None:
        """The port the HTTP admin API is bound to (None without kraft.admin.listener)."""
        return self.admin.port if self.admin is not None else None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{s.host}:{s.port}" for s in self.servers)

    async def stop(self) -> None:
        if self.admin is not None:
            # First: nothing should act on the node through its API while it stops.
            await self.admin.stop()
            self.admin = None
        if self.lifecycle is not None:
            await self.lifecycle.controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT_S)
        if self.follower is not None:
            await self.follower.stop()
        if self.controller_client is not None:
            await self.controller_client.close()
        if self.broker is not None:
            # Fetchers stop and the delayed-operation expiry timer is cancelled.
            await self.broker.replica_manager.shutdown()
        for server in self.servers:
            await server.stop()
        if self.controller_service is not None:
            await self.controller_service.stop()
        for server in self.controller_servers:
            await server.stop()
        if self.quorum is not None:
            await self.quorum.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.cleaner.stop()
        if self.log_manager is not None:
            # The clean-shutdown marker names this broker's epoch (KIP-966).
            self.log_manager.shutdown(self.lifecycle.epoch if self.lifecycle else -1)
        if self.record_log is not None:
            self.record_log.close()
        logger.info("%sstopped", self.tag)
