"""Replication figures of a 3-node cluster with confluent-kafka (librdkafka).

    python bench/replication_bench.py [--quick] [--dir D] [--messages N] [--partitions P]
                                      [--rounds N] [--failovers N] [--controller-failovers N]

Runs its own cluster of three combined nodes (`kraft serve` child processes on 127.0.0.1,
configs from `kraft.launcher.write_configs` with broker.session.timeout.ms=2000 and
min.insync.replicas=2) in a temporary directory under D, removed at the end with every process
it started. Phases:

  throughput  N 1 KiB messages to a topic (one partition, or --partitions P with leaders
              spread over the nodes, written round robin), RF=1 with acks=1, and RF=3 with
              acks=all; the same producer settings otherwise (linger.ms 5, 1 MiB batches, no
              idempotence); --rounds rounds of both, medians. MB/s of each, the median of the
              rounds' ratios RF=3/RF=1 (target >= 0.5), and the cores each node and the
              client kept busy (last round).
  latency     a paced stream (R msgs/s for S seconds) of 1 KiB messages, RF=3 acks=all and
              RF=1 acks=1 for reference: per-message delivery latency, produce() to delivery
              report (librdkafka's msg.latency()), p50 and p99.
  failover    T trials: an idempotent acks=all producer writes an RF=3 partition every ms; the
              partition's leader is killed -9; the time from the kill to the first successful
              delivery of a message produced after it (p50, max; target <= 3 s). The victim
              leads the partition but is not the active controller; --controller-failovers
              more trials kill a leader that is (metadata quorum election first, then the new
              controller gives every broker a fresh session), reported apart. Also from the kill
              until a survivor's Metadata names the new leader: the broker side of it; the
              rest is the client finding out (librdkafka re-asks for a partition whose leader
              is down about once a second).

A table, then as the last line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _cluster
from _cluster import NODES, describe_quorum, percentile, poll
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from kraft.net.protocol import (
    DescribeQuorumResponse,
    Message,
    MetadataRequest,
    MetadataResponse,
)

SESSION_MS = 2000
EXTRA = {
    "broker.session.timeout.ms": str(SESSION_MS),
    "broker.heartbeat.interval.ms": "500",
    "min.insync.replicas": "2",
}
MESSAGE = 1024
THROUGHPUT_SETTINGS: dict[str, Any] = {
    "linger.ms": 5,
    "batch.size": 1 << 20,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1 << 21,
    "enable.idempotence": False,
}
TARGETS = {"rf3_to_rf1_ratio": 0.5, "failover_p50_s": 3.0, "failover_max_s": 3.0}


def request(port: int, message: Message, limit_s: float) -> Message:
    return _cluster.request(port, message, limit_s, "replication-bench")


# ---------------------------------------------------------------------------- cluster


class BenchCluster(_cluster.BenchCluster):
    def __init__(self, root: Path) -> None:
        super().__init__(root, EXTRA)

    def create_topic(
        self, name: str, partitions: int, rf: int, assignment: list[list[int]] | None = None
    ) -> None:
        """A topic, placed by the controller or by `assignment` (replicas per partition,
        preferred leader first)."""
        if assignment is None:
            new = NewTopic(name, partitions, rf)
        else:
            new = NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment)
        for future in self.admin.create_topics([new]).values():
            future.result(30)
        poll(lambda: self.partitions(name) is not None, 20.0, f"topic {name}")

    def delete_topic(self, name: str) -> None:
        for future in self.admin.delete_topics([name]).values():
            future.result(30)

    def partitions(self, topic: str) -> dict[int, tuple[int, set[int]]] | None:
        """{partition: (leader, ISR)} as the cluster's Metadata says, None while unknown."""
        metadata = self.admin.list_topics(topic, timeout=2)
        t = metadata.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            return None
        return {i: (p.leader, set(p.isrs)) for i, p in t.partitions.items()}

    def wait_full_isr(self, topic: str, limit_s: float = 30.0) -> dict[int, int]:
        """Until every partition of `topic` has a live leader and all replicas in its ISR;
        {partition: leader}."""
        everyone = set(self.nodes)

        def probe() -> dict[int, int] | None:
            found = self.partitions(topic)
            if found is None:
                return None
            if any(leader < 0 or isr != everyone for leader, isr in found.values()):
                return None
            return {p: leader for p, (leader, _) in found.items()}

        return poll(probe, limit_s, f"{topic}: full ISR on every partition", 0.05)

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU seconds each live node has used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        out = {}
        for node_id, node in self.nodes.items():
            if node.proc is None:
                continue
            with open(f"/proc/{node.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[node_id] = (int(fields[11]) + int(fields[12])) / ticks
        return out

    def leader_moved(self, node_id: int, topic: str, partition: int, old: int) -> float | None:
        """The moment `node_id`'s Metadata names a leader of the partition other than `old`."""
        response = request(
            self.nodes[node_id].spec.kafka_port,
            MetadataRequest(
                topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                allow_auto_topic_creation=False,
            ),
            1.0,
        )
        assert isinstance(response, MetadataResponse)
        for p in response.topics[0].partitions if response.topics else []:
            if p.partition_index == partition and p.leader_id not in (old, -1):
                return time.monotonic()
        return None

    def active_controller(self) -> int | None:
        for node_id, node in self.nodes.items():
            if node.proc is None:
                continue
            response = request(node.spec.controller_port, describe_quorum(), 1.0)
            assert isinstance(response, DescribeQuorumResponse)
            if response.error_code == 0 and response.topics:
                if response.topics[0].partitions[0].leader_id == node_id:
                    return node_id
        return None


# ----------------------------------------------------------------------------- phases


def produce_timed(bootstrap: str, topic: str, acks: str, count: int, partitions: int = 1) -> float:
    """Seconds to deliver `count` 1 KiB messages, round robin over `partitions` (after one
    warm-up message to each)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, **THROUGHPUT_SETTINGS})
    payload = os.urandom(MESSAGE)
    failed = 0

    def report(err: Any, msg: Any) -> None:
        nonlocal failed
        failed += err is not None

    for partition in range(partitions):
        producer.produce(topic, payload, partition=partition)
    producer.flush(30)
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, payload, partition=i % partitions, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.005)
    left = producer.flush(300)
    elapsed = time.perf_counter() - start
    if left or failed:
        raise RuntimeError(f"{topic}: {left} undelivered, {failed} failed")
    return elapsed


def bench_throughput(
    cluster: BenchCluster, count: int, rounds: int, partitions: int
) -> dict[str, float]:
    """Rounds of both cases back to back (order alternating); medians of the speeds and of the
    rounds' ratios, so that other load on the machine hits both cases alike.

    Each round writes fresh topics whose partitions the two cases lead from the same nodes
    (rotating over the rounds), and deletes them after: data left behind would be written
    back to disk during later rounds (gigabytes of dirty pages), a load of its own."""
    cases = {"rf1_acks1": (1, "1"), "rf3_acks_all": (3, "all")}
    speeds: dict[str, list[float]] = {label: [] for label in cases}
    cpu: dict[str, dict[str, float]] = {label: {} for label in cases}
    ids = sorted(cluster.nodes)
    for round_no in range(rounds):
        leaders = [ids[(round_no + p) % len(ids)] for p in range(partitions)]
        for label, (rf, _) in cases.items():
            assignment = [
                [leader, *[n for n in ids if n != leader][: rf - 1]] for leader in leaders
            ]
            cluster.create_topic(f"throughput-{label}-{round_no}", partitions, rf, assignment)
            if rf == NODES:
                cluster.wait_full_isr(f"throughput-{label}-{round_no}")
        order = list(cases) if round_no % 2 == 0 else list(reversed(cases))
        for label in order:
            nodes_before, client_before = cluster.cpu_seconds(), time.process_time()
            topic = f"throughput-{label}-{round_no}"
            elapsed = produce_timed(cluster.bootstrap, topic, cases[label][1], count, partitions)
            nodes_after, client_after = cluster.cpu_seconds(), time.process_time()
            speeds[label].append(MESSAGE * count / elapsed / 1e6)
            # Cores busy during the run (this machine's count is `cpus`).
            for node_id in cluster.nodes:
                used = nodes_after[node_id] - nodes_before[node_id]
                cpu[label][f"cpu_node{node_id}"] = round(used / elapsed, 2)
            cpu[label]["cpu_client"] = round((client_after - client_before) / elapsed, 2)
        for label in cases:
            cluster.delete_topic(f"throughput-{label}-{round_no}")
    out: dict[str, float] = {}
    for label in cases:
        mb_s = statistics.median(speeds[label])
        out[f"{label}_mb_s"] = round(mb_s, 2)
        out[f"{label}_msgs_s"] = round(mb_s * 1e6 / MESSAGE)
        out.update({f"{label}_{k}": v for k, v in cpu[label].items()})
    # The median of each round's ratio: the two runs of a round saw about the same load.
    ratios = [
        rf3 / rf1 for rf1, rf3 in zip(speeds["rf1_acks1"], speeds["rf3_acks_all"], strict=True)
    ]
    out["rf3_to_rf1_ratio"] = round(statistics.median(ratios), 3)
    out["rf3_to_rf1_ratio_min"] = round(min(ratios), 3)
    out["rf3_to_rf1_ratio_max"] = round(max(ratios), 3)
    return out


def paced_latencies(
    bootstrap: str, topic: str, acks: str, rate: int, seconds: float
) -> list[float]:
    """Delivery latency (s) of every message of a stream paced at `rate` per second."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5})
    payload = os.urandom(MESSAGE)
    latencies: list[float] = []
    failed = 0

    def report(err: Any, msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1
        else:
            latencies.append(msg.latency())

    producer.produce(topic, payload, partition=0)
    producer.flush(30)
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        while (now := time.perf_counter()) < due:
            producer.poll(due - now)
        producer.produce(topic, payload, partition=0, on_delivery=report)
        producer.poll(0)
    if producer.flush(60) or failed:
        raise RuntimeError(f"{topic}: {failed} failed deliveries")
    return latencies


def bench_latency(cluster: BenchCluster, rate: int, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, rf, acks in (("rf3_acks_all", 3, "all"), ("rf1_acks1", 1, "1")):
        topic = f"latency-{label}"
        cluster.create_topic(topic, 1, rf)
        if rf == NODES:
            cluster.wait_full_isr(topic)
        ms = [s * 1000 for s in paced_latencies(cluster.bootstrap, topic, acks, rate, seconds)]
        out[f"latency_{label}_p50_ms"] = round(percentile(ms, 50), 2)
        out[f"latency_{label}_p99_ms"] = round(percentile(ms, 99), 2)
    return out


class FailoverProbe:
    """An idempotent acks=all producer writing one partition every millisecond. `mark` notes a
    moment; `resumed_after` waits for the first delivery of a message produced after it."""

    def __init__(self, bootstrap: str, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 1,
                "message.timeout.ms": 60_000,
            }
        )
        self.first_after: dict[float, float] = {}
        self._marks: list[float] = []
        self._failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._failed:
            raise RuntimeError(f"{self._failed} deliveries failed during failovers")

    def _run(self) -> None:
        payload = os.urandom(100)
        while not self._stop.is_set():
            sent = time.monotonic()
            self.producer.produce(
                self.topic,
                payload,
                partition=self.partition,
                on_delivery=functools.partial(self._delivered, sent),
            )
            self.producer.poll(0.001)
        self.producer.flush(60)

    def _delivered(self, sent: float, err: Any, msg: Any) -> None:
        now = time.monotonic()
        if err is not None:
            self._failed += 1
            return
        with self._lock:
            for mark in self._marks:
                if sent > mark and mark not in self.first_after:
                    self.first_after[mark] = now - mark

    def mark(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._marks.append(now)
        return now

    def resumed_after(self, mark: float, limit_s: float = 30.0) -> float:
        return poll(lambda: self.first_after.get(mark), limit_s, "writes to resume", 0.01)


def bench_failover(cluster: BenchCluster, trials: int, controller_trials: int) -> dict[str, Any]:
    topic = "failover"
    # Three partitions, so that some partition's leader is not the active controller.
    cluster.create_topic(topic, NODES, NODES)
    plain: list[float] = []
    with_controller: list[float] = []
    elected: list[float] = []
    for trial in range(trials + controller_trials):
        kill_controller = trial >= trials
        partition, victim = poll(
            functools.partial(_pick_victim, cluster, topic, kill_controller),
            30.0,
            "a partition whose leader is "
            + ("" if kill_controller else "not ")
            + "the active controller",
            0.1,
        )
        probe = FailoverProbe(cluster.bootstrap, topic, partition)
        probe.start()
        try:
            probe.resumed_after(probe.mark())  # steady: deliveries flowing
            cluster.nodes[victim].kill()
            killed = probe.mark()
            survivor = next(n for n in cluster.nodes if n != victim)
            moved = poll(
                functools.partial(cluster.leader_moved, survivor, topic, partition, victim),
                30.0,
                f"{topic}-{partition} to get a new leader",
            )
            elapsed = probe.resumed_after(killed)
        finally:
            probe.stop()
        (with_controller if kill_controller else plain).append(elapsed)
        if not kill_controller:
            elected.append(moved - killed)
        print(
            f"  failover {trial + 1}: killed node {victim} (leader of {topic}-{partition}"
            f"{', active controller' if kill_controller else ''}): new leader in Metadata "
            f"after {moved - killed:.3f} s, writes resumed after {elapsed:.3f} s",
            file=sys.stderr,
        )
        cluster.nodes[victim].start()
        cluster.nodes[victim].wait_ready()
    out: dict[str, Any] = {
        "failover_trials": len(plain),
        "failover_p50_s": round(statistics.median(plain), 3),
        "failover_max_s": round(max(plain), 3),
        "failover_new_leader_p50_s": round(statistics.median(elected), 3),
        "failover_new_leader_max_s": round(max(elected), 3),
    }
    if with_controller:
        out["failover_with_controller_p50_s"] = round(statistics.median(with_controller), 3)
        out["failover_with_controller_max_s"] = round(max(with_controller), 3)
    return out


def _pick_victim(cluster: BenchCluster, topic: str, controller_too: bool) -> tuple[int, int] | None:
    """(partition, its leader) of `topic` with a full ISR, whose leader is (or is not) the
    active controller."""
    leaders = cluster.wait_full_isr(topic)
    controller = cluster.active_controller()
    for partition, leader in sorted(leaders.items()):
        if controller is not None and (leader == controller) == controller_too:
            return partition, leader
    return None


# ------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kraft-replication-bench-", dir=args.dir))
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "messages": args.messages,
        "partitions": args.partitions,
    }
    cluster = BenchCluster(root)
    try:
        cluster.start()
        results.update(bench_throughput(cluster, args.messages, args.rounds, args.partitions))
        results.update(bench_latency(cluster, args.rate, args.seconds))
        results.update(bench_failover(cluster, args.failovers, args.controller_failovers))
    finally:
        cluster.stop()
        if args.keep:
            print(f"cluster dir kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> None:
    rows = [
        ("RF=1 acks=1 throughput (MB/s, 1 KiB messages)", "rf1_acks1_mb_s", "", None),
        ("RF=3 acks=all throughput (MB/s, 1 KiB messages)", "rf3_acks_all_mb_s", "", None),
        ("RF=3 acks=all / RF=1 acks=1 (median of rounds)", "rf3_to_rf1_ratio", ">=", 0.5),
        ("  lowest round", "rf3_to_rf1_ratio_min", "", None),
        ("  highest round", "rf3_to_rf1_ratio_max", "", None),
        ("RF=3 acks=all delivery latency p50 (ms)", "latency_rf3_acks_all_p50_ms", "", None),
        ("RF=3 acks=all delivery latency p99 (ms)", "latency_rf3_acks_all_p99_ms", "", None),
        ("RF=1 acks=1 delivery latency p50 (ms)", "latency_rf1_acks1_p50_ms", "", None),
        ("RF=1 acks=1 delivery latency p99 (ms)", "latency_rf1_acks1_p99_ms", "", None),
        ("leader kill -9 to new leader in Metadata p50 (s)", "failover_new_leader_p50_s", "", None),
        ("leader kill -9 to new leader in Metadata max (s)", "failover_new_leader_max_s", "", None),
        ("leader kill -9 to acks=all writes resumed p50 (s)", "failover_p50_s", "<=", 3.0),
        ("leader kill -9 to acks=all writes resumed max (s)", "failover_max_s", "<=", 3.0),
        (
            "  leader that is also active controller p50 (s)",
            "failover_with_controller_p50_s",
            "",
            None,
        ),
        (
            "  leader that is also active controller max (s)",
            "failover_with_controller_max_s",
            "",
            None,
        ),
    ]
    print(f"{'figure':<58}{'value':>10}  target")
    for label, key, op, target in rows:
        if key not in results:
            continue
        value = results[key]
        verdict = ""
        if target is not None:
            ok = value >= target if op == ">=" else value <= target
            verdict = f"{op} {target:g} {'ok' if ok else 'MISSED'}"
        print(f"{label:<58}{value!s:>10}  {verdict}")
    for case in ("rf1_acks1", "rf3_acks_all"):
        nodes = " ".join(
            f"n{i} {results[f'{case}_cpu_node{i}']:.2f}"
            for i in range(1, NODES + 1)
            if f"{case}_cpu_node{i}" in results
        )
        print(f"  {case} CPU (cores): {nodes}, client {results.get(f'{case}_cpu_client')}")
    results["targets_met"] = {
        key: results[key] >= target if key.endswith("ratio") else results[key] <= target
        for key, target in TARGETS.items()
        if key in results
    }
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    parser.add_argument("--messages", type=int, default=200_000, help="1 KiB messages per case")
    parser.add_argument(
        "--partitions", type=int, default=1, help="throughput topics' partitions (leaders spread)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (median)")
    parser.add_argument("--rate", type=int, default=1000, help="latency phase: messages/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase: duration")
    parser.add_argument("--failovers", type=int, default=5, help="leader kill -9 trials")
    parser.add_argument(
        "--controller-failovers", type=int, default=2, help="trials killing the controller too"
    )
    parser.add_argument("--keep", action="store_true", help="keep the cluster dir (node logs)")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.rounds, args.seconds = 50_000, 1, 3
        args.failovers, args.controller_failovers = 2, 1
    report(run(args))


if __name__ == "__main__":
    main()
