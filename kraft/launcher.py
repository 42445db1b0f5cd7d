"""Local clusters of `kraft serve` child processes on 127.0.0.1: the one launcher behind
`kraft up`, the process tests and the benchmarks.

Layout of a cluster's root directory (reused by the next launch on the same root, data
included)::

    ROOT/cluster.id, ROOT/cluster.secret   generated on the first launch, kept after
    ROOT/node-<id>/server.properties       the node's config (see `write_configs`)
    ROOT/node-<id>/data/                   its log dir
    ROOT/node-<id>/node.log                its log output (stderr), appended to across starts

Every node runs in a session of its own, so a terminal's Ctrl-C reaches the launcher only (which
stops the nodes) and a kill -9 hits that one node. Nodes are started as
`python -E -P -c <bootstrap> <root> kraft.cli serve --config ...`: neither the caller's
working directory nor `PYTHONPATH` is on the child's path, and the bootstrap puts first the
directory that holds the `kraft` package this launcher was imported from (and checks that
this is the one it got), so a node runs the same kraft as its launcher.

Everything here is blocking (subprocesses, plain sockets, no event loop), so it can be used from
threads, pytest and scripts alike; asyncio code calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kraft
from kraft.net.protocol import (
    API_KEYS,
    ApiVersionsRequest,
    ApiVersionsResponse,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    Message,
    MetadataRequest,
    MetadataResponse,
    ProtocolError,
    decode_response,
    encode_request,
)

T = TypeVar("T")

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.02
METADATA_TOPIC = "__cluster_metadata"
# Errors a readiness poll treats as "not yet": the node is down, starting, or hung up.
TRANSIENT = (OSError, ConnectionError, TimeoutError, EOFError, ProtocolError)

# The directory holding the `kraft` package this launcher belongs to: its nodes import it.
KRAFT_ROOT = str(Path(kraft.__file__).resolve().parent.parent)

# argv: <root> kraft.cli <kraft arguments...>. The module name stays in the command line so
# `ps` (and tests looking for a config's node) see `kraft.cli serve --config ...`.
_BOOTSTRAP = (
    "import sys\n"
    "root = sys.argv[1]\n"
    "sys.path.insert(0, root)\n"
    "import kraft, os.path\n"
    "got = os.path.dirname(os.path.dirname(os.path.realpath(kraft.__file__)))\n"
    "if got != root:\n"
    "    sys.exit(f'kraft launcher: imported kraft from {got}, not from {root}')\n"
    "from kraft.cli import main\n"
    "sys.argv = [sys.argv[2], *sys.argv[3:]]\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


class LaunchError(RuntimeError):
    """A node exited or the cluster did not become ready; the message carries the nodes'
    log tails."""


def node_command(*args: str) -> list[str]:
    """The command line of `kraft <args>` run isolated from the caller's cwd and PYTHONPATH.

    -E ignores PYTHON* variables, -P keeps the cwd off sys.path; -u (unbuffered, so the ready
    line arrives at once) and -X faulthandler (a SIGABRT prints every thread's stack) stand in
    for the PYTHONUNBUFFERED / PYTHONFAULTHANDLER variables that -E ignores."""
    return [
        sys.executable,
        "-E",
        "-P",
        "-u",
        "-X",
        "faulthandler",
        "-c",
        _BOOTSTRAP,
        KRAFT_ROOT,
        "kraft.cli",
        *args,
    ]


# ----------------------------------------------------------------------------- plans and configs


@dataclass(slots=True)
class NodeSpec:
    """One node of a local cluster: a combined node (broker + controller) when it has a
    controller port, else broker-only."""

    node_id: int
    kafka_port: int
    controller_port: int
    raft_port: int
    directory: str

    @property
    def config_path(self) -> str:
        return os.path.join(self.directory, "server.properties")

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "node.log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def is_controller(self) -> bool:
        return self.controller_port != 0


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (all held open while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def plan(
    root: str | Path, nodes: int, brokers: int = 0, base_port: int | None = None
) -> list[NodeSpec]:
    """Combined nodes 1..`nodes`, then broker-only nodes, each in `root/node-<id>`.

    With `base_port` P (`kraft up`'s fixed layout): node i serves Kafka on P+i-1, its
    controller listener on P+100+i-1 and its Raft transport on P+200+i-1. Without: free ports.
    """
    total = nodes + brokers
    if base_port is None:
        ports = iter(free_ports(3 * nodes + brokers))
        kafka = {i: next(ports) for i in range(1, total + 1)}
        controller = {i: next(ports) for i in range(1, nodes + 1)}
        raft = {i: next(ports) for i in range(1, nodes + 1)}
    else:
        kafka = {i: base_port + i - 1 for i in range(1, total + 1)}
        controller = {i: base_port + 100 + i - 1 for i in range(1, nodes + 1)}
        raft = {i: base_port + 200 + i - 1 for i in range(1, nodes + 1)}
    return [
        NodeSpec(
            i, kafka[i], controller.get(i, 0), raft.get(i, 0), os.path.join(str(root), f"node-{i}")
        )
        for i in range(1, total + 1)
    ]


def write_configs(
    specs: Sequence[NodeSpec],
    cluster_id: str,
    secret: str,
    brokers: Sequence[NodeSpec] = (),
    extra: Mapping[str, str] | None = None,
) -> None:
    """`server.properties` of combined nodes `specs` and of broker-only nodes `brokers` (which
    follow the metadata from the combined nodes' controllers), then `extra` keys (a later key
    wins)."""
    voters = ",".join(f"{s.node_id}@127.0.0.1:{s.raft_port}" for s in specs)
    controllers = ",".join(f"127.0.0.1:{s.controller_port}" for s in specs)
    replication = min(3, len(specs) + len(brokers))
    for spec in [*specs, *brokers]:
        os.makedirs(spec.directory, exist_ok=True)
        combined = spec not in brokers
        listeners = f"PLAINTEXT://127.0.0.1:{spec.kafka_port}"
        props = {
            "node.id": str(spec.node_id),
            "process.roles": "broker,controller" if combined else "broker",
            "cluster.id": cluster_id,
            "listeners": listeners
            + (f",CONTROLLER://127.0.0.1:{spec.controller_port}" if combined else ""),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{spec.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": voters,
            "controller.quorum.bootstrap.servers": controllers,
            # The Raft transport's secret: controllers only.
            **({"kraft.cluster.secret": secret} if combined else {}),
            "log.dirs": os.path.join(spec.directory, "data"),
            "default.replication.factor": str(replication),
            "offsets.topic.replication.factor": str(replication),
            "min.insync.replicas": "1",
            # Local setups start groups at once (Kafka's default waits 3 s).
            "group.initial.rebalance.delay.ms": "0",
        }
        with open(spec.config_path, "w") as f:
            f.write("# written by kraft.launcher\n")
            f.write("".join(f"{k}={v}\n" for k, v in props.items()))
            if extra:
                f.write("# overrides\n")
                f.write("".join(f"{k}={v}\n" for k, v in extra.items()))


def append_config(spec: NodeSpec, props: Mapping[str, str]) -> None:
    """Append keys to a node's config (a later key wins); read at its next start."""
    with open(spec.config_path, "a") as f:
        f.write("".join(f"{k}={v}\n" for k, v in props.items()))


def _kept(root: str, name: str, make: str) -> str:
    """A value generated on the first launch in `root` and reused after."""
    path = os.path.join(root, name)
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make + "\n")
    return make


# ----------------------------------------------------------------------------- requests


def request(
    port: int, message: Message, timeout: float = REQUEST_TIMEOUT_S, host: str = "127.0.0.1"
) -> Message:
    """One request on a fresh blocking connection, at the highest version both sides know
    (from ApiVersions v0), bounded by `timeout` seconds."""
    api_key = type(message).API_KEY
    assert api_key is not None
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        versions = _exchange(sock, ApiVersionsRequest(), 0, 1, deadline)
        assert isinstance(versions, ApiVersionsResponse)
        if versions.error_code:
            raise ProtocolError(f"ApiVersions error {versions.error_code} from port {port}")
        theirs = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
        ours = API_KEYS[api_key]
        lo, hi = theirs.get(api_key, (ours.min_version, ours.max_version))
        version = min(hi, ours.max_version)
        if version < max(lo, ours.min_version):
            raise ProtocolError(f"no common version of api key {api_key} with port {port}")
        return _exchange(sock, message, version, 2, deadline)


def _exchange(
    sock: socket.socket, message: Message, version: int, correlation_id: int, deadline: float
) -> Message:
    api_key = type(message).API_KEY
    assert api_key is not None
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    sock.sendall(encode_request(message, version, correlation_id, "kraft-launcher"))
    (size,) = struct.unpack(">i", _read_exactly(sock, 4, deadline))
    if not 0 <= size <= 64 << 20:
        raise ProtocolError(f"response of {size} bytes")
    _, response = decode_response(_read_exactly(sock, size, deadline), api_key, version)
    return response


def _read_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    parts = []
    while n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError("connection closed")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def describe_quorum_request() -> DescribeQuorumRequest:
    return DescribeQuorumRequest(
        topics=[
            DescribeQuorumRequest.TopicData(
                topic_name=METADATA_TOPIC,
                partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)],
            )
        ]
    )


def poll_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL_S,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """The first truthy result of `probe`, polled until `timeout` seconds; transient network
    errors count as "not yet". Raises AssertionError on timeout (a test's failure)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except TRANSIENT as e:
            last = e
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.1f} s waiting for {what}: {last!r}\n{extra}"
            )
        time.sleep(interval)


# ----------------------------------------------------------------------------- one node


class NodeProcess:
    """One `kraft serve` child; its data dir survives stops, kills and restarts."""

    def __init__(self, spec: NodeSpec, serve_args: Sequence[str] = ()) -> None:
        self.spec = spec
        self.serve_args = tuple(serve_args)  # more `kraft serve` arguments, e.g. --log-level
        self.node_id = spec.node_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(spec.log_path)
        self.starts = 0
        self.paused = False
        self.ready = False  # printed its ready line since the last start

    @property
    def kafka_port(self) -> int:
        return self.spec.kafka_port

    @property
    def controller_port(self) -> int:
        return self.spec.controller_port

    @property
    def raft_port(self) -> int:
        return self.spec.raft_port

    @property
    def bootstrap(self) -> str:
        return self.spec.bootstrap

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process; `wait_ready` waits for its ready line."""
        if self.alive:
            raise LaunchError(f"node {self.node_id} is already running")
        self._reap()
        self.starts += 1
        self.paused = False
        self.ready = False
        os.makedirs(self.spec.directory, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"---- kraft.launcher: start #{self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                node_command("serve", "--config", self.spec.config_path, *self.serve_args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                bufsize=0,  # unbuffered: select() sees the ready line
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the node prints its ready line: a broker once it is registered and unfenced,
        a controller once its quorum member runs."""
        if self.ready:
            return
        proc = self.proc
        if proc is None or proc.stdout is None:
            raise LaunchError(f"node {self.node_id} is not started")
        started = time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        self.ready = b"ready" in line
        if not self.ready:
            raise LaunchError(
                f"node {self.node_id} (pid {proc.pid}) not ready after "
                f"{time.monotonic() - started:.1f} s (exit code {proc.poll()}, said {line!r})\n"
                + self.log_tail()
            )

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Stop (cleanly) and start again on the same data dir; waits until ready."""
        self.stop()
        self.start()
        self.wait_ready(timeout)

    def terminate(self) -> None:
        """SIGTERM (a clean stop: controlled shutdown first) without waiting; see
        `wait_exit`."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after `timeout` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL; the exit code (None if killed)."""
        if self.proc is None:
            return None
        self.terminate()
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
            return None
        self._reap()
        return code

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the process freezes (its sockets stay open, nothing answers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.proc is not None and self.proc.poll() is None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.proc = None
        self.paused = False
        self.ready = False

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"---- node {self.node_id}: no log at {self.log_path}"
        return f"---- node {self.node_id} log (last {lines} lines)\n" + "\n".join(text[-lines:])

    def diagnose(self) -> str:
        """For a node that stopped making progress: where each thread waits in the kernel,
        then every thread's Python stack (SIGABRT makes faulthandler print them to the log;
        the node dies), then the log's tail."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return self.log_tail()
        waits = []
        for task in sorted(Path(f"/proc/{proc.pid}/task").glob("*")):
            try:
                comm = (task / "comm").read_text().strip()
                state = (task / "stat").read_text().rsplit(") ", 1)[1].split()[0]
                wchan = (task / "wchan").read_text().strip()
            except OSError:
                continue
            waits.append(f"  thread {task.name} {comm}: state {state}, wchan {wchan}")
        self.resume()
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return f"---- node {self.node_id} threads\n" + "\n".join(waits) + "\n" + self.log_tail(80)


# ----------------------------------------------------------------------------- a cluster


class LocalCluster:
    """`nodes` combined nodes (broker + controller, ids 1..nodes), then `brokers` broker-only
    nodes, in `root`. Configs are written at construction (`extra` keys appended to each; add
    per-node keys with `configure` before `start`); ports are free ones unless `base_port`
    gives `kraft up`'s fixed layout.

        cluster = LocalCluster(tmp / "c", nodes=3)
        cluster.start()               # every node ready, every broker known, a quorum leader
        cluster.kill(2); cluster.restart(2)
        cluster.stop()                # SIGTERM all, SIGKILL what is left after the timeout
    """

    def __init__(
        self,
        root: str | Path,
        nodes: int = 3,
        brokers: int = 0,
        *,
        extra: Mapping[str, str] | None = None,
        base_port: int | None = None,
        serve_args: Sequence[str] = (),
    ) -> None:
        if nodes < 1 or brokers < 0:
            raise ValueError("a cluster needs at least one combined node")
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        specs = plan(self.root, nodes, brokers, base_port)
        self.controller_count = nodes
        self.cluster_id = _kept(str(self.root), "cluster.id", uuid.uuid4().hex[:22])
        secret = _kept(str(self.root), "cluster.secret", secrets.token_hex(16))
        write_configs(specs[:nodes], self.cluster_id, secret, specs[nodes:], extra)
        self.nodes = {s.node_id: NodeProcess(s, serve_args) for s in specs}

    # ------------------------------------------------------------ views

    @property
    def specs(self) -> list[NodeSpec]:
        return [n.spec for n in self.nodes.values()]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    @property
    def broker_ids(self) -> set[int]:
        return set(self.nodes)

    @property
    def controller_ids(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.spec.is_controller]

    def alive_ids(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.alive]

    def node(self, node_id: int) -> NodeProcess:
        return self.nodes[node_id]

    def configure(self, node_id: int, props: Mapping[str, str]) -> None:
        """Append keys to one node's config (read at its next start)."""
        append_config(self.nodes[node_id].spec, props)

    def logs(self, lines: int = 40) -> str:
        return "\n".join(n.log_tail(lines) for n in self.nodes.values())

    def info(self) -> dict[str, Any]:
        """What `kraft up` writes to cluster.json."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "nodes": [
                {
                    "id": n.node_id,
                    "kafka": n.bootstrap,
                    "controller": f"127.0.0.1:{n.controller_port}" if n.controller_port else None,
                    "pid": n.pid,
                    "log": str(n.log_path),
                }
                for n in self.nodes.values()
            ],
        }

    # ------------------------------------------------------------ processes

    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> None:
        """Start every node that is not running; with `wait`, until the cluster is ready
        (`wait_ready`). On failure every node is killed and LaunchError carries their logs."""
        for node in self.nodes.values():
            if not node.alive:
                node.start()
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.kill_all()
                raise

    def wait_ready(
        self, timeout: float = READY_TIMEOUT_S, nodes: Iterable[int] | None = None
    ) -> None:
        """Until each started node in `nodes` (default: all) printed its ready line, the
        Metadata of every live broker lists every live broker (registered and unfenced), and,
        with more than one controller, one answers DescribeQuorum as the quorum leader."""
        deadline = time.monotonic() + timeout
        waiting = [
            self.nodes[i]
            for i in (nodes if nodes is not None else self.nodes)
            if self.nodes[i].proc is not None
        ]
        try:
            for node in waiting:
                node.wait_ready(max(0.1, deadline - time.monotonic()))
        except LaunchError as e:
            others = [n.log_tail() for n in self.nodes.values() if n is not node]
            raise LaunchError("\n".join([str(e), *others])) from None
        try:
            want = set(self.alive_ids())
            for node_id in sorted(want):
                poll_until(
                    lambda n=node_id: self.lists_brokers(n, want),  # type: ignore[misc]
                    max(0.1, deadline - time.monotonic()),
                    f"node {node_id}'s Metadata to list brokers {sorted(want)}",
                )
            if len(self.controller_ids) > 1:
                poll_until(
                    self.active_controller,
                    max(0.1, deadline - time.monotonic()),
                    "a quorum leader",
                )
        except AssertionError as e:
            raise LaunchError(f"{e}\n{self.logs()}") from None

    def lists_brokers(self, node_id: int, want: set[int]) -> bool:
        response = request(self.nodes[node_id].kafka_port, MetadataRequest(topics=[]), 2.0)
        assert isinstance(response, MetadataResponse)
        return {b.node_id for b in response.brokers} == want

    def active_controller(self, among: Iterable[int] | None = None) -> int | None:
        """The node that answers DescribeQuorum as the quorum leader, or None."""
        for node_id in among if among is not None else self.controller_ids:
            node = self.nodes[node_id]
            if not node.alive or node.paused or not node.controller_port:
                continue
            try:
                response = request(node.controller_port, describe_quorum_request(), 1.0)
            except TRANSIENT:
                continue
            assert isinstance(response, DescribeQuorumResponse)
            if response.error_code == 0 and response.topics:
                if response.topics[0].partitions[0].leader_id == node_id:
                    return node_id
        return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the whole cluster: SIGTERM to every node at once, then wait; a node still
        running after `timeout` s is killed."""
        for node in self.nodes.values():
            node.terminate()
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            if (
                node.proc is not None
                and node.wait_exit(max(0.0, deadline - time.monotonic())) is None
            ):
                node.kill()
            node._reap()

    def stop_node(self, node_id: int, timeout: float = STOP_TIMEOUT_S) -> int | None:
        return self.nodes[node_id].stop(timeout)

    def kill(self, node_id: int) -> None:
        self.nodes[node_id].kill()

    def kill_all(self) -> None:
        for node in self.nodes.values():
            node.kill()

    def pause(self, node_id: int) -> None:
        self.nodes[node_id].pause()

    def resume(self, node_id: int) -> None:
        self.nodes[node_id].resume()

    def restart(self, node_id: int, timeout: float = READY_TIMEOUT_S) -> None:
        """Stop one node cleanly (if running) and start it on the same data dir, until it is
        ready."""
        self.nodes[node_id].restart(timeout)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()
