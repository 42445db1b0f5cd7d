"""`kraft.Cluster`: a real multi-node kraft cluster as child processes, for tests and
programs, with sync and async context managers.

    with kraft.Cluster(nodes=3) as cluster:
        cluster.create_topic("orders", partitions=3)
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers)
        cluster.node(2).kill()            # SIGKILL one node; .start() brings it back

Nodes are started through the one launcher (`kraft.launcher.LocalCluster`) on free 127.0.0.1
ports. Settings are checked before any process starts (`kraft.embedded.settings`): bad node
counts, config keys `kraft serve` refuses, and data dirs of another cluster raise
`ClusterConfigError` (a `ValueError`).

No node outlives its owner: `stop()` (and the context managers, also when the body raised)
stop every node; a finalizer does so when the Cluster is garbage-collected or the interpreter
exits; and when the owning process dies without running any of that (SIGKILL, os._exit), each
node sees its lifeline pipe close and stops itself (`kraft.lifeline`).

A temporary data dir (no `data_dir` given) is removed by `stop()` (or, if its owner was
killed, by the next Cluster's start: `kraft.embedded.tempdirs`). A given `data_dir` is kept:
a later `Cluster(..., data_dir=same)` brings the same cluster back (cluster id, topics, data),
on new ports.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from types import TracebackType

from kraft.embedded import tempdirs
from kraft.embedded.settings import (
    LOCK_FILE,
    ClusterConfigError,
    ClusterError,
    ClusterStartError,
    check_config,
    check_counts,
    check_data_dir,
    normalise_config,
)
from kraft.launcher import (
    TRANSIENT,
    LaunchError,
    LocalCluster,
    NodeProcess,
    poll_until,
    request,
)
from kraft.net.protocol import (
    CreateTopicsRequest,
    CreateTopicsResponse,
    ErrorCode,
    MetadataRequest,
    MetadataResponse,
    error_name,
)

__all__ = ["Cluster", "ClusterConfigError", "ClusterError", "ClusterNode", "ClusterStartError"]

STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
# In a node's log when a port it was given is no longer free.
PORT_TAKEN = "address already in use"
logger = logging.getLogger(__name__)
# CreateTopics answers worth another try (the controller moved or is still being elected).
_RETRIABLE = frozenset(
    {
        ErrorCode.NOT_CONTROLLER,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.BROKER_NOT_AVAILABLE,
    }
)


class _Resources:
    """What a Cluster must release: its nodes and its temporary data dir. Kept apart from the
    Cluster so that a finalizer (when the Cluster is collected, or at interpreter exit) can
    release them without holding the Cluster alive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local: LocalCluster | None = None
        self.temp_dir: Path | None = None
        self.dir_lock: int | None = None  # fd holding an flock on the data dir's lock file

    def lock_data_dir(self, root: Path) -> None:
        """Two Clusters on one data dir would overwrite each other's configs and logs: the
        running one holds an exclusive flock (released by the kernel if this process dies)."""
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ClusterConfigError(
                f"data_dir {root} is in use by another running Cluster"
            ) from None
        self.dir_lock = fd

    def release(self, timeout: float = STOP_TIMEOUT_S) -> None:
        with self.lock:
            local, self.local = self.local, None
            temp_dir, self.temp_dir = self.temp_dir, None
            dir_lock, self.dir_lock = self.dir_lock, None
        if local is not None:
            local.stop(timeout)
        if dir_lock is not None:
            os.close(dir_lock)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


class ClusterNode:
    """One node of a `Cluster` (a combined broker + controller, or a broker-only node)."""

    def __init__(self, cluster: Cluster, process: NodeProcess) -> None:
        self._cluster = cluster
        self.process = process  # the launcher's handle, for what this class does not cover
        self.node_id = process.node_id

    def __repr__(self) -> str:
        return f"ClusterNode({self.node_id}, pid={self.pid}, alive={self.alive})"

    @property
    def bootstrap(self) -> str | None:
        """ "127.0.0.1:port" of its Kafka listener (every node of a Cluster is a broker)."""
        return self.process.bootstrap

    @property
    def admin_url(self) -> str:
        return self.process.spec.admin_url or ""

    @property
    def is_controller(self) -> bool:
        return self.process.spec.is_controller

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.alive

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (a clean stop, controlled shutdown first), SIGKILL after `timeout` s."""
        self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP: the process freezes, its sockets stay open and nothing answers."""
        self.process.pause()

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        self.process.resume()

    def start(self, timeout: float | None = None) -> None:
        """Start it again on its data dir (if not running), until it is ready and every live
        broker lists every live broker."""
        if not self.process.alive:
            self.process.start()
        self._cluster._wait_ready(timeout, [self.node_id])

    def restart(self, timeout: float | None = None) -> None:
        """A clean stop, then `start`."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)


class Cluster:
    """`nodes` combined nodes (broker + controller: the quorum's voters, ids 1..nodes), then
    `brokers` broker-only nodes, as child processes on 127.0.0.1.

    `config`: extra `server.properties` keys for every node (Kafka's names; values str, int or
    bool), checked as `kraft serve` checks its config file. Keys the launcher sets per node
    (node.id, listeners, log.dirs, the quorum, ...) are refused. `data_dir`: kept and reused;
    None: a temporary directory, removed on stop. `start_timeout`: seconds `start()` waits for
    the cluster to become healthy.
    """

    def __init__(
        self,
        nodes: int = 3,
        brokers: int = 0,
        config: Mapping[str, str | int | bool] | None = None,
        data_dir: str | PathLike[str] | None = None,
        *,
        start_timeout: float = 30.0,
    ) -> None:
        check_counts(nodes, brokers)
        if not start_timeout > 0:
            raise ClusterConfigError(f"start_timeout must be positive, not {start_timeout!r}")
        self.config = normalise_config(config)
        check_config(self.config, nodes, brokers)
        self._given_dir = None if data_dir is None else Path(data_dir).resolve()
        if self._given_dir is not None:
            check_data_dir(self._given_dir, nodes, brokers)
        self.node_count = nodes
        self.broker_count = brokers
        self.start_timeout = start_timeout
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, self._resources.release)
        self._nodes: list[ClusterNode] = []
        self._data_dir: Path | None = self._given_dir

    def __repr__(self) -> str:
        state = "running" if self._resources.local is not None else "stopped"
        return (
            f"Cluster(nodes={self.node_count}, brokers={self.broker_count}, {state}, "
            f"data_dir={str(self._data_dir)!r})"
        )

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Cluster:
        """Start every node and wait until the cluster is healthy: each node ready, every
        broker registered and unfenced in every broker's metadata, a quorum leader. On
        failure every node is stopped and ClusterStartError names the node, the reason and
        the log tails."""
        if self._resources.local is not None:
            return self
        root = self._given_dir
        if root is None:
            tempdirs.remove_orphaned()
            root = tempdirs.make()
            self._resources.temp_dir = root
        self._data_dir = root
        try:
            self._resources.lock_data_dir(root)
            for attempt in range(1, START_ATTEMPTS + 1):
                local = LocalCluster(root, self.node_count, self.broker_count, extra=self.config)
                self._resources.local = local
                self._nodes = [ClusterNode(self, p) for _, p in sorted(local.nodes.items())]
                try:
                    local.start(wait=True, timeout=self.start_timeout)
                    return self
                except LaunchError as e:  # every node was killed
                    # Free ports are picked, released, then bound by the nodes: another
                    # process may take one in between. New ports are worth another try.
                    if attempt < START_ATTEMPTS and PORT_TAKEN in str(e).lower():
                        logger.info("a port was taken before a node bound it: new ports")
                        continue
                    raise ClusterStartError(
                        f"the cluster in {root} did not start"
                        + (f" (node {e.node_id} failed)" if e.node_id is not None else "")
                        + f": {e}",
                        e.node_id,
                    ) from None
            raise AssertionError("unreachable: the last attempt returns or raises")
        except BaseException:
            self._resources.release()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every node (SIGTERM, then SIGKILL after `timeout` s) and remove a temporary
        data dir. Idempotent."""
        self._resources.release(timeout)

    close = stop

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Cluster:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # ------------------------------------------------------------ views

    @property
    def running(self) -> bool:
        return self._resources.local is not None

    def _local(self) -> LocalCluster:
        local = self._resources.local
        if local is None:
            raise ClusterError("the cluster is not running: call start() or use `with`")
        return local

    @property
    def nodes(self) -> list[ClusterNode]:
        """Every node, in node id order."""
        self._local()
        return list(self._nodes)

    def node(self, node_id: int) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id}: ids are 1..{len(self._nodes)}")

    @property
    def bootstrap_servers(self) -> str:
        """ "127.0.0.1:p1,127.0.0.1:p2,...": every broker."""
        return ",".join(n.bootstrap for n in self.nodes if n.bootstrap)

    @property
    def admin_urls(self) -> list[str]:
        return [n.admin_url for n in self.nodes]

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise ClusterError("no data dir yet: a temporary one is made by start()")
        return self._data_dir

    @property
    def cluster_id(self) -> str:
        return self._local().cluster_id

    def logs(self, lines: int = 40) -> str:
        """Every node's log tail, each under a header line."""
        local = self._resources.local
        return "" if local is None else local.logs(lines)

    # ------------------------------------------------------------ waiting and topics

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running node is ready and every live broker lists every live broker
        (and, with several controllers, one leads the quorum)."""
        self._wait_ready(timeout, None)

    def _wait_ready(self, timeout: float | None, node_ids: list[int] | None) -> None:
        local = self._local()
        try:
            local.wait_ready(self.start_timeout if timeout is None else timeout, node_ids)
        except LaunchError as e:
            raise ClusterStartError(str(e), e.node_id) from None

    def _live_ports(self) -> list[int]:
        ports = [n.process.kafka_port for n in self.nodes if n.alive and not n.process.paused]
        if not ports:
            raise ClusterError("no broker is running")
        return ports

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic (replication factor None: min(3, brokers)) and wait until every
        partition has a leader known to every live broker. ClusterError carries Kafka's error
        name (e.g. TOPIC_ALREADY_EXISTS, INVALID_REPLICATION_FACTOR)."""
        total = self.node_count + self.broker_count
        rf = min(3, total) if replication_factor is None else replication_factor
        message = CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=rf,
                    configs=[
                        CreateTopicsRequest.CreatableTopicConfig(name=k, value=str(v))
                        for k, v in (config or {}).items()
                    ],
                )
            ],
            timeout_ms=int(min(timeout, 30.0) * 1000),
        )
        deadline = time.monotonic() + timeout
        retried = False

        def created() -> bool:
            nonlocal retried
            port = self._live_ports()[0]
            response = request(port, message, max(1.0, deadline - time.monotonic()))
            assert isinstance(response, CreateTopicsResponse)
            (result,) = response.topics
            code = result.error_code
            if code == ErrorCode.NONE or (code == ErrorCode.TOPIC_ALREADY_EXISTS and retried):
                return True
            if code in _RETRIABLE:
                retried = True
                return False
            raise ClusterError(
                f"CreateTopics {name!r}: {error_name(code)}"
                + (f": {result.error_message}" if result.error_message else "")
            )

        self._poll(created, deadline, f"topic {name!r} to be created")
        self._poll(
            lambda: self._leaders_known(name, partitions),
            deadline,
            f"every partition of {name!r} to have a leader known to every broker",
        )

    def _leaders_known(self, name: str, partitions: int) -> bool:
        wanted = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name=name)],
            allow_auto_topic_creation=False,
        )
        for port in self._live_ports():
            try:
                response = request(port, wanted, 2.0)
            except TRANSIENT:
                return False
            assert isinstance(response, MetadataResponse)
            topics = [t for t in response.topics if t.name == name and t.error_code == 0]
            if not topics or len(topics[0].partitions) != partitions:
                return False
            if any(p.error_code or p.leader_id < 0 for p in topics[0].partitions):
                return False
        return True

    def _poll(self, probe: Callable[[], bool], deadline: float, what: str) -> None:
        try:
            poll_until(
                probe,
                max(0.1, deadline - time.monotonic()),
                what,
                on_timeout=lambda: self.logs(20),
            )
        except AssertionError as e:
            raise ClusterError(str(e)) from None
