"""`kraft cluster [--describe]`: cluster id, controller, brokers, and the metadata quorum when
the cluster answers DescribeQuorum (KRaft clusters: brokers forward it to the controller)."""

from __future__ import annotations

import argparse
from typing import Any

from kraft.net.protocol import (
    ApiKey,
    DescribeClusterRequest,
    DescribeClusterResponse,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
)

from .kafka_admin import CliError, KafkaAdmin, check
from .output import add_connection_options, print_json, run, table

METADATA_TOPIC = "__cluster_metadata"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cluster", help="describe the cluster: id, controller, brokers, quorum"
    )
    add_connection_options(p)
    p.add_argument("--describe", action="store_true", help="describe the cluster (default)")
    p.set_defaults(run=lambda args: run(args, _command))


async def describe_cluster(admin: KafkaAdmin) -> dict[str, Any]:
    if admin.supports(ApiKey.DESCRIBE_CLUSTER):
        response = await admin.call(
            admin.any_broker(), DescribeClusterRequest(), DescribeClusterResponse
        )
        check(response.error_code, "DescribeCluster", response.error_message)
        cluster_id: str | None = response.cluster_id
        controller = response.controller_id
        brokers = [
            {"id": b.broker_id, "host": b.host, "port": b.port, "rack": b.rack}
            for b in response.brokers
        ]
    else:
        metadata = await admin.refresh_metadata()
        cluster_id, controller = metadata.cluster_id, metadata.controller_id
        brokers = [
            {"id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
            for b in metadata.brokers
        ]
    return {
        "cluster_id": cluster_id,
        "controller": controller,
        "brokers": sorted(brokers, key=lambda b: b["id"]),
        "quorum": await describe_quorum(admin),
    }


async def describe_quorum(admin: KafkaAdmin) -> dict[str, Any] | None:
    """The metadata quorum, or None where the cluster does not describe it."""
    if not admin.supports(ApiKey.DESCRIBE_QUORUM):
        return None
    request = DescribeQuorumRequest(
        topics=[
            DescribeQuorumRequest.TopicData(
                topic_name=METADATA_TOPIC,
                partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)],
            )
        ]
    )
    try:
        response = await admin.call(admin.any_broker(), request, DescribeQuorumResponse)
        check(response.error_code, "DescribeQuorum", response.error_message)
    except CliError:
        return None
    if not response.topics or not response.topics[0].partitions:
        return None
    p = response.topics[0].partitions[0]
    if p.error_code:
        return None

    def replicas(states: list[DescribeQuorumResponse.ReplicaState]) -> list[dict[str, Any]]:
        return [
            {
                "id": r.replica_id,
                "log_end_offset": r.log_end_offset,
                "lag": max(0, p.high_watermark - r.log_end_offset),
                "last_caught_up_timestamp": r.last_caught_up_timestamp,
            }
            for r in sorted(states, key=lambda r: r.replica_id)
        ]

    return {
        "leader": p.leader_id,
        "epoch": p.leader_epoch,
        "high_watermark": p.high_watermark,
        "voters": replicas(p.current_voters),
        "observers": replicas(p.observers),
    }


async def _command(admin: KafkaAdmin, args: argparse.Namespace) -> int:
    described = await describe_cluster(admin)
    if args.json:
        print_json(described)
        return 0
    print(f"Cluster id: {described['cluster_id']}")
    print(f"Controller: {described['controller']}")
    print()
    print(
        table(
            [[b["id"], b["host"], b["port"], b["rack"]] for b in described["brokers"]],
            ["BROKER", "HOST", "PORT", "RACK"],
        )
    )
    quorum = described["quorum"]
    if quorum is not None:
        print()
        print(
            f"Quorum leader: {quorum['leader']}  epoch: {quorum['epoch']}  "
            f"high watermark: {quorum['high_watermark']}"
        )
        rows = [
            [r["id"], kind, r["log_end_offset"], r["lag"]]
            for kind in ("voter", "observer")
            for r in quorum[f"{kind}s"]
        ]
        print(table(rows, ["REPLICA", "ROLE", "LOG END", "LAG"]))
    return 0
