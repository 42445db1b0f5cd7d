"""Consumer groups on a 3-node cluster of real `kraft serve` processes, with real clients.

With each of kafka-python, aiokafka and confluent-kafka: three consumers of one group split a
6-partition topic (RF=3) with no overlap and take over the partitions of one that leaves;
restarted consumers resume exactly after the committed offsets; a group mixing the three
clients works when they share an assignor; kill -9 of the broker coordinating the groups
moves them to a new coordinator with their committed offsets intact while consumption goes
on, and they move back, intact again, when it returns and leads again. Clients cannot write to
`__consumer_offsets`. A new group's first join time is printed as a `FIGURE` line (reported,
not asserted: the machine may be shared).

Exactly once and at least once. A member commits synchronously after every batch a poll
returned, so while the cluster is healthy every record is delivered exactly once: a partition
that changes hands resumes at the last commit, which covers every record delivered before it
(eager rebalancing: the old owner's commits are acknowledged before it rejoins). Those tests
assert exactly once. When the coordinator dies, a commit in flight fails or its answer is
lost, and a member may be fenced (its client still holding partitions the group gave away,
its commits failing) — a classic group then gives at least once, which is what the kill test
asserts, precisely, per group: every record whose acks=all produce was acknowledged is
delivered; no offset is ever delivered with two different records, nor a record at two
offsets (the producer is idempotent); and wherever a member starts (or restarts) reading a
partition, it starts at or above every position of that partition committed *and
acknowledged* before — reading from below one would mean an acknowledged commit was lost.
Records after the last acknowledged commit may be delivered twice; nothing below it may.

Waits are bounded and on observable conditions (assignments, records delivered, commits
acknowledged, answers of the brokers); nothing sleeps to synchronise. One cluster serves the
whole module.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kraft.log.batch import BatchHeader, iter_headers
from kraft.log.records import build_simple_batch
from kraft.net.client import KafkaConnection
from kraft.net.groups.coordinator import OFFSETS_TOPIC, partition_for
from kraft.net.protocol import (
    ElectLeadersRequest,
    ElectLeadersResponse,
    ErrorCode,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    Message,
    OffsetFetchRequest,
    OffsetFetchResponse,
    ProduceRequest,
    ProduceResponse,
)
from tests import wait
from tests.e2e import group_clients
from tests.e2e.client_drivers import ConfluentDriver
from tests.e2e.group_clients import (
    MEMBERS,
    Consumed,
    GroupMember,
    assert_once_each,
    close_all,
    consumed,
    figure,
    settled,
)

from .conftest import TRANSIENT, Cluster, call, poll_until
from .test_cluster import leaders

pytestmark = pytest.mark.timeout(240)

PARTITIONS = 6
# Broker sessions of 2 s so a killed broker is fenced (and its partitions get new leaders)
# within a test's time; groups start at once like `kraft up`'s; min.insync.replicas=2 so an
# acks=all write survives the loss of any one broker.
GROUP_CLUSTER = {
    "group.initial.rebalance.delay.ms": "0",
    "broker.session.timeout.ms": "2000",
    "broker.heartbeat.interval.ms": "500",
    "min.insync.replicas": "2",
}
# Generous: other cluster tests may share the machine's two cores.
WAIT_S = 45.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three combined nodes whose `__consumer_offsets` exists (the first FindCoordinator
    creates it with replication factor 3), so join times do not include creating it."""
    c = Cluster(tmp_path_factory.mktemp("groups-cluster"), 3, GROUP_CLUSTER)
    try:
        c.start()
        c.wait_brokers(set(c.nodes), on=c.nodes)
        start = time.monotonic()
        poll_until(
            lambda: find_coordinator(c, "warm-up"), WAIT_S, "__consumer_offsets", 0.1, c.logs
        )
        figure("offsets_topic_creation", time.monotonic() - start)
        c.wait_topic(OFFSETS_TOPIC, on=c.nodes)
        yield c
    finally:
        c.kill_all()


@pytest.fixture(params=sorted(MEMBERS))
def member_cls(request: pytest.FixtureRequest) -> type[GroupMember]:
    return MEMBERS[request.param]


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A topic and group name unique to the test id."""
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")


# ----------------------------------------------------------------------- requests


def find_coordinator(cluster: Cluster, group: str, among: Sequence[int] = ()) -> int | None:
    """The coordinator of `group` as the first live node of `among` (default: all) answers
    FindCoordinator, or None while it has none."""
    for node_id in among or cluster.alive_ids():
        try:
            response = call(
                cluster.nodes[node_id].kafka_port,
                FindCoordinatorRequest(key_type=0, coordinator_keys=[group]),
                timeout=10.0,
            )
        except TRANSIENT:
            continue
        assert isinstance(response, FindCoordinatorResponse)
        (found,) = response.coordinators
        return found.node_id if found.error_code == ErrorCode.NONE else None
    return None


def committed_offsets(cluster: Cluster, node_id: int, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets of `topic` as `node_id` answers OffsetFetch (only
    replicated commits are visible); raises AssertionError if it does not coordinate the
    group (yet)."""
    response = call(
        cluster.nodes[node_id].kafka_port,
        OffsetFetchRequest(
            groups=[
                OffsetFetchRequest.OffsetFetchRequestGroup(
                    group_id=group,
                    topics=[
                        OffsetFetchRequest.OffsetFetchRequestTopics(
                            name=topic, partition_indexes=list(range(PARTITIONS))
                        )
                    ],
                )
            ],
            require_stable=True,
        ),
        timeout=10.0,
    )
    assert isinstance(response, OffsetFetchResponse)
    (answer,) = response.groups
    assert answer.error_code == ErrorCode.NONE, f"OffsetFetch {group}: error {answer.error_code}"
    return {
        p.partition_index: p.committed_offset
        for t in answer.topics
        for p in t.partitions
        if p.committed_offset >= 0
    }


def current_committed_offsets(cluster: Cluster, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets from whichever node coordinates it now (the coordinator
    may move at any time, e.g. when a returning broker is made leader again)."""
    result: dict[int, int] = {}

    def fetched() -> bool:
        node_id = find_coordinator(cluster, group)
        if node_id is None:
            return False
        try:
            result.update(committed_offsets(cluster, node_id, group, topic))
        except AssertionError:  # moved between FindCoordinator and OffsetFetch
            return False
        return True

    wait_until(fetched, f"the committed offsets of {group}")
    return result


# ------------------------------------------------------------------------ helpers


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float = WAIT_S,
    explain: Callable[[], str] | None = None,
) -> float:
    """`tests.wait.wait_until` with this module's longer default."""
    return wait.wait_until(condition, what, timeout_s, explain)


def create_topic(cluster: Cluster, topic: str) -> None:
    controller = cluster.wait_active_controller()
    cluster.create_topic(controller, topic, PARTITIONS, 3)
    cluster.wait_topic(topic, on=cluster.alive_ids())


def produce(cluster: Cluster, topic: str, per_partition: int, tag: str) -> set[tuple[int, int]]:
    """`per_partition` records into every partition with acks=all; their (partition, offset)."""
    driver = ConfluentDriver(cluster.bootstrap_servers)
    return group_clients.produce_to_each(driver, topic, PARTITIONS, per_partition, tag)


def start_group(
    classes: Sequence[type[GroupMember]],
    cluster: Cluster,
    topic: str,
    group: str,
    assignor: str = "range",
    tolerate_commit_failures: bool = False,
) -> list[GroupMember]:
    return [
        c(
            cluster.bootstrap_servers,
            topic,
            group,
            assignor,
            name=f"{group}-{c.client}-{i}",
            tolerate_commit_failures=tolerate_commit_failures,
        ).start()
        for i, c in enumerate(classes)
    ]


def split(members: Sequence[GroupMember]) -> bool:
    """`group_clients.split` of this module's topics."""
    return group_clients.split(members, PARTITIONS)


def describe(members: Sequence[GroupMember], cluster: Cluster | None = None, note: str = "") -> str:
    """The members' state (and the note and the nodes' log tails) for a failed wait."""
    lines = [note] if note else []
    for m in members:
        last: dict[int, int] = {}
        for r in list(m.records):
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        lines.append(
            f"{m.name}: assigned {sorted(m.assigned)}, last delivered {dict(sorted(last.items()))}"
            f", committed {m.committed_positions}, commit failures {m.commit_failures[-3:]}"
            f", error {m.error!r}"
        )
    if cluster is not None:
        lines.append(cluster.logs())
    return "\n".join(lines)


def coordinated_by(cluster: Cluster, group: str, broker: int) -> bool:
    return find_coordinator(cluster, group) == broker


def delivered_all(
    members: Sequence[GroupMember], acked: dict[bytes, tuple[int, int | None]]
) -> bool:
    delivered = {(r.value, r.partition) for r in consumed(members)}
    return all((v, p) in delivered for v, (p, _) in acked.items())


# ----------------------------------------------------------- acknowledged workload


class AckedProducer:
    """Writes numbered records round-robin over the topic's partitions from a thread, with
    acks=all and an idempotent confluent-kafka producer, until stopped; `acked` maps the
    value of each acknowledged record (they are unique) to its partition and offset. The
    offset may be unknown (None): librdkafka reports a batch whose request failed as
    delivered, without offsets, once a later batch of the same idempotent producer succeeds
    (it must then have been written)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.acked: dict[bytes, tuple[int, int | None]] = {}
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"producer-{topic}", daemon=True)

    def start(self) -> AckedProducer:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 90.0) -> None:
        """Stop writing, then wait for the outcome of every record in flight."""
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"producer did not finish in {timeout_s} s"

    def snapshot(self) -> dict[bytes, tuple[int, int | None]]:
        with self._lock:
            return dict(self.acked)

    def _run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                # Outlasts the failover: every record ends acknowledged or failed, no doubt.
                "message.timeout.ms": 60_000,
                "request.timeout.ms": 5_000,
                "retry.backoff.ms": 50,
                "retry.backoff.max.ms": 500,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )

        def delivered(value: bytes, err: Any, msg: Any) -> None:
            if err is not None:
                with self._lock:
                    self.failed.append(str(err))
                return
            with self._lock:
                self.acked[value] = (msg.partition(), msg.offset())

        number = 0
        while not self._stop.is_set():
            value = b"%d" % number
            try:
                producer.produce(
                    self.topic,
                    value=value,
                    partition=number % PARTITIONS,
                    on_delivery=functools.partial(delivered, value),
                )
                number += 1
            except BufferError:
                pass
            # Serves delivery reports, and paces the writes to a few hundred a second.
            producer.poll(0.005)
        left = producer.flush(80)
        if left:
            with self._lock:
                self.failed.append(f"{left} records still in flight after flush")


def timeline(members: Sequence[GroupMember], partition: int) -> str:
    """Who was assigned what, who delivered which runs of `partition` when, and the
    acknowledged commits of it: the story behind a failed check."""
    events: list[tuple[float, str]] = []
    for m in members:
        for first, last in stints(m, partition):
            events.append(
                (first.at, f"{m.name} delivered {first.offset}..{last.offset} until {last.at:.3f}")
            )
        for t, positions in m.commits:
            if partition in positions:
                events.append((t, f"{m.name} commit acknowledged: {positions[partition]}"))
        for t, assigned in m.assignments:
            events.append((t, f"{m.name} assigned {sorted(assigned)}"))
    return "\n".join(f"{t:.3f} {e}" for t, e in sorted(events))


def stints(member: GroupMember, partition: int) -> list[tuple[Consumed, Consumed]]:
    """(first, last) delivery of each run of consecutive offsets `member` read of `partition`:
    a run starts where the consumer (re)started reading — a new assignment fetching the
    committed offset, or a reset."""
    runs: list[tuple[Consumed, Consumed]] = []
    first: Consumed | None = None
    last: Consumed | None = None
    for r in member.records:
        if r.partition != partition:
            continue
        if first is None or last is None or r.offset != last.offset + 1:
            if first is not None and last is not None:
                runs.append((first, last))
            first = r
        last = r
    if first is not None and last is not None:
        runs.append((first, last))
    return runs


def _batch_at(log_dirs: Sequence[Path], topic: str, partition: int, offset: int) -> BatchHeader:
    """The header of the batch holding `offset`, from the first replica's log that has it."""
    for log_dir in log_dirs:
        directory = log_dir / f"{topic}-{partition}"
        for segment in sorted(directory.glob("*.log")):
            for _, header in iter_headers(segment.read_bytes()):
                if header.base_offset <= offset <= header.last_offset:
                    return header
    raise AssertionError(f"offset {offset} of {topic}-{partition} is in no replica's log")


def _epoch_bumped(log_dirs: Sequence[Path], topic: str, dup: tuple[bytes, int, int, int]) -> bool:
    _, partition, first, second = dup
    a = _batch_at(log_dirs, topic, partition, min(first, second))
    b = _batch_at(log_dirs, topic, partition, max(first, second))
    return a.producer_id == b.producer_id and b.producer_epoch > a.producer_epoch


def _batch_details(
    log_dirs: Sequence[Path], topic: str, dups: Sequence[tuple[bytes, int, int, int]]
) -> str:
    lines = []
    for _, partition, first, second in dups[:5]:
        for offset in (first, second):
            h = _batch_at(log_dirs, topic, partition, offset)
            lines.append(
                f"\n  {topic}-{partition}@{offset}: batch {h.base_offset}..{h.last_offset} "
                f"producer {h.producer_id} epoch {h.producer_epoch} seq {h.base_sequence} "
                f"leader epoch {h.partition_leader_epoch}"
            )
    return "".join(lines)


def assert_at_least_once(
    members: Sequence[GroupMember],
    acked: dict[bytes, tuple[int, int | None]],
    topic: str = "",
    log_dirs: Sequence[Path] | None = None,
) -> tuple[int, int]:
    """The at-least-once a classic group gives (see the module docstring): every acknowledged
    record was delivered, with its value; no offset was ever delivered with two different
    records; and wherever a member started (or restarted) reading a partition, it started at
    or above every position of that partition committed and acknowledged before — so no
    acknowledged commit was lost. A member the group fenced meanwhile (whose commits fail)
    may go on delivering what it had: those deliveries continue a run and are counted as
    redeliveries, which is allowed. Returns (deliveries, redeliveries)."""
    deliveries = sorted(consumed(members), key=lambda r: r.at)
    got: dict[tuple[int, int], bytes] = {}
    changed = []
    redelivered = 0
    for r in deliveries:
        key = (r.partition, r.offset)
        if key not in got:
            got[key] = r.value
            continue
        redelivered += 1
        if got[key] != r.value:
            changed.append((r.member, r.partition, r.offset, got[key], r.value))
    # An offset that once held a record delivered to a consumer (below a high watermark)
    # holds it forever: a different record there means the log lost a committed write.
    assert changed == [], f"offsets delivered with two different records: {changed[:20]}"
    at: dict[tuple[bytes, int], int] = {}
    twice = []
    for (p, o), v in got.items():
        if at.setdefault((v, p), o) != o:
            twice.append((v, p, at[(v, p)], o))
    # The producer is idempotent: a batch retried under the same producer epoch is never
    # written twice. librdkafka may bump its epoch after an out-of-order answer and resend
    # unacknowledged batches from sequence 0 (KIP-360; its issue #4953): Kafka appends those
    # again too, so a copy written under a *higher* epoch of the same producer is allowed.
    if twice and log_dirs is not None:
        same_epoch = [t for t in twice if not _epoch_bumped(log_dirs, topic, t)]
    else:
        same_epoch = twice
    assert same_epoch == [], (
        f"records written twice (value, partition, offsets): {same_epoch[:20]}"
        + (_batch_details(log_dirs, topic, same_epoch) if log_dirs else "")
    )
    missing = sorted((v, p, o) for v, (p, o) in acked.items() if (v, p) not in at)
    assert missing == [], f"{len(missing)} acknowledged records never delivered: {missing[:20]}"
    moved = sorted(
        (v, p, o, at[(v, p)]) for v, (p, o) in acked.items() if o is not None and at[(v, p)] != o
    )
    assert moved == [], f"records delivered at other offsets than acknowledged: {moved[:20]}"

    commits = [
        (t, p, o) for m in members for t, positions in m.commits for p, o in positions.items()
    ]
    violations = []
    for m in members:
        for p in range(PARTITIONS):
            for first, _ in stints(m, p):
                floor = max((o for t, q, o in commits if q == p and t < first.at), default=0)
                if first.offset < floor:
                    violations.append((m.name, p, first.offset, floor))
    assert violations == [], (
        "reading started below an acknowledged commit (member, partition, first offset, "
        f"committed position): {violations}\n" + timeline(members, violations[0][1])
    )
    return len(deliveries), redelivered


# -------------------------------------------------------------------------- tests


def test_first_join(cluster: Cluster, member_cls: type[GroupMember], name: str) -> None:
    """A new group with one member: from the consumer's start to its first assignment
    (bootstrap, FindCoordinator, JoinGroup twice, SyncGroup), reported, not asserted."""
    create_topic(cluster, name)
    (member,) = start_group([member_cls], cluster, name, name)
    try:
        wait_until(
            lambda: member.assigned == frozenset(range(PARTITIONS)),
            "the first join",
            explain=lambda: describe([member]) + "\n" + cluster.logs(),
        )
    finally:
        close_all([member])
    assert member.first_join_s is not None
    figure("first_join", member.first_join_s, client=member.client)


def test_members_split_partitions_and_take_over_from_one_that_leaves(
    cluster: Cluster, member_cls: type[GroupMember], name: str
) -> None:
    create_topic(cluster, name)
    members = start_group([member_cls] * 3, cluster, name, name)
    try:
        joined = wait_until(
            lambda: split(members),
            "three members to split six partitions",
            explain=lambda: describe(members),
        )
        figure("three_members_split", joined, client=member_cls.client)
        assert [len(m.assigned) for m in members] == [2, 2, 2]

        first = produce(cluster, name, 10, "a")
        wait_until(
            settled(members, first),
            "60 records delivered and committed",
            explain=lambda: describe(members),
        )
        assert_once_each(consumed(members), first)
        for m in members:
            assert {r.partition for r in m.records} <= m.assigned, m.name

        leaver, stayers = members[0], members[1:]
        taken = leaver.assigned
        start = time.monotonic()
        leaver.close()
        wait_until(
            lambda: split(stayers), "two members to take over", explain=lambda: describe(stayers)
        )
        figure("rebalance_after_leave", time.monotonic() - start, client=member_cls.client)
        assert [len(m.assigned) for m in stayers] == [3, 3]
        assert taken <= stayers[0].assigned | stayers[1].assigned

        second = produce(cluster, name, 10, "b")
        wait_until(
            settled(stayers, second),
            "60 more records delivered and committed",
            explain=lambda: describe(stayers),
        )
        # The partitions taken over resume after the leaver's commits: nothing twice.
        assert_once_each(consumed(members), first | second)
    finally:
        close_all(members)


def test_restarted_consumers_resume_after_the_committed_offsets(
    cluster: Cluster, member_cls: type[GroupMember], name: str
) -> None:
    create_topic(cluster, name)
    old = produce(cluster, name, 5, "old")
    first = start_group([member_cls] * 3, cluster, name, name)
    try:
        wait_until(
            settled(first, old), "the first consumers to commit", explain=lambda: describe(first)
        )
    finally:
        close_all(first)
    assert_once_each(consumed(first), old)
    coordinator = poll_until(lambda: find_coordinator(cluster, name), WAIT_S, "the coordinator")
    assert committed_offsets(cluster, coordinator, name, name) == dict.fromkeys(
        range(PARTITIONS), 5
    )

    new = produce(cluster, name, 5, "new")
    second = start_group([member_cls] * 3, cluster, name, name)
    try:
        wait_until(
            settled(second, new),
            "the restarted consumers to catch up",
            explain=lambda: describe(second),
        )
    finally:
        close_all(second)
    assert_once_each(consumed(second), new)  # exactly after the committed offsets
    assert committed_offsets(cluster, coordinator, name, name) == dict.fromkeys(
        range(PARTITIONS), 10
    )


@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_mixed_client_group_shares_an_assignor(cluster: Cluster, name: str, assignor: str) -> None:
    create_topic(cluster, name)
    classes = [MEMBERS[c] for c in sorted(MEMBERS)]
    members = start_group(classes, cluster, name, name, assignor)
    try:
        joined = wait_until(
            lambda: split(members),
            "the three clients to split the topic",
            explain=lambda: describe(members),
        )
        figure("mixed_split", joined, assignor=assignor)
        first = produce(cluster, name, 10, "a")
        wait_until(
            settled(members, first), "the mixed group to consume", explain=lambda: describe(members)
        )
        assert_once_each(consumed(members), first)
        for m in members:
            assert {r.partition for r in m.records} <= m.assigned, m.name

        leaver = next(m for m in members if m.client == "confluent-kafka")
        stayers = [m for m in members if m is not leaver]
        leaver.close()
        wait_until(
            lambda: split(stayers),
            "the other clients to take over",
            explain=lambda: describe(stayers),
        )
        second = produce(cluster, name, 10, "b")
        wait_until(
            settled(stayers, second), "the rest to consume", explain=lambda: describe(stayers)
        )
        assert_once_each(consumed(members), first | second)
    finally:
        close_all(members)


def produce_raw(cluster: Cluster, node_id: int, topic: str, index: int, client_id: str) -> int:
    """One acks=all Produce of one record, as client `client_id`; its error code."""

    async def send() -> Message:
        conn = KafkaConnection("127.0.0.1", cluster.nodes[node_id].kafka_port, client_id=client_id)
        try:
            async with asyncio.timeout(10):
                await conn.connect()
                return await conn.request(
                    ProduceRequest(
                        acks=-1,
                        timeout_ms=5000,
                        topic_data=[
                            ProduceRequest.TopicProduceData(
                                name=topic,
                                partition_data=[
                                    ProduceRequest.PartitionProduceData(
                                        index=index,
                                        # A key no coordinator reads (schema version 99).
                                        records=build_simple_batch([b"v"], [b"\x00\x63"]),
                                    )
                                ],
                            )
                        ],
                    )
                )
        finally:
            await conn.close()

    response = asyncio.run(send())
    assert isinstance(response, ProduceResponse)
    (answer,) = response.responses[0].partition_responses
    return answer.error_code


def test_clients_cannot_write_to_the_offsets_topic(cluster: Cluster, name: str) -> None:
    """Like Kafka: Produce to an internal topic is refused with INVALID_TOPIC_EXCEPTION, on the
    partition's leader as anywhere else, unless the client id is Kafka's admin client's; so no
    client can forge offsets or group metadata."""
    controller = cluster.wait_active_controller()
    partition = partition_for(name, 50)
    leader, _ = leaders(cluster.metadata(controller, [OFFSETS_TOPIC]), OFFSETS_TOPIC)[partition]
    follower = next(n for n in cluster.alive_ids() if n != leader)
    for node_id in (leader, follower):
        code = produce_raw(cluster, node_id, OFFSETS_TOPIC, partition, "a-client")
        assert code == ErrorCode.INVALID_TOPIC_EXCEPTION, (node_id, code)
    assert produce_raw(cluster, leader, OFFSETS_TOPIC, partition, "__admin_client") == 0
    assert produce_raw(cluster, follower, OFFSETS_TOPIC, partition, "__admin_client") == (
        ErrorCode.NOT_LEADER_OR_FOLLOWER
    )


def groups_coordinated_by(cluster: Cluster, broker: int, prefix: str, count: int) -> list[str]:
    """`count` group ids whose `__consumer_offsets` partition `broker` leads."""
    controller = cluster.wait_active_controller()
    led = {
        p
        for p, (leader, _) in leaders(
            cluster.metadata(controller, [OFFSETS_TOPIC]), OFFSETS_TOPIC
        ).items()
        if leader == broker
    }
    assert led, f"broker {broker} leads no partition of {OFFSETS_TOPIC}"
    names = (f"{prefix}-{i}" for i in range(10_000))
    return [g for g in names if partition_for(g, 50) in led][:count]


def test_coordinator_killed_groups_move_with_offsets_intact(cluster: Cluster) -> None:
    """One group per client, all coordinated by the same broker (not the active controller),
    consume a topic an acks=all producer keeps writing; kill -9 that broker. Each group finds
    its new coordinator with its committed offsets at least those it had, and consumption
    resumes on every partition (those the killed broker led too). The broker then comes back
    and a preferred-leader election hands the groups back to it: they move again, offsets
    intact again. In the end every acknowledged record was delivered at least once (see the
    module docstring)."""
    topic = "coordinator-kill"
    create_topic(cluster, topic)
    controller = cluster.wait_active_controller()
    victim = next(n for n in sorted(cluster.nodes) if n != controller)
    survivors = [n for n in cluster.nodes if n != victim]
    clients = sorted(MEMBERS)
    groups = dict(
        zip(clients, groups_coordinated_by(cluster, victim, "kill", len(clients)), strict=True)
    )
    producer = AckedProducer(cluster.bootstrap_servers, topic).start()
    members: dict[str, list[GroupMember]] = {}
    everyone: list[GroupMember] = []
    try:
        # Warm-up: every group formed and committing on every partition.
        for client, group in groups.items():
            members[client] = start_group(
                [MEMBERS[client]] * 3, cluster, topic, group, tolerate_commit_failures=True
            )
            everyone += members[client]
        for client, group in groups.items():
            wait_until(
                functools.partial(coordinated_by, cluster, group, victim),
                f"group {group} to be coordinated by broker {victim}",
            )
            wait_until(
                functools.partial(split, members[client]),
                f"{client} members to split",
                explain=functools.partial(describe, everyone),
            )
        wait_until(
            lambda: all(
                len({p for m in ms for p in m.committed_positions}) == PARTITIONS
                for ms in members.values()
            ),
            "every group to commit on every partition",
            explain=lambda: describe(everyone),
        )
        data_led = sorted(
            p
            for p, (leader, _) in leaders(cluster.metadata(controller, [topic]), topic).items()
            if leader == victim
        )

        # Kill -9 the coordinator: the groups move, consumption resumes everywhere.
        before = {g: committed_offsets(cluster, victim, g, topic) for g in groups.values()}
        cluster.kill(victim)
        killed = time.monotonic()
        print(f"broker {victim} (leader of partitions {data_led}) killed at {killed:.3f}")
        wait_groups_moved(cluster, groups, topic, before, survivors, killed)
        wait_consumption_resumes(cluster, producer, members, killed, "kill")

        # The broker comes back and is made leader again of what it led: the groups move back.
        cluster.nodes[victim].start()
        cluster.nodes[victim].wait_ready()
        offsets_partitions = [partition_for(g, 50) for g in groups.values()]
        wait_in_sync(cluster, victim, {topic: data_led, OFFSETS_TOPIC: offsets_partitions})
        before = {g: current_committed_offsets(cluster, g, topic) for g in groups.values()}
        elected = time.monotonic()
        elect_preferred_leaders(cluster, {topic: data_led, OFFSETS_TOPIC: offsets_partitions})
        wait_groups_moved(cluster, groups, topic, before, [victim], elected)
        wait_consumption_resumes(cluster, producer, members, elected, "return")

        producer.stop()
        acked = producer.snapshot()
        assert producer.failed == [], producer.failed[:10]
        for client, ms in members.items():
            wait_until(
                functools.partial(delivered_all, ms, acked),
                f"{client}'s group to deliver every acknowledged record",
                explain=functools.partial(describe, ms, cluster),
            )
    finally:
        producer.stop()
        close_all(everyone)
    for client, ms in members.items():
        total, again = assert_at_least_once(
            ms, acked, topic, [Path(n.spec.directory) / "data" for n in cluster.nodes.values()]
        )
        print(
            f"{client}: {len(acked)} acknowledged, {total} deliveries, {again} redelivered, "
            f"{sum(len(m.commit_failures) for m in ms)} commits failed"
        )


def wait_groups_moved(
    cluster: Cluster,
    groups: dict[str, str],
    topic: str,
    before: dict[str, dict[int, int]],
    candidates: Sequence[int],
    since: float,
) -> dict[str, int]:
    """Until each group's coordinator, as the live nodes answer FindCoordinator, is one of
    `candidates` and serves committed offsets at least `before`; {group: coordinator}."""
    found: dict[str, int] = {}
    for client, group in groups.items():

        def moved(group: str = group) -> bool:
            node = find_coordinator(cluster, group)
            if node is None or node not in candidates:
                return False
            try:
                now = committed_offsets(cluster, node, group, topic)
            except AssertionError:
                return False  # COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR meanwhile
            assert all(now.get(p, -1) >= o for p, o in before[group].items()), (
                f"group {group}: committed offsets {before[group]} before, "
                f"{now} at the new coordinator {node}"
            )
            found[group] = node
            return True

        wait_until(
            moved, f"group {group} to move to one of {list(candidates)}", explain=cluster.logs
        )
        figure("coordinator_moved", time.monotonic() - since, client=client)
    return found


def wait_consumption_resumes(
    cluster: Cluster,
    producer: AckedProducer,
    members: dict[str, list[GroupMember]],
    since: float,
    what: str,
) -> None:
    """Until every group has delivered, on every partition, a record above the highest one
    acknowledged by now (so written after it); prints the time from `since`."""
    acked = producer.snapshot()
    high = {
        p: max((o for q, o in acked.values() if q == p and o is not None), default=-1)
        for p in range(PARTITIONS)
    }
    for client, ms in members.items():

        def resumed(ms: list[GroupMember] = ms) -> bool:
            delivered: dict[int, int] = {}
            for r in consumed(ms):
                delivered[r.partition] = max(delivered.get(r.partition, -1), r.offset)
            return all(delivered.get(p, -1) > high[p] for p in range(PARTITIONS))

        wait_until(
            resumed,
            f"{client}'s group to deliver records written after the {what} on every partition",
            explain=functools.partial(describe, ms, cluster, f"acknowledged up to {high}"),
        )
        figure(f"consuming_everywhere_after_{what}", time.monotonic() - since, client=client)


def wait_in_sync(cluster: Cluster, broker: int, partitions: dict[str, list[int]]) -> None:
    """Until `broker` is in the ISR of each of `partitions` ({topic: indexes})."""

    def in_sync() -> bool:
        controller = cluster.active_controller()
        if controller is None:
            return False
        metadata = cluster.metadata(controller, list(partitions))
        return all(
            broker in leaders(metadata, t)[p][1]
            for t, indexes in partitions.items()
            for p in indexes
        )

    wait_until(in_sync, f"broker {broker} back in the ISR of {partitions}", explain=cluster.logs)


def elect_preferred_leaders(cluster: Cluster, partitions: dict[str, list[int]]) -> None:
    request = ElectLeadersRequest(
        election_type=0,
        topic_partitions=[
            ElectLeadersRequest.TopicPartitions(topic=t, partitions=p)
            for t, p in partitions.items()
        ],
        timeout_ms=10_000,
    )
    response = call(cluster.nodes[cluster.wait_active_controller()].kafka_port, request, 15.0)
    assert isinstance(response, ElectLeadersResponse)
    errors = [
        (r.topic, p.partition_id, p.error_code)
        for r in response.replica_election_results
        for p in r.partition_result
        if p.error_code not in (ErrorCode.NONE, ErrorCode.ELECTION_NOT_NEEDED)
    ]
    assert response.error_code == ErrorCode.NONE and errors == [], (response.error_code, errors)
