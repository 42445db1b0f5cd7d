"""Consumer-group figures of a 3-node cluster with confluent-kafka and aiokafka.

    python bench/group_bench.py [--quick] [--dir D] [--members N] [--trials N] [--seconds S]
                                [--clients confluent-kafka,aiokafka] [--keep]

Runs its own cluster of three combined nodes (`kraft serve` child processes on 127.0.0.1,
configs from `kraft.launcher.write_configs`: group.initial.rebalance.delay.ms=0 like `kraft up`,
plus broker.session.timeout.ms=2000 and min.insync.replicas=2) in a temporary directory
under D, removed at the end with every process it started. `__consumer_offsets` (50
partitions, RF=3) is created before any timing, by one FindCoordinator. Members use the
range assignor, heartbeat.interval.ms=250 and session.timeout.ms=6000 (a rebalance reaches a
member with its next heartbeat, so the interval bounds what a leave costs). Phases, per
client library:

  first join  a new group of one member: from creating the consumer to its first assignment
              (FindCoordinator, JoinGroup twice — KIP-394 — and SyncGroup), p50 over trials.
  join        a new group of N members (default 10) on a 2N-partition topic (RF=3), all
              created at once: from the first creation until every member reports a
              non-empty assignment and together they hold every partition exactly once
              (p50, max over trials).
  leave       in that stable group, one member closes (LeaveGroup): from the close until the
              others again hold every partition exactly once (eager rebalance), p50 over the
              trials (one leave per trial group).
  commits     synchronous OffsetCommits (each acknowledged only once replicated to the
              ISR, like acks=all): from one member of a stable 8-member group, one commit
              after another for S seconds; then from all 8 at once, each in its own thread,
              for S seconds (one coordinator serves them all). Commits per second.
              confluent-kafka only (aiokafka's single-member rate is reported beside it).

A table, then as the last line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import _cluster
from _cluster import NODES
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from kraft.net.protocol import FindCoordinatorRequest, FindCoordinatorResponse

T = TypeVar("T")

EXTRA = {
    "broker.session.timeout.ms": "2000",
    "broker.heartbeat.interval.ms": "500",
    "min.insync.replicas": "2",
    "group.initial.rebalance.delay.ms": "0",
}
HEARTBEAT_MS = 250
SESSION_MS = 6000
COMMIT_MEMBERS = 8


def poll(probe: Callable[[], T | None], limit_s: float, what: str, every: float = 0.005) -> T:
    """`_cluster.poll`, every 5 ms by default: the joins and leaves are timed by it."""
    return _cluster.poll(probe, limit_s, what, every)


def split_exactly(assignments: Sequence[set[int]], partitions: int) -> bool:
    """Every member holds partitions, and together they hold each partition once."""
    return (
        all(assignments)
        and sum(map(len, assignments)) == partitions
        and set().union(*assignments) == set(range(partitions))
    )


# ---------------------------------------------------------------------------- cluster


class BenchCluster(_cluster.BenchCluster):
    def __init__(self, root: Path) -> None:
        super().__init__(root, EXTRA)

    def create_topic(self, name: str, partitions: int) -> None:
        for future in self.admin.create_topics([NewTopic(name, partitions, NODES)]).values():
            future.result(30)
        everyone = set(self.nodes)

        def ready() -> bool:
            t = self.admin.list_topics(name, timeout=2).topics.get(name)
            return (
                t is not None
                and t.error is None
                and len(t.partitions) == partitions
                and all(p.leader >= 0 and set(p.isrs) == everyone for p in t.partitions.values())
            )

        poll(ready, 30.0, f"topic {name} with a full ISR", 0.05)

    def warm_up_offsets_topic(self) -> float:
        """Seconds until FindCoordinator answers (the first one creates __consumer_offsets)."""
        port = next(iter(self.nodes.values())).spec.kafka_port
        start = time.perf_counter()

        def found() -> bool:
            response = _cluster.request(
                port,
                FindCoordinatorRequest(key_type=0, coordinator_keys=["w"]),
                10.0,
                "group-bench",
            )
            assert isinstance(response, FindCoordinatorResponse)
            return response.coordinators[0].error_code == 0

        poll(found, 60.0, "__consumer_offsets", 0.05)
        return time.perf_counter() - start


# ----------------------------------------------------------------- group members


class ConfluentGroup:
    """`count` confluent-kafka consumers of one group, all polled from one thread (each
    consumer's group protocol runs in librdkafka's own threads; polling serves the
    rebalance events that apply an assignment)."""

    client = "confluent-kafka"

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.consumers: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, count: int) -> None:
        made = [
            Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": self.group,
                    "client.id": f"{self.group}-{i}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "range",
                    "heartbeat.interval.ms": HEARTBEAT_MS,
                    "session.timeout.ms": SESSION_MS,
                    "log_level": 3,
                }
            )
            for i in range(count)
        ]
        for c in made:
            c.subscribe([self.topic])
        with self._lock:
            self.consumers += made
        if not self._thread.is_alive():
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                consumers = list(self.consumers)
            for c in consumers:
                c.consume(num_messages=100, timeout=0)
            time.sleep(0.001)

    def stop_polling(self) -> None:
        """From here on the caller's threads alone use the consumers."""
        self._stop.set()
        self._thread.join(10)

    def assignments(self) -> list[set[int]]:
        with self._lock:
            return [{tp.partition for tp in c.assignment()} for c in self.consumers]

    def close_one(self) -> None:
        with self._lock:
            victim = self.consumers.pop()
        victim.close()

    def close(self) -> None:
        self.stop_polling()
        for c in self.consumers:
            c.close()
        self.consumers = []


class AioKafkaGroup:
    """`count` aiokafka consumers of one group on one event loop in a thread of its own,
    each fetching in a task of its own."""

    client = "aiokafka"

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.consumers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any, limit_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(limit_s)

    def add(self, count: int) -> None:
        self._call(self._add(count))

    async def _add(self, count: int) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        made = [
            AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                client_id=f"{self.group}-{len(self.consumers) + i}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=(RangePartitionAssignor,),
                heartbeat_interval_ms=HEARTBEAT_MS,
                session_timeout_ms=SESSION_MS,
            )
            for i in range(count)
        ]
        self.consumers += made
        await asyncio.gather(*(c.start() for c in made))
        self._tasks += [asyncio.ensure_future(self._fetch(c)) for c in made]

    @staticmethod
    async def _fetch(consumer: Any) -> None:
        while True:
            await consumer.getmany(timeout_ms=100)

    def assignments(self) -> list[set[int]]:
        async def get() -> list[set[int]]:
            return [{tp.partition for tp in c.assignment()} for c in self.consumers]

        result: list[set[int]] = self._call(get())
        return result

    def close_one(self) -> None:
        async def close() -> None:
            victim = self.consumers.pop()
            task = self._tasks.pop()
            task.cancel()
            await victim.stop()

        self._call(close())

    def close(self) -> None:
        async def close() -> None:
            for task in self._tasks:
                task.cancel()
            for c in self.consumers:
                await c.stop()

        self._call(close(), 60.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


GROUPS: dict[str, type[ConfluentGroup] | type[AioKafkaGroup]] = {
    g.client: g for g in (ConfluentGroup, AioKafkaGroup)
}


def is_split(group: ConfluentGroup | AioKafkaGroup, partitions: int) -> bool:
    return split_exactly(group.assignments(), partitions)


# ----------------------------------------------------------------------------- phases


def bench_first_join(cluster: BenchCluster, client: str, trials: int) -> dict[str, float]:
    topic = f"first-join-{client}"
    cluster.create_topic(topic, 2)
    times = []
    for trial in range(trials):
        group = GROUPS[client](cluster.bootstrap, topic, f"first-{client}-{trial}")
        start = time.perf_counter()
        group.add(1)
        poll(functools.partial(is_split, group, 2), 30.0, "the first join")
        times.append(time.perf_counter() - start)
        group.close()
    return {f"first_join_{client}_p50_ms": round(statistics.median(times) * 1000, 1)}


def bench_join_and_leave(
    cluster: BenchCluster, client: str, members: int, trials: int
) -> dict[str, float]:
    partitions = 2 * members
    topic = f"join-{client}"
    cluster.create_topic(topic, partitions)
    joins, leaves = [], []
    for trial in range(trials):
        group = GROUPS[client](cluster.bootstrap, topic, f"join-{client}-{trial}")
        try:
            start = time.perf_counter()
            group.add(members)
            poll(
                functools.partial(is_split, group, partitions),
                60.0,
                f"{members} {client} members to split {partitions} partitions",
            )
            joins.append(time.perf_counter() - start)
            start = time.perf_counter()
            group.close_one()
            poll(
                functools.partial(is_split, group, partitions),
                60.0,
                f"{members - 1} {client} members to take over",
            )
            leaves.append(time.perf_counter() - start)
        finally:
            group.close()
    return {
        f"join_{members}_{client}_p50_s": round(statistics.median(joins), 3),
        f"join_{members}_{client}_max_s": round(max(joins), 3),
        f"leave_rebalance_{client}_p50_s": round(statistics.median(leaves), 3),
        f"leave_rebalance_{client}_max_s": round(max(leaves), 3),
    }


def commit_loop(consumer: Any, topic: str, partition: int, until: float) -> int:
    """Synchronous commits of `partition` (a new offset each time) until `until`; how many."""
    n = 0
    while time.perf_counter() < until:
        n += 1
        consumer.commit(offsets=[TopicPartition(topic, partition, n)], asynchronous=False)
    return n


def bench_commits(cluster: BenchCluster, seconds: float) -> dict[str, float]:
    topic = "commits"
    cluster.create_topic(topic, COMMIT_MEMBERS)
    group = ConfluentGroup(cluster.bootstrap, topic, "commit-bench")
    try:
        group.add(COMMIT_MEMBERS)
        poll(functools.partial(is_split, group, COMMIT_MEMBERS), 60.0, "a stable group")
        group.stop_polling()
        owned = [
            (c, next(iter(a))) for c, a in zip(group.consumers, group.assignments(), strict=True)
        ]

        consumer, partition = owned[0]
        commit_loop(consumer, topic, partition, time.perf_counter() + 0.5)  # warm-up
        start = time.perf_counter()
        single = commit_loop(consumer, topic, partition, start + seconds)
        single_rate = single / (time.perf_counter() - start)

        counts = [0] * len(owned)

        def run(i: int, until: float) -> None:
            c, p = owned[i]
            counts[i] = commit_loop(c, topic, p, until)

        start = time.perf_counter()
        threads = [
            threading.Thread(target=run, args=(i, start + seconds)) for i in range(len(owned))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 30)
        concurrent_rate = sum(counts) / (time.perf_counter() - start)
    finally:
        group.close()
    return {
        "commits_per_s_one_member_confluent": round(single_rate, 1),
        f"commits_per_s_{COMMIT_MEMBERS}_members_confluent": round(concurrent_rate, 1),
        "commit_latency_one_member_ms": round(1000 / single_rate, 2),
    }


def bench_commits_aiokafka(cluster: BenchCluster, seconds: float) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata
    from aiokafka.structs import TopicPartition as AioTopicPartition

    topic = "commits-aiokafka"
    cluster.create_topic(topic, 1)

    async def run() -> float:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=cluster.bootstrap,
            group_id="commit-bench-aiokafka",
            enable_auto_commit=False,
            heartbeat_interval_ms=HEARTBEAT_MS,
            session_timeout_ms=SESSION_MS,
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=50)
            tp = AioTopicPartition(topic, 0)
            n = 0
            warm = time.perf_counter() + 0.5
            while time.perf_counter() < warm:
                n += 1
                await consumer.commit({tp: OffsetAndMetadata(n, "")})
            start = time.perf_counter()
            count = 0
            while time.perf_counter() < start + seconds:
                n += 1
                count += 1
                await consumer.commit({tp: OffsetAndMetadata(n, "")})
            return count / (time.perf_counter() - start)
        finally:
            await consumer.stop()

    return {"commits_per_s_one_member_aiokafka": round(asyncio.run(run()), 1)}


# ------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kraft-group-bench-", dir=args.dir))
    results: dict[str, Any] = {"cpus": os.cpu_count(), "members": args.members}
    cluster = BenchCluster(root)
    try:
        cluster.start()
        results["offsets_topic_creation_s"] = round(cluster.warm_up_offsets_topic(), 3)
        for client in args.clients:
            results.update(bench_first_join(cluster, client, args.trials))
            results.update(bench_join_and_leave(cluster, client, args.members, args.trials))
        results.update(bench_commits(cluster, args.seconds))
        if "aiokafka" in args.clients:
            results.update(bench_commits_aiokafka(cluster, args.seconds))
    finally:
        cluster.stop()
        if args.keep:
            print(f"cluster dir kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, Any], clients: Sequence[str], members: int) -> None:
    rows = [("__consumer_offsets created (s)", "offsets_topic_creation_s")]
    for client in clients:
        rows += [
            (f"{client}: first join, 1 member, p50 (ms)", f"first_join_{client}_p50_ms"),
            (
                f"{client}: {members} members all assigned, p50 (s)",
                f"join_{members}_{client}_p50_s",
            ),
            (
                f"{client}: {members} members all assigned, max (s)",
                f"join_{members}_{client}_max_s",
            ),
            (f"{client}: rebalance after one leaves, p50 (s)", f"leave_rebalance_{client}_p50_s"),
            (f"{client}: rebalance after one leaves, max (s)", f"leave_rebalance_{client}_max_s"),
        ]
    rows += [
        ("sync commits / s, one member (confluent-kafka)", "commits_per_s_one_member_confluent"),
        (
            f"sync commits / s, {COMMIT_MEMBERS} members at once (confluent-kafka)",
            f"commits_per_s_{COMMIT_MEMBERS}_members_confluent",
        ),
        ("sync commits / s, one member (aiokafka)", "commits_per_s_one_member_aiokafka"),
    ]
    print(f"{'figure':<64}{'value':>10}")
    for label, key in rows:
        if key in results:
            print(f"{label:<64}{results[key]!s:>10}")
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one trial, 1 s commit runs")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    parser.add_argument("--members", type=int, default=10, help="members of the join phase")
    parser.add_argument("--trials", type=int, default=3, help="groups formed per client")
    parser.add_argument("--seconds", type=float, default=5.0, help="each commit run")
    parser.add_argument(
        "--clients",
        default="confluent-kafka,aiokafka",
        help="comma-separated: confluent-kafka, aiokafka",
    )
    parser.add_argument("--keep", action="store_true", help="keep the cluster dir (node logs)")
    args = parser.parse_args()
    args.clients = [c for c in args.clients.split(",") if c]
    unknown = set(args.clients) - set(GROUPS)
    if unknown:
        parser.error(f"unknown clients {sorted(unknown)}")
    if args.quick:
        args.trials, args.seconds = 1, 1.0
    report(run(args), args.clients, args.members)


if __name__ == "__main__":
    main()
