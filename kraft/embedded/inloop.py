"""A kraft node on the caller's running event loop: a service with a broker of its own.

    async with kraft.embedded.node({"num.partitions": 3}) as n:
        producer = AIOKafkaProducer(bootstrap_servers=n.bootstrap_servers)
        ...

The node (broker and controller by default) shares the loop of the service that enters the
context: no child process, no thread of its own beyond the ones a node always has (the log
cleaner's; the Raft thread when `controller.quorum.voters` names more than one voter), all of
them stopped on exit. It touches nothing the host process owns: no signal handlers, no logging
configuration, no event loop policy, no `sys.exit`.

The config is a mapping with Kafka's key names (values str, int, bool or float). Every key has
a default, like `config/server.properties` but on free ports:

    node.id=1, process.roles=broker,controller,
    listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0 (port 0: a free port),
    controller.listener.names=CONTROLLER, controller.quorum.voters=<node.id>@127.0.0.1:0,
    num.partitions=1, default.replication.factor=1, min.insync.replicas=1,
    offsets.topic.replication.factor=1, group.initial.rebalance.delay.ms=0,
    log.dirs: a temporary directory removed on exit. A given `log.dirs` is kept, and reused
    by the next node started on it (same cluster id, same records).

`kraft.admin.listener` (e.g. `127.0.0.1:0`) serves the HTTP admin API too. The config is
checked as `kraft serve` checks a file (kraft.config): a key kraft refuses or an invalid value
raises ConfigError when `node(...)` is called, before anything starts; unknown keys are logged
as warnings, as for a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Mapping
from types import TracebackType

from kraft.config import ConfigError, NodeConfig, build_config
from kraft.node import Node
from kraft.node_api import NodeApi

logger = logging.getLogger(__name__)

ConfigValue = str | int | bool | float
HOST = "127.0.0.1"
# Until a created topic's partitions have leaders (a single node: a few milliseconds).
TOPIC_READY_TIMEOUT_S = 30.0
TOPIC_READY_POLL_S = 0.002
# A placeholder for the temporary data dir while the config is checked: nothing is created
# before the node starts.
_TEMPORARY = "<temporary>"


class TopicCreationError(Exception):
    """The controller refused a topic (or its partitions got no leader in time); `error` is
    Kafka's error name, e.g. TOPIC_ALREADY_EXISTS or INVALID_CONFIG."""

    def __init__(self, topic: str, error: str, message: str | None = None) -> None:
        super().__init__(f"{topic}: {error}" + (f" ({message})" if message else ""))
        self.topic = topic
        self.error = error


def _properties(config: Mapping[str, ConfigValue] | None) -> dict[str, str]:
    """The config as `kraft serve` reads it from a file: every value a string, defaults for
    what is not given."""
    props: dict[str, str] = {}
    for key, value in (config or {}).items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r} is not a string")
        if isinstance(value, bool):  # before int: a bool is an int
            props[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            props[key] = str(value)
        else:
            raise ConfigError(
                f"invalid value {value!r} for {key}: expected str, int, bool or float, "
                f"not {type(value).__name__}"
            )
    node_id = props.get("node.id", props.get("broker.id", "1"))
    roles = props.setdefault("process.roles", "broker,controller")
    controller = "controller" in roles
    props.setdefault("node.id", node_id)
    if controller:
        props.setdefault("listeners", f"PLAINTEXT://{HOST}:0,CONTROLLER://{HOST}:0")
        props.setdefault("controller.listener.names", "CONTROLLER")
        props.setdefault("controller.quorum.voters", f"{node_id}@{HOST}:0")
    else:
        props.setdefault("listeners", f"PLAINTEXT://{HOST}:0")
    for key, value in (
        ("num.partitions", "1"),
        ("default.replication.factor", "1"),
        ("min.insync.replicas", "1"),
        ("offsets.topic.replication.factor", "1"),
        # A node for one service (or one test): nobody else to wait for.
        ("group.initial.rebalance.delay.ms", "0"),
    ):
        props.setdefault(key, value)
    if "log.dirs" not in props and "log.dir" not in props:
        props["log.dirs"] = _TEMPORARY
    return props


class EmbeddedNode:
    """One node on the running loop: started by `start()` (or entering `async with`),
    stopped by `stop()` (or leaving it, also when the body raised or was cancelled)."""

    def __init__(self, config: Mapping[str, ConfigValue] | None = None) -> None:
        props = _properties(config)
        self._temporary = props.get("log.dirs") == _TEMPORARY
        self.config: NodeConfig = build_config(props)
        self._node: Node | None = None
        self._api: NodeApi | None = None
        self._directory: str | None = None
        self._started = False
        self._stopping: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the node on the running loop; return once clients can produce to it (a
        broker: registered, unfenced and listening)."""
        if self._started:
            raise RuntimeError("an embedded node starts once; create another to start again")
        self._started = True
        try:
            if self._temporary:
                self._directory = tempfile.mkdtemp(prefix="kraft-embedded-")
                self.config = dataclasses.replace(self.config, log_dirs=(self._directory,))
            # It owns its dirs: unformatted ones are formatted with a new cluster id.
            self._node = Node(self.config, auto_format=True)
            await self._node.start()
        except BaseException:
            # Whatever started (listeners, the cleaner's thread, the quorum) stops again; the
            # start's own error is the one to raise.
            try:
                await self.stop()
            except Exception:
                logger.exception("[node %d] stopping after a failed start", self.node_id)
            raise

    async def stop(self) -> None:
        """Stop the node (idempotent; concurrent callers wait for the same stop). It finishes
        stopping even when the calling task is cancelled meanwhile; the cancellation is raised
        afterwards."""
        if not self._started:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown())
        # Shielded: a second cancellation of the host's task (a service shutting down, a test
        # timing out) must not leave listeners bound or threads running.
        task = self._stopping
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = cancelled or not task.done()
        if cancelled:
            if not task.cancelled() and task.exception() is not None:
                logger.error("[node %d] stopping failed: %r", self.node_id, task.exception())
            raise asyncio.CancelledError
        task.result()

    async def _shutdown(self) -> None:
        try:
            if self._node is not None:
                await self._node.stop()
        finally:
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)

    async def __aenter__(self) -> EmbeddedNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---------------------------------------------------------------------- views

    @property
    def node(self) -> Node:
        """The node assembly itself (storage, broker, controller), for tests of kraft."""
        if self._node is None:
            raise RuntimeError("the embedded node is not started")
        return self._node

    @property
    def api(self) -> NodeApi:
        """The node façade (kraft.node_api.NodeApi): topics, partitions, groups, health."""
        if self._api is None:
            self._api = NodeApi(self.node)
        return self._api

    @property
    def node_id(self) -> int:
        return self.config.node_id

    @property
    def cluster_id(self) -> str:
        return self.node.cluster_id

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` of every client listener ("" for a controller-only node)."""
        return self.node.bootstrap_servers

    @property
    def port(self) -> int | None:
        """The bound port of the first client listener (None: a controller-only node)."""
        servers = self.node.servers
        return servers[0].port if servers else None

    @property
    def admin_url(self) -> str | None:
        """`http://host:port` of the HTTP admin API (None without kraft.admin.listener)."""
        node = self.node
        endpoint = self.config.admin_listener
        if node.admin_port is None or endpoint is None:
            return None
        host = endpoint.host if endpoint.host not in ("", "0.0.0.0", "::") else HOST
        return f"http://{host}:{node.admin_port}"

    @property
    def data_dir(self) -> str:
        """The (first) log dir: temporary unless `log.dirs` was given."""
        return self.config.log_dirs[0]

    # ---------------------------------------------------------------------- writes

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, ConfigValue] | None = None,
        *,
        replication_factor: int = -1,
    ) -> None:
        """Create a topic through the controller and return once every partition has a
        leader (and the ones led here serve): a client can produce to it right away.
        `replication_factor=-1` takes default.replication.factor. Raises TopicCreationError."""
        configs = {
            k: ("true" if v else "false") if isinstance(v, bool) else str(v)
            for k, v in (config or {}).items()
        }
        result = await self.api.create_topic(name, partitions, replication_factor, configs)
        if not result.ok:
            raise TopicCreationError(name, result.error or "UNKNOWN_SERVER_ERROR", result.message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TOPIC_READY_TIMEOUT_S
        # The metadata reaches the image (and the replica manager) when the controller's
        # records are applied, which the create request does not wait for.
        while not self._topic_ready(name):
            if loop.time() > deadline:
                raise TopicCreationError(
                    name, "LEADER_NOT_AVAILABLE", f"no leader within {TOPIC_READY_TIMEOUT_S} s"
                )
            await asyncio.sleep(TOPIC_READY_POLL_S)

    def _topic_ready(self, name: str) -> bool:
        detail = self.api.topic(name)
        if detail is None:
            return False
        return all(
            p.leader >= 0 and (p.leader != self.node_id or p.hosted_here) for p in detail.partitions
        )


def node(config: Mapping[str, ConfigValue] | None = None) -> EmbeddedNode:
    """A node for `async with` on the running loop; raises ConfigError now for a config
    kraft refuses."""
    return EmbeddedNode(config)


__all__ = ["ConfigError", "EmbeddedNode", "TopicCreationError", "node"]
