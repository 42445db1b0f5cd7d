"""Consumers in a group, one per client library, each polling in a thread of its own.

A `GroupMember` subscribes to one topic with a group id and an assignor ("range" or
"roundrobin", which every client here implements under the same protocol name), polls in a
loop, records what it was assigned and every record it got, and commits synchronously after
each non-empty batch (so a partition that moves to another member resumes exactly after the
last record its previous owner returned). Everything a library object does happens in the
member's thread; the test thread asks for more through `call`.

The state the test reads (`assigned`, `records`, `committed_positions`, `commits`) is
replaced or appended to by the member thread only; the test waits for conditions on it with
bounded waits. Records and acknowledged commits carry the monotonic time they were seen, so a
test can tell a redelivery after an acknowledged commit (offsets lost) from one before it (the
at-least-once a classic consumer group gives).

A failed commit ends the member (the test sees it in `close`), unless the member was made with
`tolerate_commit_failures`: then it is recorded in `commit_failures` and retried after the
next poll, as an application would when its coordinator fails over.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.e2e.client_drivers import Ack, ClientDriver, Outgoing, ProducerSettings

T = TypeVar("T")

HEARTBEAT_INTERVAL_MS = 250
SESSION_TIMEOUT_MS = 6000
POLL_TIMEOUT_S = 0.05
KAFKA_PYTHON_POLL_MS = 200


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    value: bytes
    member: str
    at: float = 0.0  # time.monotonic() when the poll returned it


class GroupMember(ABC):
    client: str

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        assignor: str,
        name: str | None = None,
        tolerate_commit_failures: bool = False,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.assignor = assignor
        self.name = name or f"{self.client}-{id(self) % 10000}"
        self.tolerate_commit_failures = tolerate_commit_failures
        self.assigned: frozenset[int] = frozenset()
        self.records: list[Consumed] = []
        self.committed_positions: dict[int, int] = {}
        # Acknowledged commits: (time.monotonic() of the acknowledgement, the positions of the
        # partitions this member has delivered from since its assignment last changed).
        self.commits: list[tuple[float, dict[int, int]]] = []
        self.commit_failures: list[str] = []
        # Every change of the assignment the client reported: (time.monotonic(), partitions).
        self.assignments: list[tuple[float, frozenset[int]]] = []
        self.started_at = 0.0
        self.first_assigned_at: float | None = None
        self.error: BaseException | None = None
        self._positions: dict[int, int] = {}
        self._dirty = False
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # ---------------------------------------------------------------- control

    def start(self) -> GroupMember:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def call(self, fn: Callable[[], T], timeout_s: float = 15.0) -> T:
        """Run `fn` in the member's thread (between polls) and return its result."""
        fut: Future[T] = Future()
        self._commands.put((fn, fut))
        return fut.result(timeout_s)

    def close(self, timeout_s: float = 20.0) -> None:
        """Leave the group (each client sends LeaveGroup on close) and stop the thread."""
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"{self.name} did not close in {timeout_s} s"
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error

    @property
    def first_join_s(self) -> float | None:
        if self.first_assigned_at is None:
            return None
        return self.first_assigned_at - self.started_at

    # ------------------------------------------------------------------- loop

    def _run(self) -> None:
        try:
            self._open()
            while not self._stop.is_set():
                batch = self._poll()
                assigned = frozenset(self._assignment())
                if assigned and self.first_assigned_at is None:
                    self.first_assigned_at = time.monotonic()
                if assigned != self.assigned:
                    self.assignments.append((time.monotonic(), assigned))
                    # Eager rebalancing revoked everything: the client restarts every
                    # partition at its committed offset, so what was delivered before is no
                    # longer its to commit. From here `_positions` is exactly what the
                    # client's commit() commits (the position after the last delivery).
                    self._positions.clear()
                    self._dirty = False
                self.assigned = assigned
                now = time.monotonic()
                for partition, offset, value in batch:
                    self.records.append(Consumed(partition, offset, value, self.name, now))
                    self._positions[partition] = offset + 1
                    self._dirty = True
                if self._dirty and self._try_commit():
                    self._dirty = False
                    self.committed_positions = {**self.committed_positions, **self._positions}
                while not self._commands.empty():
                    fn, fut = self._commands.get()
                    try:
                        fut.set_result(fn())
                    except Exception as e:  # noqa: BLE001  (raised in the caller's thread)
                        fut.set_exception(e)
        except Exception as e:  # noqa: BLE001  (raised by close() in the test's thread)
            self.error = e
        finally:
            try:
                self._close()
            except Exception as e:  # noqa: BLE001  (likewise)
                self.error = self.error or e
            self.assigned = frozenset()

    def _try_commit(self) -> bool:
        try:
            self._commit()
        except self._commit_errors() as e:
            if not self.tolerate_commit_failures:
                raise
            self.commit_failures.append(f"{type(e).__name__}: {e}")
            return False
        positions = {p: o for p, o in self._positions.items() if p in self.assigned}
        self.commits.append((time.monotonic(), positions))
        return True

    @abstractmethod
    def _commit_errors(self) -> tuple[type[Exception], ...]:
        """What the library raises for a commit that failed."""

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _poll(self) -> list[tuple[int, int, bytes]]: ...

    @abstractmethod
    def _assignment(self) -> set[int]: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def committed(self) -> dict[int, int | None]:
        """The group's committed offset of every partition of the topic (call via `call`)."""

    @abstractmethod
    def _close(self) -> None: ...


# --------------------------------------------------------------------------- kafka-python


class KafkaPythonMember(GroupMember):
    client = "kafka-python"

    def _open(self) -> None:
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
        self.consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=[assignor[self.assignor]],
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            fetch_max_wait_ms=50,
            request_timeout_ms=15_000,
        )
        # Subscribed before it knows the topic's partitions, kafka-python's leader assigns
        # nothing, then rejoins once the metadata arrives; and 3.0.12 can wedge when a poll
        # times out during that rejoin (the completed join is never applied). Knowing the
        # partitions first makes the first join the only one.
        self.consumer.partitions_for_topic(self.topic)
        self.consumer.subscribe([self.topic])

    def _poll(self) -> list[tuple[int, int, bytes]]:
        got = self.consumer.poll(timeout_ms=KAFKA_PYTHON_POLL_MS)
        return [(m.partition, m.offset, m.value) for msgs in got.values() for m in msgs]

    def _assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def _commit_errors(self) -> tuple[type[Exception], ...]:
        from kafka.errors import KafkaError

        return (KafkaError,)

    def _commit(self) -> None:
        self.consumer.commit()

    def committed(self) -> dict[int, int | None]:
        from kafka import TopicPartition

        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        return {p: self.consumer.committed(TopicPartition(self.topic, p)) for p in partitions}

    def _close(self) -> None:
        if hasattr(self, "consumer"):
            self.consumer.close(autocommit=False)


# ------------------------------------------------------------------------------- aiokafka


class AioKafkaMember(GroupMember):
    """aiokafka's consumer runs on an event loop owned by the member's thread; its group
    tasks (heartbeats, rejoins) run while `getmany` waits."""

    client = "aiokafka"

    def _open(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor
        from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
        self.loop = asyncio.new_event_loop()

        async def make() -> Any:
            consumer = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                client_id=self.name,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=(assignor[self.assignor],),
                heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
                session_timeout_ms=SESSION_TIMEOUT_MS,
                fetch_max_wait_ms=50,
                request_timeout_ms=15_000,
            )
            await consumer.start()
            return consumer

        self.consumer = self.loop.run_until_complete(make())

    def _poll(self) -> list[tuple[int, int, bytes]]:
        got = self.loop.run_until_complete(
            self.consumer.getmany(timeout_ms=int(POLL_TIMEOUT_S * 1000))
        )
        return [(m.partition, m.offset, m.value) for msgs in got.values() for m in msgs]

    def _assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def _commit_errors(self) -> tuple[type[Exception], ...]:
        from aiokafka.errors import KafkaError

        return (KafkaError,)

    def _commit(self) -> None:
        self.loop.run_until_complete(self.consumer.commit())

    def committed(self) -> dict[int, int | None]:
        from aiokafka import TopicPartition

        async def get() -> dict[int, int | None]:
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
            return {
                p: await self.consumer.committed(TopicPartition(self.topic, p)) for p in partitions
            }

        return self.loop.run_until_complete(get())

    def _close(self) -> None:
        if hasattr(self, "consumer"):
            try:
                self.loop.run_until_complete(self.consumer.stop())
            except asyncio.CancelledError:
                # aiokafka 0.14's fetcher re-raises the cancellation of a fetch it was
                # retrying against a dead broker, before stop() closes the connections.
                self.loop.run_until_complete(self.consumer._client.close())
        if hasattr(self, "loop"):
            self.loop.close()


# ------------------------------------------------------------------------ confluent-kafka


class ConfluentMember(GroupMember):
    client = "confluent-kafka"

    def _open(self) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "client.id": self.name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": self.assignor,
                "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "fetch.wait.max.ms": 50,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        self.consumer.subscribe([self.topic])

    def _poll(self) -> list[tuple[int, int, bytes]]:
        out: list[tuple[int, int, bytes]] = []
        for m in self.consumer.consume(num_messages=500, timeout=POLL_TIMEOUT_S):
            if m.error() is not None:
                raise RuntimeError(f"consume error: {m.error()}")
            partition, offset = m.partition(), m.offset()
            assert partition is not None and offset is not None
            out.append((partition, offset, m.value() or b""))
        return out

    def _assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def _commit_errors(self) -> tuple[type[Exception], ...]:
        from confluent_kafka import KafkaException

        return (KafkaException,)

    def _commit(self) -> None:
        self.consumer.commit(asynchronous=False)

    def committed(self) -> dict[int, int | None]:
        from confluent_kafka import TopicPartition

        metadata = self.consumer.list_topics(self.topic, timeout=10)
        partitions = sorted(metadata.topics[self.topic].partitions)
        found = self.consumer.committed(
            [TopicPartition(self.topic, p) for p in partitions], timeout=10
        )
        # librdkafka reports "nothing committed" as OFFSET_INVALID (-1001).
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}

    def _close(self) -> None:
        if hasattr(self, "consumer"):
            self.consumer.close()


MEMBERS: dict[str, type[GroupMember]] = {
    m.client: m for m in (KafkaPythonMember, AioKafkaMember, ConfluentMember)
}


# ------------------------------------------------------------------ what the tests check


def produce_to_each(
    driver: ClientDriver, topic: str, partitions: int, per_partition: int, tag: str
) -> set[tuple[int, int]]:
    """`per_partition` records into each of `partitions` partitions through `driver` (values
    `tag-partition-i`); their (partition, offset)."""
    records = [
        Outgoing(None, f"{tag}-{p}-{i}".encode(), (), 1_700_000_000_000 + i, partition=p)
        for i in range(per_partition)
        for p in range(partitions)
    ]
    acks = driver.produce(topic, records, ProducerSettings())
    assert all(isinstance(a, Ack) for a in acks), acks
    return {(a.partition, a.offset) for a in acks if isinstance(a, Ack)}


def split(members: Sequence[GroupMember], partitions: int) -> bool:
    """Every member owns partitions, no partition twice, all `partitions` of them owned."""
    owned = [m.assigned for m in members]
    return all(owned) and sum(map(len, owned)) == partitions == len(frozenset().union(*owned))


def consumed(members: Sequence[GroupMember]) -> list[Consumed]:
    return [r for m in members for r in list(m.records)]


def settled(members: Sequence[GroupMember], expected: set[tuple[int, int]]) -> Callable[[], bool]:
    """The records `expected` were all returned by a poll and their offsets committed."""

    def check() -> bool:
        got = {(r.partition, r.offset) for r in consumed(members)}
        if not expected <= got:
            return False
        done: dict[int, int] = {}
        for m in members:
            for p, position in m.committed_positions.items():
                done[p] = max(done.get(p, 0), position)
        return all(done.get(p, 0) > o for p, o in expected)

    return check


def assert_once_each(records: list[Consumed], expected: set[tuple[int, int]]) -> None:
    counts = Counter((r.partition, r.offset) for r in records)
    assert set(counts) == expected
    assert [k for k, n in counts.items() if n > 1] == []


def close_all(members: Sequence[GroupMember]) -> None:
    """Close every member, then fail with all the members that failed."""
    errors = []
    for m in members:
        try:
            m.close()
        except AssertionError as e:
            errors.append(str(e))
    assert errors == []


def figure(name: str, value: float, **labels: str) -> None:
    """A `FIGURE` line: a time the test measured (reported, not asserted)."""
    tags = " ".join(f"{k}={v}" for k, v in labels.items())
    print(f"FIGURE {name} {tags} {value * 1000:.0f} ms")
