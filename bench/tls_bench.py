"""Produce/consume throughput over SSL next to PLAINTEXT, on one node, in one run.

Starts one `kraft serve` with a PLAINTEXT and an SSL listener (a certificate made here with
trustme, in a PEM keystore), then alternates the two protocols for `--rounds` rounds: each
produces `--count` messages of `--size` bytes with confluent-kafka (acks=all) to a
one-partition topic of its own and consumes them back. Reports the best round of each, the
node's CPU seconds per MB, and the SSL/PLAINTEXT throughput ratios. Last line: one JSON object.

    python bench/tls_bench.py [--count N] [--size B] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import trustme
from confluent_kafka.admin import AdminClient, NewTopic
from produce_consume import consume, cpu_seconds, produce

from kraft.launcher import LocalCluster, free_ports


def start_node(root: Path) -> tuple[LocalCluster, dict[str, tuple[str, dict[str, Any]]]]:
    """The node, and per protocol: its bootstrap address and the client's librdkafka keys."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost", common_name="bench-broker")
    keystore = root / "broker.pem"
    keystore.write_bytes(
        leaf.private_key_pem.bytes() + b"".join(b.bytes() for b in leaf.cert_chain_pems)
    )
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cluster = LocalCluster(root / "cluster", 1, serve_args=("--log-level", "WARNING"))
    spec = cluster.nodes[1].spec
    (ssl_port,) = free_ports(1)
    cluster.configure(
        1,
        {
            "listeners": f"PLAINTEXT://127.0.0.1:{spec.kafka_port},SSL://127.0.0.1:{ssl_port},"
            f"CONTROLLER://127.0.0.1:{spec.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{spec.kafka_port},"
            f"SSL://127.0.0.1:{ssl_port}",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
        },
    )
    cluster.start()
    clients = {
        "PLAINTEXT": (f"127.0.0.1:{spec.kafka_port}", {}),
        "SSL": (
            f"127.0.0.1:{ssl_port}",
            {
                "security.protocol": "SSL",
                "ssl.ca.location": str(ca_file),
                "ssl.endpoint.identification.algorithm": "https",
            },
        ),
    }
    return cluster, clients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages per case")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both protocols")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kraft-tls-bench-"))
    best: dict[str, dict[str, float]] = {}
    try:
        cluster, clients = start_node(root)
        pid = cluster.nodes[1].pid
        assert pid is not None
        try:
            admin = AdminClient({"bootstrap.servers": clients["PLAINTEXT"][0]})
            mb = args.size * args.count / 1e6
            for round_ in range(args.rounds):
                for protocol, (bootstrap, client) in clients.items():
                    topic = f"bench-{protocol.lower()}-{round_}"
                    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
                        f.result()
                    cpu = cpu_seconds(pid)
                    p_s = produce(bootstrap, topic, args.size, args.count, False, client)
                    c_s = consume(bootstrap, topic, args.count, client)
                    cpu_per_mb = (cpu_seconds(pid) - cpu) / (2 * mb)
                    now = {
                        "produce_mb_s": mb / p_s,
                        "consume_mb_s": mb / c_s,
                        "node_cpu_s_per_mb": cpu_per_mb,
                    }
                    was = best.setdefault(protocol, now)
                    best[protocol] = {
                        "produce_mb_s": max(was["produce_mb_s"], now["produce_mb_s"]),
                        "consume_mb_s": max(was["consume_mb_s"], now["consume_mb_s"]),
                        "node_cpu_s_per_mb": min(
                            was["node_cpu_s_per_mb"], now["node_cpu_s_per_mb"]
                        ),
                    }
            del admin  # closed before the node stops: no reconnect attempts in the output
        finally:
            cluster.stop(30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    plain, tls = best["PLAINTEXT"], best["SSL"]
    results: dict[str, Any] = {"messages": args.count, "size": args.size, "rounds": args.rounds}
    print(f"{'protocol':<12}{'prod MB/s':>12}{'cons MB/s':>12}{'node CPU s/MB':>15}")
    for protocol, figures in best.items():
        print(
            f"{protocol:<12}{figures['produce_mb_s']:>12.1f}{figures['consume_mb_s']:>12.1f}"
            f"{figures['node_cpu_s_per_mb']:>15.4f}"
        )
        for key, value in figures.items():
            results[f"{protocol.lower()}_{key}"] = round(value, 4 if "cpu" in key else 1)
    results["ssl_to_plaintext_produce_ratio"] = round(
        tls["produce_mb_s"] / plain["produce_mb_s"], 2
    )
    results["ssl_to_plaintext_consume_ratio"] = round(
        tls["consume_mb_s"] / plain["consume_mb_s"], 2
    )
    print(
        f"SSL/PLAINTEXT: produce {results['ssl_to_plaintext_produce_ratio']}, "
        f"consume {results['ssl_to_plaintext_consume_ratio']}"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
