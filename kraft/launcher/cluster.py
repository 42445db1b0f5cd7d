"""A local cluster: combined nodes, then broker-only nodes, as child processes."""

from __future__ import annotations

import secrets
import select
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kraft.launcher.configs import NodeSpec, append_config, kept_value, plan, write_configs
from kraft.launcher.probe import TRANSIENT, describe_quorum_request, poll_until, request
from kraft.launcher.process import READY_TIMEOUT_S, STOP_TIMEOUT_S, LaunchError, NodeProcess
from kraft.net.protocol import DescribeQuorumResponse, MetadataRequest, MetadataResponse


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
        self.cluster_id = kept_value(str(self.root), "cluster.id", uuid.uuid4().hex[:22])
        secret = kept_value(str(self.root), "cluster.secret", secrets.token_hex(16))
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

    @property
    def admin_urls(self) -> dict[int, str]:
        """Node id → the base URL of its HTTP admin API."""
        return {i: n.spec.admin_url for i, n in self.nodes.items() if n.spec.admin_url}

    def info(self) -> dict[str, Any]:
        """What `kraft up` writes to cluster.json."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "nodes": [
                {
                    "id": n.node_id,
                    "kafka": n.bootstrap,
                    "controller": f"127.0.0.1:{n.controller_port}" if n.controller_port else None,
                    "admin": n.spec.admin_url,
                    "pid": n.pid,
                    "log": str(n.log_path),
                }
                for n in self.nodes.values()
            ],
        }

    # ------------------------------------------------------------ processes

    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> None:
        """Start every node that is not running; with `wait`, until the cluster is ready
        (`wait_ready`). If it does not become ready every node is killed and LaunchError
        carries their logs; if interrupted, the nodes are stopped."""
        for node in self.nodes.values():
            if not node.alive:
                node.start()
        if wait:
            try:
                self.wait_ready(timeout)
            except LaunchError:
                self.kill_all()
                raise
            except BaseException:  # e.g. Ctrl-C while starting: a clean stop
                self.stop()
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
            self._wait_ready_lines(waiting, deadline)
        except LaunchError as e:
            others = [n.log_tail() for n in self.nodes.values() if n.node_id != e.node_id]
            raise LaunchError("\n".join([str(e), *others]), e.node_id) from None
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

    @staticmethod
    def _wait_ready_lines(waiting: list[NodeProcess], deadline: float) -> None:
        """Until every node in `waiting` printed its ready line. All are watched at once, so
        a node that exits (a port taken, a bad data dir) fails the wait at once rather than
        after the others' timeout (a quorum that never forms without it)."""
        pending = {n.proc.stdout: n for n in waiting if not n.ready and n.proc and n.proc.stdout}
        while pending:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select(list(pending), [], [], max(0.0, remaining))
            if not readable:
                # Timed out: the first node still silent is reported (with its log tail).
                next(iter(pending.values())).wait_ready(0.0)
            for stream in readable:
                pending.pop(stream).wait_ready(0.0)  # reads the line: ready, or raises

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
