"""Produce/consume throughput of one kraft node with confluent-kafka (librdkafka).

Starts one `kraft serve` (through `kraft.launcher`) on 127.0.0.1 in a temporary directory,
then for each case runs a producer (acks=all, idempotence off and on) and a consumer (manual
assignment) on a one-partition topic, and measures the node's idle CPU. Prints a table, then
one JSON line with every figure.

    python bench/produce_consume.py [--small N] [--large N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kraft.launcher import LocalCluster


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def produce(
    bootstrap: str,
    topic: str,
    size: int,
    count: int,
    idempotent: bool,
    client: dict[str, Any] | None = None,
) -> float:
    """Seconds to produce `count` messages; `client`: more librdkafka keys (e.g. TLS)."""
    producer = Producer(
        {
            **(client or {}),
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": 5,
            "batch.size": 1 << 20,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1 << 21,
        }
    )
    payload = os.urandom(size)
    # Steady state: connection set-up and (idempotent) producer id acquisition are the
    # client's start-up, not throughput; one delivered message first.
    producer.produce(topic, payload, partition=0)
    producer.flush(30)
    start = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, payload, partition=0)
                break
            except BufferError:
                producer.poll(0.01)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining:
        raise SystemExit(f"{remaining} messages not delivered")
    return elapsed


def consume(bootstrap: str, topic: str, count: int, client: dict[str, Any] | None = None) -> float:
    consumer = Consumer(
        {
            **(client or {}),
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 50 << 20,
            "max.partition.fetch.bytes": 8 << 20,
            # librdkafka pauses fetching for fetch.queue.backoff.ms (1 s) whenever its local
            # queue holds queued.min.messages (100k): a 100 B run would measure that pause.
            "queued.min.messages": 2_000_000,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = 0
    # The clock starts at the first message: connecting is the client's start-up.
    while got == 0:
        got = sum(1 for m in consumer.consume(1, 5.0) if m.error() is None)
    start = time.perf_counter()
    deadline = time.monotonic() + 300
    count += 1  # the warm-up message the producer sent first
    while got < count and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is None:
                got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    if got < count:
        raise SystemExit(f"consumed {got} of {count + 1}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=200_000, help="1 KiB messages per case")
    parser.add_argument("--small", type=int, default=1_000_000, help="100 B messages per case")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="kraft-bench-")
    cluster = LocalCluster(data, 1, serve_args=("--log-level", "WARNING"))
    cluster.start()
    pid = cluster.nodes[1].pid
    assert pid is not None
    bootstrap = cluster.bootstrap_servers
    results: dict[str, Any] = {}
    rows = []
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        time.sleep(0)  # admin connects lazily
        idle_start_cpu, idle_start = cpu_seconds(pid), time.monotonic()
        time.sleep(5)
        idle = (cpu_seconds(pid) - idle_start_cpu) / (time.monotonic() - idle_start)
        results["idle_cpu_percent"] = round(idle * 100, 2)
        for size, count in ((1024, args.large), (100, args.small)):
            for idem in (False, True):
                name = f"{size}b_{'idem' if idem else 'plain'}"
                topic = f"bench-{name}"
                for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
                    f.result()
                p_s = produce(bootstrap, topic, size, count, idem)
                c_s = consume(bootstrap, topic, count)
                mb = size * count / 1e6
                results[f"produce_{name}_mb_s"] = round(mb / p_s, 1)
                results[f"produce_{name}_msgs_s"] = round(count / p_s)
                results[f"consume_{name}_mb_s"] = round(mb / c_s, 1)
                results[f"consume_{name}_msgs_s"] = round(count / c_s)
                rows.append((name, count, mb / p_s, count / p_s, mb / c_s, count / c_s))
    finally:
        cluster.stop(30)
        shutil.rmtree(data, ignore_errors=True)
    heads = ("msgs", "prod MB/s", "prod msg/s", "cons MB/s", "cons msg/s")
    print(f"{'case':<16}" + "".join(f"{h:>12}" for h in heads))
    for name, count, pm, pr, cm, cr in rows:
        print(f"{name:<16}{count:>12}{pm:>12.1f}{pr:>12.0f}{cm:>12.1f}{cr:>12.0f}")
    print(f"idle node CPU: {results['idle_cpu_percent']}%")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
