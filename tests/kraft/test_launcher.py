"""`kraft.launcher`: nodes isolated from the caller's cwd and PYTHONPATH, readiness, stop, kill -9,
SIGSTOP/SIGCONT, restart on the same data dir, and log tails when a node cannot start.

All but the first test start node processes (marked `process`): run them under the shared
lock."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import kraft
from kraft.launcher import (
    KRAFT_ROOT,
    LaunchError,
    LocalCluster,
    node_command,
    poll_until,
    request,
)
from kraft.net.protocol import MetadataRequest, MetadataResponse

SHADOWS = ("log", "net", "admin", "chaos", "kraft", "pysyncobj")


def _shadow_dir(path: Path) -> Path:
    """A directory of modules named like kraft's (and kraft itself) that fail on import."""
    path.mkdir()
    for name in SHADOWS:
        (path / f"{name}.py").write_text(f"raise ImportError('shadowing {name} from {path}')\n")
    return path


def _brokers(port: int) -> set[int]:
    response = request(port, MetadataRequest(topics=[]), 2.0)
    assert isinstance(response, MetadataResponse)
    return {b.node_id for b in response.brokers}


def test_node_command_imports_the_launchers_kraft() -> None:
    command = node_command("serve", "--config", "x")
    assert command[:3] == [sys.executable, "-E", "-P"]
    assert KRAFT_ROOT == str(Path(kraft.__file__).resolve().parent.parent)
    assert command[-5:] == [KRAFT_ROOT, "kraft.cli", "serve", "--config", "x"]


@pytest.mark.process
def test_nodes_ignore_the_callers_cwd_and_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started from a directory holding its own log.py, net.py, admin.py, chaos.py and
    kraft.py (each raising on import), with PYTHONPATH naming another such directory, a node
    still runs the launcher's kraft."""
    monkeypatch.chdir(_shadow_dir(tmp_path / "service"))
    monkeypatch.setenv("PYTHONPATH", str(_shadow_dir(tmp_path / "pythonpath")))
    cluster = LocalCluster(tmp_path / "cluster", nodes=1)
    try:
        cluster.start(timeout=30)
        node = cluster.nodes[1]
        assert _brokers(node.kafka_port) == {1}
        assert os.readlink(f"/proc/{node.pid}/cwd") == str(tmp_path / "service")
        assert "shadowing" not in node.log_path.read_text()
    finally:
        cluster.stop()


@pytest.mark.process
def test_a_node_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=1, extra={"num.partitions": "zero"})
    with pytest.raises(LaunchError) as failed:
        cluster.start(timeout=30)
    assert "num.partitions" in str(failed.value)  # from the node's log tail
    assert not cluster.alive_ids()


@pytest.mark.process
def test_cluster_lifecycle(tmp_path: Path) -> None:
    """Ready (every broker listed, a quorum leader), SIGSTOP/SIGCONT, kill -9, restart on the
    same data dir, and a clean whole-cluster stop."""
    cluster = LocalCluster(tmp_path, nodes=3)
    try:
        cluster.start()
        assert all(_brokers(n.kafka_port) == {1, 2, 3} for n in cluster.nodes.values())
        leader = cluster.active_controller()
        assert leader in (1, 2, 3)

        paused = cluster.nodes[2]
        cluster.pause(2)
        with pytest.raises(TimeoutError):
            request(paused.kafka_port, MetadataRequest(topics=[]), 1.0)
        cluster.resume(2)
        assert _brokers(paused.kafka_port) == {1, 2, 3}

        cluster.kill(3)
        assert cluster.alive_ids() == [1, 2]
        # The broker session (9 s) has to lapse before the survivors drop node 3: restart it
        # instead, on the same data dir (its meta.properties and logs are kept).
        first_log = cluster.nodes[3].log_path.read_text()
        cluster.restart(3)
        assert cluster.nodes[3].starts == 2
        assert cluster.nodes[3].log_path.read_text().startswith(first_log)
        poll_until(lambda: _brokers(cluster.nodes[3].kafka_port) == {1, 2, 3}, 20, "node 3")

        pids = [n.pid for n in cluster.nodes.values()]
        cluster.stop()
        assert cluster.alive_ids() == []
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or _zombie_free(pid)
    finally:
        cluster.kill_all()


def _zombie_free(pid: int) -> bool:
    """A reused pid belongs to some other process: not one of ours still running."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return b"kraft.cli\0serve" not in f.read()
