"""Log dir formatting (`kraft storage`, kraft.storage) and the checks a node makes at start."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from kraft.cli import main
from kraft.config import NodeConfig, build_config, parse_properties
from kraft.storage import (
    StorageError,
    check_uuid,
    ensure_formatted,
    format_dirs,
    random_uuid,
)

CLUSTER = "MkU3OEVBNTcwNTJENDM2Qg"  # the id Kafka's quickstart shows


def node_config(tmp_path: Path, node_id: int = 1, **extra: str) -> NodeConfig:
    props = {
        "node.id": str(node_id),
        "process.roles": "broker,controller",
        "listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        "controller.quorum.voters": f"{node_id}@127.0.0.1:9093",
        "log.dirs": f"{tmp_path}/a,{tmp_path}/b",
        **{k.replace("_", "."): v for k, v in extra.items()},
    }
    return build_config(props)


def write_config(tmp_path: Path, **extra: str) -> str:
    config = node_config(tmp_path, **extra)
    path = tmp_path / "server.properties"
    lines = [
        f"node.id={config.node_id}",
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        f"controller.quorum.voters={config.node_id}@127.0.0.1:9093",
        f"log.dirs={','.join(config.log_dirs)}",
        *(f"{k.replace('_', '.')}={v}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def meta(directory: Path) -> dict[str, str]:
    return parse_properties((directory / "meta.properties").read_text())


def test_random_uuid_is_kafka_shaped() -> None:
    ids = {random_uuid() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16
        assert check_uuid(text) == text


@pytest.mark.parametrize("bad", ["", "abc", "x" * 23, "!" * 22, "MkU3OEVBNTcwNTJENDM2Q"])
def test_check_uuid_refuses_what_is_no_uuid(bad: str) -> None:
    with pytest.raises(ValueError):
        check_uuid(bad)


def test_format_writes_meta_properties_in_every_dir(tmp_path: Path) -> None:
    config = node_config(tmp_path, metadata_log_dir=f"{tmp_path}/m")
    assert format_dirs(config, CLUSTER) == [f"{tmp_path}/a", f"{tmp_path}/b", f"{tmp_path}/m"]
    metas = [meta(tmp_path / d) for d in "abm"]
    for m in metas:
        assert (m["cluster.id"], m["node.id"], m["version"]) == (CLUSTER, "1", "1")
        check_uuid(m["directory.id"])
    assert len({m["directory.id"] for m in metas}) == 3


def test_format_refuses_a_formatted_dir_unless_told_to_ignore_it(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    format_dirs(node_config(tmp_path, log_dirs=f"{tmp_path}/a"), CLUSTER)
    with pytest.raises(StorageError, match=f"{tmp_path}/a is already formatted"):
        format_dirs(config, CLUSTER)
    assert not (tmp_path / "b" / "meta.properties").exists()
    assert format_dirs(config, CLUSTER, ignore_formatted=True) == [f"{tmp_path}/b"]
    assert format_dirs(config, CLUSTER, ignore_formatted=True) == []


def test_a_node_refuses_unformatted_dirs_and_says_how_to_format(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        ensure_formatted(node_config(tmp_path))
    assert "kraft storage format" in str(info.value)
    assert not (tmp_path / "a" / "meta.properties").exists()


def test_starters_that_own_their_dirs_format_them(tmp_path: Path) -> None:
    # The launcher gives cluster.id; the embedded node and `kraft serve` without --config
    # ask for auto_format.
    assert ensure_formatted(node_config(tmp_path, cluster_id=CLUSTER)) == CLUSTER
    assert meta(tmp_path / "b")["cluster.id"] == CLUSTER
    other = tmp_path / "other"
    cluster_id = ensure_formatted(node_config(other), auto_format=True)
    check_uuid(cluster_id)
    assert ensure_formatted(node_config(other)) == cluster_id  # formatted now: kept


def test_a_dir_of_another_cluster_is_refused_naming_both_ids(tmp_path: Path) -> None:
    format_dirs(node_config(tmp_path), CLUSTER)
    other = random_uuid()
    with pytest.raises(StorageError) as info:
        ensure_formatted(node_config(tmp_path, cluster_id=other))
    assert CLUSTER in str(info.value) and other in str(info.value)
    # Two dirs that disagree with each other.
    (tmp_path / "b" / "meta.properties").write_text(
        f"version=1\ncluster.id={other}\nnode.id=1\ndirectory.id={random_uuid()}\n"
    )
    with pytest.raises(StorageError) as info:
        ensure_formatted(node_config(tmp_path))
    assert CLUSTER in str(info.value) and other in str(info.value)


def test_a_dir_of_another_node_is_refused_naming_both_ids(tmp_path: Path) -> None:
    format_dirs(node_config(tmp_path), CLUSTER)
    with pytest.raises(StorageError) as info:
        ensure_formatted(node_config(tmp_path, node_id=2))
    assert "node 1" in str(info.value) and "node.id is 2" in str(info.value)


def test_a_new_dir_next_to_formatted_ones_is_formatted_at_start(tmp_path: Path) -> None:
    format_dirs(node_config(tmp_path), CLUSTER)
    grown = node_config(tmp_path, log_dirs=f"{tmp_path}/a,{tmp_path}/b,{tmp_path}/c")
    assert ensure_formatted(grown) == CLUSTER
    assert meta(tmp_path / "c")["cluster.id"] == CLUSTER
    assert meta(tmp_path / "c")["directory.id"] != meta(tmp_path / "a")["directory.id"]


def test_dirs_written_before_directory_ids_get_one(tmp_path: Path) -> None:
    for d in "ab":
        (tmp_path / d).mkdir()
        body = f"version=1\ncluster.id={CLUSTER}\nnode.id=1\n"
        (tmp_path / d / "meta.properties").write_text(body)
    assert ensure_formatted(node_config(tmp_path)) == CLUSTER
    check_uuid(meta(tmp_path / "a")["directory.id"])


def test_storage_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["storage", "random-uuid"]) == 0
    check_uuid(capsys.readouterr().out.strip())
    config = write_config(tmp_path)
    assert main(["storage", "info", "-c", config]) == 1
    assert f"{tmp_path}/a does not exist" in capsys.readouterr().out
    assert main(["storage", "format", "-t", "not-a-uuid", "-c", config]) == 2
    assert "not a valid uuid" in capsys.readouterr().err
    assert main(["storage", "format", "-t", CLUSTER, "-c", config]) == 0
    assert f"Formatting {tmp_path}/a for cluster {CLUSTER}" in capsys.readouterr().out
    assert main(["storage", "format", "-t", CLUSTER, "-c", config]) == 1
    assert "already formatted" in capsys.readouterr().err
    assert main(["storage", "format", "-t", CLUSTER, "-c", config, "--ignore-formatted"]) == 0
    assert "already formatted" in capsys.readouterr().out
    assert main(["storage", "info", "-c", config]) == 0
    out = capsys.readouterr().out
    assert f"cluster.id={CLUSTER}" in out and "node.id=1" in out and "Found problem" not in out
    other = write_config(tmp_path, node_id="2", controller_quorum_voters="2@127.0.0.1:9093")
    assert main(["storage", "info", "-c", other]) == 1
    assert "formatted for node 1, not node.id=2" in capsys.readouterr().out


def test_serve_refuses_an_unformatted_dir(tmp_path: Path) -> None:
    """`kraft serve --config` on unformatted dirs exits 1 before binding anything."""
    config = write_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "kraft.cli", "serve", "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "kraft storage format" in done.stderr
    assert not (tmp_path / "a" / "meta.properties").exists()
