"""A node: one process, one asyncio loop, assembling storage, metadata, controller and broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable

from kraft.config import NodeConfig
from kraft.controller.controller import Controller, ControllerDefaults
from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataPublisher
from kraft.metadata.record_log import METADATA_TOPIC, LocalRecordLog
from log.cleaner import LogCleaner
from log.manager import LogManager
from net.broker.broker import Broker
from net.server import KafkaServer

logger = logging.getLogger(__name__)

META_PROPERTIES = "meta.properties"
CHECKPOINT_INTERVAL_S = 5.0


def _read_meta(path: str) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                out[key.strip()] = value.strip()
    return out


def ensure_meta_properties(config: NodeConfig) -> str:
    """The cluster id from `meta.properties` in every log dir (written on first start), after
    checking that every dir belongs to this node and this cluster."""
    cluster_id = config.cluster_id
    found: dict[str, dict[str, str]] = {}
    for d in config.log_dirs:
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, META_PROPERTIES)
        if os.path.exists(path):
            found[d] = _read_meta(path)
    for d, meta in found.items():
        if meta.get("node.id") != str(config.node_id):
            raise RuntimeError(
                f"{d}/{META_PROPERTIES} belongs to node {meta.get('node.id')}, "
                f"not node.id={config.node_id}"
            )
        other = meta.get("cluster.id", "")
        if cluster_id and other and other != cluster_id:
            raise RuntimeError(f"{d} belongs to cluster {other}, not cluster.id={cluster_id}")
        cluster_id = cluster_id or other
    if not cluster_id:
        cluster_id = uuid.uuid4().hex[:22]
    from log.checkpoint import write_atomically

    for d in config.log_dirs:
        if d not in found:
            body = f"version=1\ncluster.id={cluster_id}\nnode.id={config.node_id}\n"
            write_atomically(os.path.join(d, META_PROPERTIES), body.encode())
    return cluster_id


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.tag = f"[node {config.node_id}] "
        self.cluster_id = ""
        self.servers: list[KafkaServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self.cleaner = LogCleaner(backoff_ms=config.log_cleaner_backoff_ms)
        self.broker: Broker | None = None
        self.log_manager: LogManager | None = None
        self.record_log: LocalRecordLog | None = None

    async def start(self) -> None:
        cfg = self.config
        self.cluster_id = ensure_meta_properties(cfg)
        image = MetadataImage()
        publisher = MetadataPublisher(image, self.tag)
        self.record_log = LocalRecordLog(cfg.log_dirs[0], publisher)
        self.record_log.replay_into_publisher()
        controller = Controller(
            image,
            self.record_log,
            ControllerDefaults(cfg.num_partitions, cfg.default_replication_factor),
            node_tag=self.tag,
        )
        holder: dict[str, Broker] = {}
        self.log_manager = LogManager(
            cfg.log_dirs,
            cfg.log_config,
            config_for=lambda topic: holder["broker"].log_config(topic),
            exclude={f"{METADATA_TOPIC}-0"},
        )
        epoch = {"value": -1}
        broker = Broker(
            cfg, image, self.log_manager, controller, self.cluster_id, lambda: epoch["value"]
        )
        holder["broker"] = broker
        self.broker = broker
        self.log_manager.startup()
        # Bind first: the registered endpoints must carry the ports actually bound.
        for endpoint in cfg.listeners:
            if endpoint.listener in cfg.controller_listener_names:
                continue
            server = KafkaServer(
                broker,
                endpoint.host,
                endpoint.port,
                listener=endpoint.listener,
                max_request_bytes=cfg.socket_request_max_bytes,
                log_prefix=self.tag,
            )
            await server.start()
            self.servers.append(server)
        endpoints = []
        for server in self.servers:
            adv = cfg.advertised(server.listener)
            host = adv.host if adv else server.host
            port = adv.port if adv and adv.port else server.port
            endpoints.append((server.listener, host, port))
        incarnation = uuid.uuid4()
        epoch["value"] = await controller.run(
            controller.register_broker(cfg.node_id, incarnation, endpoints, cfg.broker_rack, True)
        )
        publisher.listeners.append(broker.on_metadata_change)
        broker.on_metadata_change()
        # A single node has caught up with its own registration as soon as it applied it.
        await controller.run(controller.unfence_broker(cfg.node_id, epoch["value"]))
        self.cleaner.start(lambda: self.log_manager.all_logs().values() if self.log_manager else [])
        self._every(cfg.log_retention_check_interval_ms / 1000, self._retention)
        self._every(CHECKPOINT_INTERVAL_S, self._checkpoint)
        if cfg.log_flush_scheduler_interval_ms < 2**62:
            self._every(cfg.log_flush_scheduler_interval_ms / 1000, self._flush)
        logger.info(
            "%sstarted: cluster %s, listening on %s",
            self.tag,
            self.cluster_id,
            ", ".join(f"{s.listener}://{s.host}:{s.port}" for s in self.servers),
        )

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

    async def _checkpoint(self) -> None:
        if self.log_manager is not None:
            self.log_manager.checkpoint()

    async def _flush(self) -> None:
        if self.log_manager is not None:
            self.log_manager.flush_due()

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{s.host}:{s.port}" for s in self.servers)

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.cleaner.stop()
        if self.log_manager is not None:
            self.log_manager.shutdown()
        if self.record_log is not None:
            self.record_log.close()
        logger.info("%sstopped", self.tag)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
