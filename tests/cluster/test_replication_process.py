"""Process tests of partition replication on real `kraft serve` clusters: acknowledged writes
survive leader and follower crashes with real idempotent producers, the ISR shrinks and expands
as clients see it in Metadata, and acks=all is refused below min.insync.replicas.

A workload (Redpanda's chaos-test shape) writes numbered messages to one partition from a
thread and records every acknowledged one with its offset; faults are injected meanwhile; a
checker reads the partition back from the beginning and compares, then compares the replicas'
segment files byte for byte below the high watermark.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kraft.log.batch import iter_headers
from kraft.net.protocol import ListOffsetsRequest, ListOffsetsResponse

from ..e2e.client_drivers import ClientDriver, ConfluentDriver, KafkaPythonDriver
from .conftest import TRANSIENT, Cluster, call, poll_until
from .test_cluster import leaders

LAG_MS = 1500
SESSION_MS = 2000
# Fast failure detection so a test sees several failovers in seconds; min.insync.replicas=2
# is the broker default here, so every RF=3 topic has it.
REPLICATION = {
    "broker.session.timeout.ms": str(SESSION_MS),
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": str(LAG_MS),
    "min.insync.replicas": "2",
}
NOT_ENOUGH_REPLICAS = 19
LATEST = -1
DEBUG_REPLICA = -2  # ListOffsets as this replica answers with the log end, from any replica
# Waits are bounded, and generous: other cluster tests may share the machine's two cores.
FAILOVER_TIMEOUT_S = 30.0
ISR_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------ workloads


class Workload(ABC):
    """Writes numbered messages (b"<n>") to partition 0 of `topic` from a thread until
    stopped, with acks=all and an idempotent producer; `acked` maps each acknowledged number to
    the offset the producer was told."""

    name: str

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.acked: dict[int, int] = {}
        self.failed: dict[int, str] = {}
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"workload-{self.name}")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop writing, then wait for the outcome of every message in flight."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.name} producer did not finish in {timeout} s"

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_acked(self, count: int, timeout: float, what: str, logs: Callable[[], str]) -> float:
        """Seconds until at least `count` messages were acknowledged."""
        started = time.monotonic()
        poll_until(
            lambda: self.acked_count() >= count or None,
            timeout,
            f"{what} ({self.acked_count()} acknowledged, {len(self.failed)} failed)",
            on_timeout=logs,
        )
        return time.monotonic() - started

    def _ack(self, number: int, offset: int) -> None:
        with self._lock:
            self.acked[number] = offset

    def _fail(self, number: int, error: str) -> None:
        with self._lock:
            self.failed[number] = error

    @abstractmethod
    def _run(self) -> None: ...


class ConfluentWorkload(Workload):
    name = "confluent-kafka"
    # librdkafka settings a test changes (e.g. its timeouts, for a hung broker).
    overrides: ClassVar[dict[str, object]] = {}

    def _run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                # Outlasts every failover of the test: no acknowledged-or-not doubt.
                "message.timeout.ms": 60_000,
                "request.timeout.ms": 5_000,
                "retry.backoff.ms": 50,
                "retry.backoff.max.ms": 500,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                **self.overrides,
            }
        )

        def delivered(number: int, err: Any, msg: Any) -> None:
            if err is None:
                self._ack(number, msg.offset())
            else:
                self._fail(number, str(err))

        number = 0
        while not self._stop.is_set():
            try:
                producer.produce(
                    self.topic,
                    value=b"%d" % number,
                    partition=0,
                    on_delivery=functools.partial(delivered, number),
                )
                number += 1
            except BufferError:
                pass
            # Serves delivery reports, and paces the writes to a few hundred a second.
            producer.poll(0.002)
        self.sent = number
        left = producer.flush(90)
        assert left == 0, f"{left} messages without a delivery report"


class KafkaPythonWorkload(Workload):
    name = "kafka-python"

    def _run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=5_000,
            delivery_timeout_ms=60_000,
            retry_backoff_ms=50,
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=500,
            max_block_ms=60_000,
        )
        try:
            number = 0
            while not self._stop.is_set():
                future = producer.send(self.topic, value=b"%d" % number, partition=0)
                future.add_callback(self._on_ack, number)
                future.add_errback(self._on_error, number)
                number += 1
                time.sleep(0.002)
            self.sent = number
            producer.flush(90)
        finally:
            producer.close(timeout=10)

    def _on_ack(self, number: int, metadata: Any) -> None:
        self._ack(number, metadata.offset)

    def _on_error(self, number: int, error: Exception) -> None:
        self._fail(number, f"{type(error).__name__}: {error}")


WORKLOADS: dict[str, tuple[type[Workload], type[ClientDriver]]] = {
    "confluent-kafka": (ConfluentWorkload, ConfluentDriver),
    "kafka-python": (KafkaPythonWorkload, KafkaPythonDriver),
}


# -------------------------------------------------------------------------- helpers


def partition_state(cluster: Cluster, topic: str) -> tuple[int, list[int]] | None:
    """(leader, ISR) of partition 0 of `topic` as the first live node answering sees it."""
    for node_id in cluster.alive_ids():
        try:
            found = leaders(cluster.metadata(node_id, [topic], timeout=2.0), topic)
        except TRANSIENT:
            continue
        if 0 in found:
            return found[0]
    return None


def wait_partition(
    cluster: Cluster,
    topic: str,
    want: Callable[[int, list[int]], bool],
    what: str,
    timeout: float = ISR_TIMEOUT_S,
) -> tuple[int, list[int]]:
    def probe() -> tuple[int, list[int]] | None:
        state = partition_state(cluster, topic)
        return state if state is not None and want(*state) else None

    return poll_until(probe, timeout, what, 0.05, cluster.logs)


def wait_full_isr(cluster: Cluster, topic: str, replicas: set[int]) -> tuple[int, list[int]]:
    return wait_partition(
        cluster,
        topic,
        lambda leader, isr: leader in replicas and set(isr) == replicas,
        f"{topic}-0 to have a leader and ISR {sorted(replicas)}",
    )


def list_offset(cluster: Cluster, node_id: int, topic: str, replica_id: int) -> int:
    """ListOffsets LATEST of partition 0: the high watermark from the leader as a client, the
    log end from any replica as the debug replica."""
    request = ListOffsetsRequest(
        replica_id=replica_id,
        topics=[
            ListOffsetsRequest.ListOffsetsTopic(
                name=topic,
                partitions=[ListOffsetsRequest.ListOffsetsPartition(timestamp=LATEST)],
            )
        ],
    )
    response = call(cluster.nodes[node_id].kafka_port, request)
    assert isinstance(response, ListOffsetsResponse)
    (answer,) = response.topics[0].partitions
    return answer.offset if answer.error_code == 0 else -1


def wait_replicas_caught_up(cluster: Cluster, topic: str, replicas: set[int]) -> int:
    """Once nothing is written: until the leader's high watermark equals every replica's log
    end (all ISR members and fully replicated); that high watermark."""

    def probe() -> int | None:
        state = partition_state(cluster, topic)
        if state is None or set(state[1]) != replicas:
            return None
        hw = list_offset(cluster, state[0], topic, replica_id=-1)
        ends = {list_offset(cluster, r, topic, DEBUG_REPLICA) for r in replicas}
        return hw if hw > 0 and ends == {hw} else None

    return poll_until(probe, ISR_TIMEOUT_S, f"{topic}-0 fully replicated", 0.1, cluster.logs)


def stop_cleanly(cluster: Cluster) -> None:
    for node in cluster.nodes.values():
        if node.alive:
            node.terminate()
    for node_id, node in cluster.nodes.items():
        if node.proc is not None:
            code = node.wait_exit(30.0)
            assert code == 0, f"node {node_id} exit {code}\n{node.log_tail()}"
            node.kill()  # reaps, closes its pipe


def segments_below(partition_dir: Path, high_watermark: int) -> dict[str, bytes]:
    """{segment file name: its bytes below `high_watermark`} of one replica's partition dir.

    A segment is whole batches back to back (`log.segment`); a preallocated tail of zeros
    parses as no batch. Every batch below the high watermark ends below it (the high watermark
    is some replica's log end, a batch boundary), and the last one ends just before it."""
    out: dict[str, bytes] = {}
    last = -1
    for path in sorted(partition_dir.glob("*.log")):
        data = path.read_bytes()
        end = 0
        for position, header in iter_headers(data):
            if header.base_offset >= high_watermark:
                break
            assert header.last_offset < high_watermark, (path, header)
            end = position + header.size
            last = header.last_offset
        if end:
            out[path.name] = data[:end]
    assert last == high_watermark - 1, (
        f"{partition_dir}: batches end at {last}, hw {high_watermark}"
    )
    return out


def assert_replicas_identical(cluster: Cluster, topic: str, high_watermark: int) -> str:
    """The replicas' segments below the high watermark are the same files, byte for byte;
    what was compared."""
    copies = {
        node_id: segments_below(Path(node.spec.directory) / "data" / f"{topic}-0", high_watermark)
        for node_id, node in cluster.nodes.items()
    }
    first_id, first = next(iter(copies.items()))
    for node_id, segments in copies.items():
        assert segments.keys() == first.keys(), (
            f"segments of node {node_id} {sorted(segments)} != node {first_id} {sorted(first)}"
        )
        for name, data in segments.items():
            if data != first[name]:
                at = next(
                    (i for i, (a, b) in enumerate(zip(data, first[name], strict=False)) if a != b),
                    min(len(data), len(first[name])),
                )
                raise AssertionError(
                    f"{topic}-0 {name}: node {node_id} differs from node {first_id} at byte "
                    f"{at} ({len(data)} vs {len(first[name])} bytes below hw {high_watermark})"
                )
    size = sum(len(data) for data in first.values())
    return (
        f"{len(copies)} replicas x {len(first)} segment(s), {size} bytes below hw {high_watermark}"
    )


def check_read_back(workload: Workload, driver: ClientDriver, topic: str) -> int:
    """Every acknowledged message is in the partition exactly once, at the offset its producer
    was told, and the log holds the messages in the order they were sent, none twice; the
    number of records read."""
    records = driver.read_all(topic, 1, timeout_s=60.0)
    numbers = [int(r.value or b"-1") for r in records]
    offsets = {}
    duplicates = set()
    for r, n in zip(records, numbers, strict=True):
        if n in offsets:
            duplicates.add(n)
        offsets[n] = r.offset
    missing = sorted(n for n in workload.acked if n not in offsets)
    assert not missing, f"acknowledged messages lost: {missing[:20]} ({len(missing)})"
    assert not duplicates, f"messages written twice: {sorted(duplicates)[:20]}"
    moved = {n: (o, offsets[n]) for n, o in workload.acked.items() if offsets[n] != o}
    assert not moved, f"acknowledged at another offset (acked, read): {list(moved.items())[:20]}"
    out_of_order = [(a, b) for a, b in zip(numbers, numbers[1:], strict=False) if b <= a]
    assert not out_of_order, f"messages out of order: {out_of_order[:20]}"
    return len(records)


@contextmanager
def running(workload: Workload) -> Iterator[Workload]:
    workload.start()
    try:
        yield workload
    finally:
        workload.stop()


# ------------------------------------------------- acknowledged writes through crashes


@pytest.mark.parametrize("client", sorted(WORKLOADS))
def test_acknowledged_writes_survive_leader_and_follower_crashes(
    make_cluster: Callable[..., Cluster], client: str
) -> None:
    workload_type, driver_type = WORKLOADS[client]
    cluster = make_cluster(extra=REPLICATION)
    controller = cluster.wait_active_controller()
    topic = "acked"
    cluster.create_topic(controller, topic, 1, 3)
    everyone = set(cluster.nodes)
    wait_full_isr(cluster, topic, everyone)
    workload = workload_type(cluster.bootstrap_servers, topic)
    figures = []
    with running(workload):
        workload.wait_acked(200, FAILOVER_TIMEOUT_S, "the first acknowledgements", cluster.logs)

        # 1. kill -9 the partition leader; acks=all writes resume on a new leader.
        first, _ = wait_full_isr(cluster, topic, everyone)
        figures.append(_crash(cluster, workload, first, "leader"))
        # It comes back as a follower, truncates what it alone had, and rejoins the ISR.
        _restart(cluster, topic, first)

        # 2. kill -9 another broker: the leader now if that is not the first victim, else a
        # follower.
        leader, _ = wait_full_isr(cluster, topic, everyone)
        second = leader if leader != first else next(n for n in cluster.nodes if n != first)
        role = "leader" if second == leader else "follower"
        figures.append(_crash(cluster, workload, second, role))
        _restart(cluster, topic, second)
        workload.wait_acked(
            workload.acked_count() + 200, FAILOVER_TIMEOUT_S, "writes after", cluster.logs
        )
    print(
        f"\n{client}: sent {workload.sent}, acknowledged {len(workload.acked)}, "
        f"failed {len(workload.failed)}; " + "; ".join(figures)
    )
    assert not workload.failed, f"writes failed: {list(workload.failed.items())[:10]}"

    read = check_read_back(workload, driver_type(cluster.bootstrap_servers), topic)
    hw = wait_replicas_caught_up(cluster, topic, everyone)
    assert read == hw, f"read {read} records, high watermark {hw}"
    stop_cleanly(cluster)
    print("identical:", assert_replicas_identical(cluster, topic, hw))


def _crash(cluster: Cluster, workload: Workload, victim: int, role: str) -> str:
    """kill -9 `victim` while the workload writes; until writes are acknowledged again."""
    before = workload.acked_count()
    cluster.kill(victim)
    resumed = workload.wait_acked(
        before + 100, FAILOVER_TIMEOUT_S, f"writes after killing {role} {victim}", cluster.logs
    )
    return f"{role} {victim} killed: 100 more acks after {resumed:.2f} s"


def _restart(cluster: Cluster, topic: str, node_id: int) -> None:
    cluster.nodes[node_id].start()
    cluster.nodes[node_id].wait_ready()
    wait_full_isr(cluster, topic, set(cluster.nodes))


# ------------------------------------------------------------ ISR shrink and expand


def test_isr_shrinks_and_expands_in_metadata(make_cluster: Callable[..., Cluster]) -> None:
    """A follower that stops fetching leaves the ISR after replica.lag.time.max.ms (its
    session outlasts the test, so this is the leader's lag rule, not fencing), and returns
    once it has caught up; clients see both in Metadata."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    cluster = make_cluster(extra={**REPLICATION, "broker.session.timeout.ms": "30000"})
    controller = cluster.wait_active_controller()
    topic = "isr"
    cluster.create_topic(controller, topic, 1, 3)
    everyone = set(cluster.nodes)
    leader, _ = wait_full_isr(cluster, topic, everyone)
    # A follower that is not the active controller: stopping that one would also stop the
    # metadata quorum's leader, and with it the ISR change.
    follower = next(n for n in cluster.nodes if n not in (leader, controller))
    others = everyone - {follower}
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})

    def isr_seen() -> set[int] | None:
        from confluent_kafka import KafkaException

        try:
            metadata = admin.list_topics(topic, timeout=2)
        except KafkaException:
            return None  # e.g. asked the stopped broker
        partition = metadata.topics[topic].partitions.get(0)
        return set(partition.isrs) if partition is not None else None

    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
    acked: list[int] = []

    def produce(count: int) -> None:
        for i in range(count):
            producer.produce(
                topic, b"%d" % i, partition=0, on_delivery=lambda e, m: acked.append(e is None)
            )
        assert producer.flush(30) == 0

    produce(100)
    pid = cluster.nodes[follower].proc.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        poll_until(
            lambda: isr_seen() == others,
            LAG_MS / 1000 + 10,
            f"the ISR to shrink to {sorted(others)}",
            0.05,
            cluster.logs,
        )
        shrunk = time.monotonic() - stopped
        # min.insync.replicas=2: acks=all goes on with two.
        produce(100)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    poll_until(
        lambda: isr_seen() == everyone,
        ISR_TIMEOUT_S,
        f"the ISR to expand to {sorted(everyone)}",
        0.05,
        cluster.logs,
    )
    expanded = time.monotonic() - resumed
    print(
        f"\nfollower {follower} stopped: ISR shrank after {shrunk:.2f} s "
        f"(replica.lag.time.max.ms {LAG_MS}); resumed: back in the ISR after {expanded:.2f} s"
    )
    assert acked == [True] * 200
    assert shrunk <= LAG_MS / 1000 + 5.0


# ------------------------------------------------------- below min.insync.replicas


def test_acks_all_refused_below_min_insync_replicas(
    make_cluster: Callable[..., Cluster],
) -> None:
    """With 2 of a partition's 3 replicas down, acks=all is refused with NOT_ENOUGH_REPLICAS;
    once they are back nothing acknowledged is lost and acks=all works again.

    Five nodes: the metadata quorum must survive two brokers going down (three combined nodes
    would lose it, and with it any ISR change: writes would time out instead)."""
    cluster = make_cluster(extra=REPLICATION, size=5)
    controller = cluster.wait_active_controller()
    topic = "min-isr"
    cluster.create_topic(controller, topic, 1, 3)
    replicas = set(cluster.metadata(controller, [topic]).topics[0].partitions[0].replica_nodes)
    leader, _ = wait_full_isr(cluster, topic, replicas)
    bootstrap = cluster.bootstrap_servers
    before = _produce_confluent(bootstrap, topic, [b"before-%d" % i for i in range(50)])
    assert all(isinstance(r, int) for r in before), before

    # The leader and one follower go down together; the third replica leads alone.
    (survivor,) = sorted(replicas - {leader})[:1]
    victims = sorted(replicas - {survivor})
    for victim in victims:
        cluster.kill(victim)
    wait_partition(
        cluster,
        topic,
        lambda lead, isr: lead == survivor and isr == [survivor],
        f"{topic}-0 to be led by {survivor} alone",
        timeout=FAILOVER_TIMEOUT_S,
    )
    refused = _produce_confluent(bootstrap, topic, [b"refused-confluent"], retries=0)
    refused_kp = _produce_kafka_python(bootstrap, topic, [b"refused-kafka-python"])
    assert refused == [NOT_ENOUGH_REPLICAS], refused
    assert refused_kp == [NOT_ENOUGH_REPLICAS], refused_kp

    for victim in victims:
        cluster.nodes[victim].start()
    for victim in victims:
        cluster.nodes[victim].wait_ready()
    wait_full_isr(cluster, topic, replicas)
    after = _produce_confluent(bootstrap, topic, [b"after-%d" % i for i in range(50)])
    assert all(isinstance(r, int) for r in after), after
    records = ConfluentDriver(bootstrap).read_all(topic, 1, timeout_s=30.0)
    values = [r.value for r in records]
    assert values == [b"before-%d" % i for i in range(50)] + [b"after-%d" % i for i in range(50)]
    assert [r.offset for r in records] == before + after


def _produce_confluent(
    bootstrap: str, topic: str, values: list[bytes], retries: int | None = None
) -> list[int]:
    """acks=all; per message its offset, or the error code (negative: librdkafka's own)."""
    from confluent_kafka import Producer

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 0,
        "message.timeout.ms": 20_000,
    }
    if retries is not None:
        # The error is retriable: with retries the client would only report a timeout.
        config.update({"enable.idempotence": False, "message.send.max.retries": retries})
    producer = Producer(config)
    results: list[int] = []

    def report(err: Any, msg: Any) -> None:
        results.append(err.code() if err is not None else msg.offset())

    for value in values:
        producer.produce(topic, value, partition=0, on_delivery=report)
    assert producer.flush(30) == 0
    return results


def _produce_kafka_python(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    """acks=all, no retries; per message its offset or the Kafka error code."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", retries=0, request_timeout_ms=10_000
    )
    try:
        results: list[int] = []
        for value in values:
            try:
                results.append(producer.send(topic, value, partition=0).get(timeout=20).offset)
            except KafkaError as e:
                results.append(getattr(e, "errno", None) or -1)
        return results
    finally:
        producer.close(timeout=10)
