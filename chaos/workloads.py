"""Workloads with real Kafka clients, each recording what it did into a `History`.

- `ConfluentProducer` / `KafkaPythonProducer`: acks=all idempotent producers writing a ledger of
  unique values (`<process>-<n>`) round-robin across the topic's partitions; each write is an
  `invoke` before it is handed to the client and an `ok` with the offset from its delivery report
  (or an `info`: with retries a failed delivery may still have been written).
- `GroupConsumer`: a member of a consumer group that records every record it polls and every
  offset it commits (synchronously, per partition, no auto-commit).
- `read_back`: every partition from its start to its high watermark, on direct addresses.

Clients' own timeouts are short (the run wants failovers measured in seconds), but a write's
delivery timeout outlasts every fault of a run, so few writes end in doubt.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kraft.chaos.history import History

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_MS = 60_000
REQUEST_TIMEOUT_MS = 2_000
COMMIT_INTERVAL_S = 0.5
DRAIN_TIMEOUT_S = 60.0


class Workload:
    """A client in a thread: `start()`, then `stop()` (which waits for its last results)."""

    def __init__(self, history: History, bootstrap: str, topic: str, process: str) -> None:
        self.history = history
        self.bootstrap = bootstrap
        self.topic = topic
        self.process = process
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=process, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = DRAIN_TIMEOUT_S + 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"workload {self.process} did not stop in {timeout} s")

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 — the runner reports it after the run
            log.exception("workload %s failed", self.process)
            self.error = e

    def _run(self) -> None:
        raise NotImplementedError


class Producer(Workload):
    """The ledger writer: value n goes to partition n % partitions, paced to `rate` per second."""

    client = "?"

    def __init__(
        self,
        history: History,
        bootstrap: str,
        topic: str,
        process: str,
        partitions: int,
        rate: float = 50.0,
    ) -> None:
        super().__init__(history, bootstrap, topic, process)
        self.partitions = partitions
        self.interval = 1.0 / rate
        self.sent = 0

    def next_value(self) -> tuple[str, int]:
        n = self.sent
        self.sent += 1
        return f"{self.process}-{n}", n % self.partitions

    def acknowledged(self, value: str, partition: int, offset: int) -> None:
        self.history.ok(
            self.process, "send", value=value, topic=self.topic, partition=partition, offset=offset
        )

    def undecided(self, value: str, partition: int, error: str) -> None:
        self.history.info(
            self.process, "send", value=value, topic=self.topic, partition=partition, error=error
        )

    def paced(self) -> None:
        """Waits for the next write's turn, or for `stop`."""
        self._stop.wait(self.interval)


class ConfluentProducer(Producer):
    client = "confluent-kafka"

    def _run(self) -> None:
        from confluent_kafka import Producer as Client

        producer = Client(
            {
                "bootstrap.servers": self.bootstrap,
                "client.id": self.process,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "request.timeout.ms": REQUEST_TIMEOUT_MS,
                # A hung broker is given up on after this (librdkafka's default is 60 s).
                "socket.timeout.ms": REQUEST_TIMEOUT_MS,
                "topic.metadata.refresh.interval.ms": 1_000,
                "retry.backoff.ms": 50,
                "retry.backoff.max.ms": 500,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
            }
        )

        def delivered(value: str, partition: int, err: Any, msg: Any) -> None:
            if err is None:
                self.acknowledged(value, partition, msg.offset())
            else:
                self.undecided(value, partition, str(err))

        while not self._stop.is_set():
            value, partition = self.next_value()
            self.history.invoke(
                self.process, "send", value=value, topic=self.topic, partition=partition
            )
            while True:
                try:
                    producer.produce(
                        self.topic,
                        value=value.encode(),
                        partition=partition,
                        on_delivery=functools.partial(delivered, value, partition),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            self.paced()
        left = producer.flush(DRAIN_TIMEOUT_S)
        if left:
            log.warning("%s: %d writes without a delivery report", self.process, left)


class KafkaPythonProducer(Producer):
    client = "kafka-python"

    def _run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.process,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            retry_backoff_ms=50,
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=500,
            metadata_max_age_ms=1_000,
            max_block_ms=DELIVERY_TIMEOUT_MS,
        )
        try:
            while not self._stop.is_set():
                value, partition = self.next_value()
                self.history.invoke(
                    self.process, "send", value=value, topic=self.topic, partition=partition
                )
                future = producer.send(self.topic, value=value.encode(), partition=partition)
                future.add_callback(
                    lambda meta, v=value, p=partition: self.acknowledged(v, p, meta.offset)
                )
                future.add_errback(lambda e, v=value, p=partition: self.undecided(v, p, repr(e)))
                self.paced()
            producer.flush(DRAIN_TIMEOUT_S)
        finally:
            producer.close(timeout=10)


class FalseAckProducer(ConfluentProducer):
    """Sabotage for the checker's own test: besides its real writes it records one write it never
    made as acknowledged, at an offset a real write of its own got."""

    def acknowledged(self, value: str, partition: int, offset: int) -> None:
        super().acknowledged(value, partition, offset)
        if not getattr(self, "_lied", False) and self.sent > 20:
            self._lied = True
            fake = f"{self.process}-never-sent"
            self.history.invoke(
                self.process, "send", value=fake, topic=self.topic, partition=partition
            )
            super().acknowledged(fake, partition, offset)


PRODUCERS: dict[str, type[Producer]] = {
    "confluent": ConfluentProducer,
    "kafka-python": KafkaPythonProducer,
    "false-ack": FalseAckProducer,
}


class GroupConsumer(Workload):
    """One member of `group` (process name `<group>/<member>`): polls, records, and commits what
    it processed every COMMIT_INTERVAL_S; `drained()` says when its commits reached `ends`."""

    def __init__(self, history: History, bootstrap: str, topic: str, group: str, member: int):
        super().__init__(history, bootstrap, topic, f"{group}/{member}")
        self.group = group
        self.committed: dict[int, int] = {}
        self._lock = threading.Lock()

    def committed_offsets(self) -> dict[int, int]:
        with self._lock:
            return dict(self.committed)

    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "client.id": self.process,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6_000,
                "heartbeat.interval.ms": 500,
                "socket.timeout.ms": REQUEST_TIMEOUT_MS,
                "topic.metadata.refresh.interval.ms": 1_000,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
            }
        )
        consumer.subscribe([self.topic])
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    self.history.ok(
                        self.process,
                        "poll",
                        value=(msg.value() or b"").decode(),
                        topic=msg.topic(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                    )
                if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                    last_commit = time.monotonic()
                    try:
                        done = consumer.commit(asynchronous=False)
                    except KafkaException as e:
                        # Nothing polled since the last commit, or the commit failed: either
                        # way nothing new is known to be committed.
                        if "NO_OFFSET" not in str(e):
                            self.history.fail(self.process, "commit", error=str(e))
                        continue
                    for tp in done or ():
                        if tp.error is None and tp.offset >= 0:
                            with self._lock:
                                self.committed[tp.partition] = tp.offset
                            self.history.ok(
                                self.process,
                                "commit",
                                topic=tp.topic,
                                partition=tp.partition,
                                offset=tp.offset,
                            )
        finally:
            consumer.close()


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-watermarks"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def read_back(
    history: History,
    bootstrap: str,
    topic: str,
    partitions: int,
    *,
    timeout: float = 60.0,
    drop: Mapping[int, int] | None = None,
) -> dict[tuple[str, int], list[tuple[int, str]]]:
    """Every partition from offset 0 to its high watermark, recorded as `read` operations.
    `drop` (partition → offset) leaves a record out: sabotage for the checker's own test."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    ends = high_watermarks(bootstrap, topic, partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "chaos-read-back",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    found: dict[tuple[str, int], list[tuple[int, str]]] = {(topic, p): [] for p in ends}
    try:
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0]
        )
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read-back of {topic} partitions {sorted(left)} timed out")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            p, offset, error = msg.partition(), msg.offset(), msg.error()
            if p is None or p not in ends:
                continue
            if error is not None:
                # The end-of-partition event: everything below the watermark was read.
                if error.code() == KafkaError._PARTITION_EOF:
                    left.discard(p)
                continue
            assert offset is not None
            if offset < ends[p] and not (drop and drop.get(p) == offset):
                value = (msg.value() or b"").decode()
                found[(topic, p)].append((offset, value))
                history.ok("read", "read", value=value, topic=topic, partition=p, offset=offset)
            if offset >= ends[p] - 1:
                left.discard(p)
    finally:
        consumer.close()
    return found


def wait_drained(
    consumers: Sequence[GroupConsumer], ends: Mapping[int, int], timeout: float = DRAIN_TIMEOUT_S
) -> bool:
    """Until the group's commits reach every partition's end (consumers see every record)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        committed: dict[int, int] = {}
        for consumer in consumers:
            for p, offset in consumer.committed_offsets().items():
                committed[p] = max(committed.get(p, 0), offset)
        if all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return True
        if any(c.error is not None for c in consumers):
            return False
        time.sleep(0.2)  # polling the consumers' progress, not a synchronisation stand-in
    return False
