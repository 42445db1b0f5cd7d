"""The log manager: every partition log under one or more `log.dirs`.

Per log dir it keeps Kafka's checkpoint files (recovery points, high watermarks, log start
offsets) and the clean-shutdown marker `.kafka_cleanshutdown`: written last by a clean
shutdown, removed once the logs are loaded, so its absence at start-up means the previous
process died and the unflushed tails of the logs must be recovered. Like Kafka's (KIP-966),
the marker holds the broker epoch the process had, `{"version":0,"brokerEpoch":N}` (empty
when it had none): the broker names it when it registers again, so the controller can tell a
clean restart from one that may have lost writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping

from kraft.log.checkpoint import OffsetCheckpointFile, fsync_dir, write_atomically
from kraft.log.config import LogConfig
from kraft.log.partition_log import Clock, PartitionLog, parse_dir_name, wall_clock_ms

logger = logging.getLogger(__name__)

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
HIGH_WATERMARK_FILE = "replication-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
DELETE_SUFFIX = "-delete"

TopicPartition = tuple[str, int]


MAX_FILE_NAME = 255


def delete_dir_name(topic: str, partition: int) -> str:
    """`<topic>-<partition>.<uuid>-delete`, the topic shortened (as Kafka does) so the name
    fits in 255 bytes even for a 249-character topic."""
    suffix = f"-{partition}.{uuid.uuid4().hex}{DELETE_SUFFIX}"
    return topic[: MAX_FILE_NAME - len(suffix)] + suffix


class LogManager:
    def __init__(
        self,
        log_dirs: Iterable[str],
        default_config: LogConfig | None = None,
        *,
        clock: Clock = wall_clock_ms,
        config_for: Callable[[str], LogConfig] | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        self.log_dirs = [os.path.abspath(d) for d in log_dirs]
        if not self.log_dirs:
            raise ValueError("log.dirs: at least one directory is needed")
        if len(set(self.log_dirs)) != len(self.log_dirs):
            raise ValueError("log.dirs: a directory is listed twice")
        self.default_config = default_config or LogConfig()
        self.clock = clock
        # Topic → its config (defaults plus overrides); the broker supplies it from metadata.
        self.config_for = config_for or (lambda _topic: self.default_config)
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._dir_of: dict[TopicPartition, str] = {}
        self._lock = threading.Lock()
        # Directory names in a log dir that are not partition logs of this manager.
        self.exclude = frozenset(exclude)
        self.started = False
        # The broker epoch every log dir's clean-shutdown marker named at start-up, or -1
        # (some dir was not shut down cleanly, or the markers disagree or name none).
        self.previous_broker_epoch = -1
        # Told each flush's duration in seconds (the node's flush-time histogram); logs
        # created or loaded afterwards get it too.
        self.on_flush: Callable[[float], None] | None = None

    # -------------------------------------------------------------- startup

    def startup(self) -> None:
        epochs = set()
        for log_dir in self.log_dirs:
            os.makedirs(log_dir, exist_ok=True)
            epochs.add(self._load_dir(log_dir))
        self.previous_broker_epoch = epochs.pop() if len(epochs) == 1 else -1
        self.started = True

    def _load_dir(self, log_dir: str) -> int:
        """Load a log dir's partitions; the broker epoch its clean-shutdown marker names."""
        marker = os.path.join(log_dir, CLEAN_SHUTDOWN_FILE)
        clean = os.path.exists(marker)
        broker_epoch = _read_broker_epoch(marker) if clean else -1
        if not clean:
            logger.info("%s: no clean shutdown marker, recovering unflushed data", log_dir)
        recovery = OffsetCheckpointFile(os.path.join(log_dir, RECOVERY_POINT_FILE)).read()
        starts = OffsetCheckpointFile(os.path.join(log_dir, LOG_START_FILE)).read()
        hws = OffsetCheckpointFile(os.path.join(log_dir, HIGH_WATERMARK_FILE)).read()
        for name in sorted(os.listdir(log_dir)):
            path = os.path.join(log_dir, name)
            if not os.path.isdir(path) or name in self.exclude:
                continue
            if name.endswith(DELETE_SUFFIX):
                # A topic deletion that a crash interrupted.
                shutil.rmtree(path, ignore_errors=True)
                continue
            tp = parse_dir_name(name)
            if tp is None:
                logger.warning("%s: ignoring a directory that is not <topic>-<partition>", path)
                continue
            log = PartitionLog(
                path,
                self.config_for(tp[0]),
                recovery_point=recovery.get(tp, 0),
                log_start_offset=starts.get(tp, 0),
                high_watermark=hws.get(tp, 0),
                clean_shutdown=clean,
                clock=self.clock,
            )
            log.on_flush = self.on_flush
            if tp in self._logs:
                raise RuntimeError(f"{tp[0]}-{tp[1]} is in two log dirs: {path}")
            self._logs[tp] = log
            self._dir_of[tp] = log_dir
        # From here on a crash is unclean until the next clean shutdown writes the marker.
        if clean:
            os.unlink(marker)
            fsync_dir(log_dir)
        self._checkpoint_dir(log_dir)
        return broker_epoch

    # ----------------------------------------------------------------- logs

    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def all_logs(self) -> dict[TopicPartition, PartitionLog]:
        return dict(self._logs)

    def get_or_create_log(
        self, topic: str, partition: int, config: LogConfig | None = None
    ) -> PartitionLog:
        tp = (topic, partition)
        with self._lock:
            log = self._logs.get(tp)
            if log is not None:
                return log
            log_dir = self._least_loaded_dir()
            path = os.path.join(log_dir, f"{topic}-{partition}")
            log = PartitionLog(
                path,
                config or self.config_for(topic),
                clean_shutdown=True,
                clock=self.clock,
            )
            log.on_flush = self.on_flush
            fsync_dir(log_dir)
            self._logs[tp] = log
            self._dir_of[tp] = log_dir
            logger.info("created log for partition %s-%d in %s", topic, partition, log_dir)
            return log

    def _least_loaded_dir(self) -> str:
        counts = {d: 0 for d in self.log_dirs}
        for d in self._dir_of.values():
            counts[d] += 1
        return min(self.log_dirs, key=lambda d: (counts[d], self.log_dirs.index(d)))

    def delete_log(self, topic: str, partition: int) -> bool:
        """Remove a partition's log: renamed to `<dir>.<uuid>-delete` first, so a crash
        half-way leaves a directory that the next start-up finishes deleting."""
        tp = (topic, partition)
        with self._lock:
            log = self._logs.pop(tp, None)
            log_dir = self._dir_of.pop(tp, None)
        if log is None or log_dir is None:
            return False
        with log.lock:
            for segment in log.segments:
                segment.close()
            doomed = os.path.join(log_dir, delete_dir_name(topic, partition))
            os.rename(log.directory, doomed)
            fsync_dir(log_dir)
        shutil.rmtree(doomed, ignore_errors=True)
        logger.info("deleted log for partition %s-%d", topic, partition)
        return True

    # -------------------------------------------------------- housekeeping

    def checkpoint(self) -> None:
        """Write the recovery points, high watermarks and log start offsets of every dir."""
        for log_dir in self.log_dirs:
            self._checkpoint_dir(log_dir)

    def _checkpoint_dir(self, log_dir: str) -> None:
        logs = {tp: log for tp, log in self._logs.items() if self._dir_of[tp] == log_dir}
        self._write(
            log_dir, RECOVERY_POINT_FILE, {tp: lg.recovery_point for tp, lg in logs.items()}
        )
        self._write(
            log_dir, HIGH_WATERMARK_FILE, {tp: lg.high_watermark for tp, lg in logs.items()}
        )
        self._write(log_dir, LOG_START_FILE, {tp: lg.log_start_offset for tp, lg in logs.items()})

    @staticmethod
    def _write(log_dir: str, name: str, offsets: Mapping[TopicPartition, int]) -> None:
        OffsetCheckpointFile(os.path.join(log_dir, name)).write(offsets)

    def run_retention(self, now: int | None = None) -> int:
        deleted = 0
        for log in list(self._logs.values()):
            deleted += log.delete_old_segments(now)
        return deleted

    def flush_due(self, now: int | None = None) -> None:
        now = self.clock() if now is None else now
        for log in list(self._logs.values()):
            log.maybe_flush(now)

    def shutdown(self, broker_epoch: int = -1) -> None:
        """Flush and close every log, checkpoint, then write the clean-shutdown marker
        (naming `broker_epoch`, the registration this process had, if any)."""
        for log in list(self._logs.values()):
            log.close()
        body = b""
        if broker_epoch >= 0:
            body = json.dumps({"version": 0, "brokerEpoch": broker_epoch}).encode()
        for log_dir in self.log_dirs:
            self._checkpoint_dir(log_dir)
            write_atomically(os.path.join(log_dir, CLEAN_SHUTDOWN_FILE), body)
        self._logs.clear()
        self._dir_of.clear()
        self.started = False


def _read_broker_epoch(marker: str) -> int:
    """The broker epoch in a clean-shutdown marker; -1 when it names none (or is garbled:
    the logs were still shut down cleanly, only the epoch is unknown)."""
    try:
        with open(marker, encoding="utf-8") as f:
            text = f.read().strip()
        epoch = json.loads(text)["brokerEpoch"] if text else -1
    except (OSError, ValueError, KeyError, TypeError):
        return -1
    return epoch if isinstance(epoch, int) and epoch >= 0 else -1
