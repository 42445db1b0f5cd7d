from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kraft.log.config import ConfigError, LogConfig
from kraft.log.manager import CLEAN_SHUTDOWN_FILE, LogManager
from kraft.log.records import build_simple_batch


def test_logs_spread_over_dirs_and_survive_restart(tmp_path: Path) -> None:
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    mgr = LogManager(dirs)
    mgr.startup()
    for p in range(4):
        log = mgr.get_or_create_log("my-topic.v1", p)
        log.append_as_leader(build_simple_batch([b"x"] * (p + 1), timestamp=1), 0)
        log.set_high_watermark(log.log_end_offset)
    assert sorted(os.listdir(dirs[0]) + os.listdir(dirs[1])).count("my-topic.v1-0") == 1
    assert {len([n for n in os.listdir(d) if n.startswith("my-topic")]) for d in dirs} == {2}
    mgr.shutdown()
    assert all(os.path.exists(os.path.join(d, CLEAN_SHUTDOWN_FILE)) for d in dirs)
    assert (Path(dirs[0]) / "replication-offset-checkpoint").read_text().startswith("0\n2\n")

    again = LogManager(dirs)
    again.startup()
    # The marker is gone while running: a crash now would be detected as unclean.
    assert not any(os.path.exists(os.path.join(d, CLEAN_SHUTDOWN_FILE)) for d in dirs)
    for p in range(4):
        log = again.get_log("my-topic.v1", p)
        assert log is not None
        assert (log.log_end_offset, log.high_watermark) == (p + 1, p + 1)
    again.shutdown()


def test_the_clean_shutdown_marker_names_the_broker_epoch(tmp_path: Path) -> None:
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    mgr = LogManager(dirs)
    mgr.startup()
    assert mgr.previous_broker_epoch == -1  # a first start
    mgr.shutdown(broker_epoch=42)
    marker = Path(dirs[0]) / CLEAN_SHUTDOWN_FILE
    assert marker.read_text() == '{"version": 0, "brokerEpoch": 42}'
    again = LogManager(dirs)
    again.startup()
    assert again.previous_broker_epoch == 42
    again.shutdown()  # no epoch: an empty marker, as before
    third = LogManager(dirs)
    third.startup()
    assert third.previous_broker_epoch == -1
    third.shutdown(broker_epoch=7)
    os.unlink(os.path.join(dirs[1], CLEAN_SHUTDOWN_FILE))  # one dir was not shut down cleanly
    fourth = LogManager(dirs)
    fourth.startup()
    assert fourth.previous_broker_epoch == -1
    fourth.shutdown(broker_epoch=8)
    Path(dirs[0], CLEAN_SHUTDOWN_FILE).write_text("{garbled")
    fifth = LogManager(dirs)
    fifth.startup()
    assert fifth.previous_broker_epoch == -1


def test_unclean_restart_recovers_and_deletion_is_crash_safe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = LogManager([str(tmp_path)])
    mgr.startup()
    log = mgr.get_or_create_log("t", 0)
    log.append_as_leader(build_simple_batch([b"a"], timestamp=1), 0)
    log.flush()
    mgr.checkpoint()
    # A torn header right after the last batch (inside the space reserved ahead).
    end = log.active_segment.size
    fd = os.open(log.active_segment.log_path, os.O_WRONLY)
    os.pwrite(fd, b"\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x10", end)
    os.close(fd)
    (tmp_path / "gone-0.1234-delete").mkdir()  # a deletion the crash interrupted
    # No shutdown(): the process "died".
    caplog.set_level(logging.INFO)
    again = LogManager([str(tmp_path)])
    again.startup()
    assert "no clean shutdown marker" in caplog.text
    assert f"bytes at position {end}: " in caplog.text and "truncating" in caplog.text
    recovered = again.get_log("t", 0)
    assert recovered is not None and recovered.log_end_offset == 1
    assert not (tmp_path / "gone-0.1234-delete").exists()
    assert again.delete_log("t", 0)
    assert again.get_log("t", 0) is None
    assert not any(n.startswith("t-0") for n in os.listdir(tmp_path))
    again.shutdown()


def test_bad_configs_name_the_key() -> None:
    with pytest.raises(ConfigError, match="retention.ms"):
        LogConfig().with_overrides({"retention.ms": "soon"})
    with pytest.raises(ConfigError, match="cleanup.policy"):
        LogConfig().with_overrides({"cleanup.policy": "shred"})
    with pytest.raises(ConfigError, match="unknown topic config 'nope'"):
        LogConfig().with_overrides({"nope": "1"})
    cfg = LogConfig().with_overrides({"cleanup.policy": "compact,delete", "segment.bytes": "1024"})
    assert cfg.compact and cfg.delete and cfg.segment_bytes == 1024
    assert cfg.to_properties()["segment.bytes"] == "1024"
    with pytest.raises(ValueError, match="log.dirs"):
        LogManager([])


def test_a_topic_with_the_longest_legal_name_can_be_deleted(tmp_path: Path) -> None:
    mgr = LogManager([str(tmp_path)])
    mgr.startup()
    name = "t" * 249
    mgr.get_or_create_log(name, 12345).append_as_leader(build_simple_batch([b"x"], timestamp=1), 0)
    assert mgr.delete_log(name, 12345)
    assert os.listdir(tmp_path) == [n for n in os.listdir(tmp_path) if not n.startswith("t")]
    mgr.shutdown()
