"""Bad settings raise a clear exception from `Cluster(...)`, before any process exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kraft.embedded import Cluster, ClusterConfigError, ClusterError

pytestmark = pytest.mark.unit


def _children() -> set[int]:
    """Pids of this process's children (none may appear)."""
    path = Path(f"/proc/self/task/{os.getpid()}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"nodes": 0}, "nodes must be at least 1, not 0"),
        ({"nodes": -1}, "nodes must be at least 1"),
        ({"brokers": -1}, "brokers must be at least 0, not -1"),
        ({"nodes": True}, "nodes must be an int"),
        ({"nodes": 1, "brokers": 1}, "broker-only nodes need nodes >= 2"),
        ({"nodes": 100_000}, "ports; this machine's ephemeral range has"),
        ({"start_timeout": 0}, "start_timeout must be positive"),
    ],
)
def test_impossible_counts_are_refused(kwargs: dict[str, int], says: str) -> None:
    before = _children()
    with pytest.raises(ClusterConfigError, match=says) as caught:
        Cluster(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert _children() == before


@pytest.mark.parametrize(
    ("config", "says"),
    [
        # Values `kraft serve` refuses, with the key named.
        ({"num.partitions": "many"}, "invalid value 'many' for num.partitions"),
        ({"min.insync.replicas": 0}, "min.insync.replicas"),
        ({"retention.ms": "soon", "log.retention.ms": "x"}, "log.retention.ms"),
        # Security is refused rather than served as plaintext.
        ({"authorizer.class.name": "StandardAuthorizer"}, "authorizer.class.name"),
        ({"authorizer.class.name": "A"}, "remove authorizer.class.name"),
        # What the launcher sets per node.
        ({"listeners": "PLAINTEXT://0.0.0.0:9092"}, "listeners is set by Cluster"),
        ({"node.id": 7}, "node.id is set by Cluster"),
        ({"kraft.peer.raft.1.address": "h:1"}, "kraft.peer.raft.1.address is set by Cluster"),
        # Not a property.
        ({"num.partitions": 1.5}, "must be a str, int or bool"),
        ({" num.partitions": "1"}, "is not a property name"),
        ({"num.partitions": "1\nnode.id=9"}, "spans lines"),
    ],
)
def test_refused_config_is_named(config: dict[str, object], says: str) -> None:
    with pytest.raises(ClusterConfigError, match=says):
        Cluster(nodes=1, config=config)  # type: ignore[arg-type]


def test_accepted_config_types_become_properties() -> None:
    cluster = Cluster(
        nodes=1, config={"num.partitions": 3, "auto.create.topics.enable": False, "x.y": "z"}
    )
    assert cluster.config == {
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        "x.y": "z",
    }
    assert not cluster.running


def test_broker_only_config_is_checked_too() -> None:
    Cluster(nodes=2, brokers=1, config={"broker.rack": "r1"})


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ClusterConfigError, match="exists and is not a directory"):
        Cluster(nodes=1, data_dir=path)


def test_data_dir_of_another_cluster(tmp_path: Path) -> None:
    (tmp_path / "cluster.id").write_text("aaaaaaaaaaaaaaaaaaaaaa\n")
    meta = tmp_path / "node-1" / "data" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\ncluster.id=bbbbbbbbbbbbbbbbbbbbbb\nnode.id=1\n")
    with pytest.raises(ClusterConfigError, match="belongs to cluster bbbbbbbbbbbbbbbbbbbbbb"):
        Cluster(nodes=1, data_dir=tmp_path)


def test_data_dir_of_a_cluster_of_another_shape(tmp_path: Path) -> None:
    (tmp_path / "cluster.id").write_text("aaaaaaaaaaaaaaaaaaaaaa\n")
    for node_id in (1, 2, 3):
        (tmp_path / f"node-{node_id}").mkdir()
        (tmp_path / f"node-{node_id}" / "server.properties").write_text(
            "process.roles=broker,controller\n"
        )
    with pytest.raises(ClusterConfigError, match="of 3 combined node"):
        Cluster(nodes=1, data_dir=tmp_path)
    Cluster(nodes=3, data_dir=tmp_path)  # the same shape is accepted


def test_data_dir_not_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ClusterConfigError, match="not empty and holds no kraft cluster"):
        Cluster(nodes=1, data_dir=tmp_path)
    single = tmp_path / "single"
    single.mkdir()
    (single / "meta.properties").write_text("cluster.id=x\n")
    with pytest.raises(ClusterConfigError, match="one node's log dir"):
        Cluster(nodes=1, data_dir=single)
    (tmp_path / "empty").mkdir()
    Cluster(nodes=1, data_dir=tmp_path / "empty")
    Cluster(nodes=1, data_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()  # made by start(), not by the constructor


def test_views_need_a_running_cluster() -> None:
    cluster = Cluster(nodes=1)
    with pytest.raises(ClusterError, match="not running"):
        _ = cluster.bootstrap_servers
    cluster.stop()  # stopping a cluster never started is fine
    cluster.stop()


def test_import_kraft_is_cheap() -> None:
    """`import kraft` loads no node, launcher or codec; `kraft.Cluster` loads on first use."""
    code = (
        "import sys, kraft\n"
        "heavy = [m for m in sys.modules if m.startswith(('kraft.', 'aiohttp', 'pysyncobj'))]\n"
        "assert not heavy, heavy\n"
        "import kraft.embedded\n"
        "assert 'kraft.embedded.cluster' not in sys.modules\n"
        "assert kraft.Cluster.__name__ == 'Cluster'\n"
        "assert 'kraft.node' not in sys.modules, 'the Cluster API loads no node code'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
