"""A node that hangs (SIGSTOP for 15 s) is not a node that died: its sockets stay open, its
peers' requests to it get no answer, and when it wakes it believes what it believed before.

Two faults under an acks=all idempotent producer on an RF=3, min.insync.replicas=2 partition:
the paused node is (a) the active controller and the partition's leader, (b) the partition's
leader but not the active controller. Either way only the paused broker may be fenced (its
healthy peers keep heartbeating to whichever controller is active), produce resumes within
`broker.session.timeout.ms` + 3 s of the pause, the woken node rejoins and takes no
controller decisions of its own, and every acknowledged record is read back at its offset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from kraft.net.protocol import CreateTopicsRequest, CreateTopicsResponse

from ..e2e.client_drivers import ConfluentDriver
from .conftest import TRANSIENT, Cluster, call
from .test_cluster import leaders
from .test_replication_process import (
    ConfluentWorkload,
    check_read_back,
    running,
    wait_full_isr,
)

SESSION_MS = 9000  # Kafka's default broker.session.timeout.ms, as the user had it
PAUSE_S = 15.0
RESUME_SLACK_S = 3.0
RESUMED_ACKS = 50
SAMPLE_INTERVAL_S = 0.2
REJOIN_TIMEOUT_S = 30.0
SETTINGS = {
    "broker.session.timeout.ms": str(SESSION_MS),
    "broker.heartbeat.interval.ms": "2000",
    "min.insync.replicas": "2",
}


class HungLeaderWorkload(ConfluentWorkload):
    # librdkafka keeps an idempotent partition's requests in order: it sends to a new leader
    # only once those in flight to the hung one have timed out, then bumps its epoch with
    # InitProducerId at any broker it holds a connection to — the hung one too, waited for
    # socket.timeout.ms (60 s by default); and it hears of the new leader at its next
    # metadata refresh. These are the client's waits, not the cluster's failover, so they are
    # kept to about a second here.
    overrides: ClassVar[dict[str, object]] = {
        "request.timeout.ms": 1_000,
        "socket.timeout.ms": 1_000,
        "topic.metadata.refresh.interval.ms": 1_000,
    }


@dataclass
class PauseObservation:
    resumed_after_s: float | None = None
    # Brokers missing from a healthy node's Metadata (fenced there), per sample.
    fenced_seen: set[int] = field(default_factory=set)
    samples: int = 0
    leaders_seen: set[int] = field(default_factory=set)
    # What the woken node logged as its own controller decisions.
    woken_decisions: list[str] = field(default_factory=list)


def create_topic_led_by(cluster: Cluster, via: int, topic: str, replicas: list[int]) -> None:
    """One partition with `replicas` in this order (the first is the preferred leader)."""
    request = CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(
                name=topic,
                num_partitions=-1,
                replication_factor=-1,
                assignments=[
                    CreateTopicsRequest.CreatableReplicaAssignment(
                        partition_index=0, broker_ids=replicas
                    )
                ],
                configs=[
                    CreateTopicsRequest.CreatableTopicConfig(name="min.insync.replicas", value="2")
                ],
            )
        ],
        timeout_ms=10_000,
    )
    response = call(cluster.nodes[via].kafka_port, request, 15.0)
    assert isinstance(response, CreateTopicsResponse)
    (result,) = response.topics
    assert result.error_code == 0, f"CreateTopics {topic}: {result}\n{cluster.logs()}"


def observe_pause(
    cluster: Cluster, workload: ConfluentWorkload, victim: int, topic: str
) -> PauseObservation:
    """SIGSTOP `victim` for PAUSE_S, sampling the healthy nodes' view meanwhile; SIGCONT."""
    healthy = [n for n in cluster.nodes if n != victim]
    seen = PauseObservation()
    log = cluster.nodes[victim].log_path
    log_size = log.stat().st_size
    before = workload.acked_count()
    started = time.monotonic()
    cluster.pause(victim)
    try:
        while (elapsed := time.monotonic() - started) < PAUSE_S:
            if seen.resumed_after_s is None and workload.acked_count() >= before + RESUMED_ACKS:
                seen.resumed_after_s = elapsed
            for node_id in healthy:
                try:
                    listed = cluster.broker_ids(node_id)
                except TRANSIENT:
                    continue
                seen.samples += 1
                seen.fenced_seen |= set(cluster.nodes) - listed
            try:
                found = leaders(cluster.metadata(healthy[0], [topic], timeout=2.0), topic)
            except TRANSIENT:
                found = {}
            if 0 in found:
                seen.leaders_seen.add(found[0][0])
            time.sleep(SAMPLE_INTERVAL_S)  # the sampling rate, not a synchronisation
    finally:
        cluster.resume(victim)
    if seen.resumed_after_s is None:
        seen.resumed_after_s = workload.wait_acked(
            before + RESUMED_ACKS, REJOIN_TIMEOUT_S, "writes after the pause", cluster.logs
        ) + (time.monotonic() - started)
    # Rejoined: listed by every node again and back in the ISR.
    cluster.wait_brokers(set(cluster.nodes), on=cluster.nodes, timeout=REJOIN_TIMEOUT_S)
    wait_full_isr(cluster, topic, set(cluster.nodes))
    woken_log = log.read_text(errors="replace")[log_size:]
    seen.woken_decisions = [line for line in woken_log.splitlines() if "fencing broker" in line]
    return seen


def run_pause(
    make_cluster: Callable[..., Cluster], pick: Callable[[Cluster, int], int], what: str
) -> None:
    cluster = make_cluster(extra=SETTINGS)
    controller = cluster.wait_active_controller()
    victim = pick(cluster, controller)
    others = [n for n in sorted(cluster.nodes) if n != victim]
    topic = "paused"
    create_topic_led_by(cluster, others[0], topic, [victim, *others])
    everyone = set(cluster.nodes)
    leader, _ = wait_full_isr(cluster, topic, everyone)
    assert leader == victim, f"{topic}-0 is led by {leader}, not {victim}"
    if what == "controller":
        assert cluster.active_controller() == victim
    else:
        assert cluster.active_controller() != victim
    workload = HungLeaderWorkload(cluster.bootstrap_servers, topic)
    with running(workload):
        workload.wait_acked(200, 30.0, "the first acknowledgements", cluster.logs)
        seen = observe_pause(cluster, workload, victim, topic)
        workload.wait_acked(
            workload.acked_count() + 200, REJOIN_TIMEOUT_S, "writes after SIGCONT", cluster.logs
        )
    print(
        f"\nFIGURE pause of {what} {victim}: produce resumed after {seen.resumed_after_s:.2f} s "
        f"(limit {SESSION_MS / 1000 + RESUME_SLACK_S:.1f} s); fenced seen "
        f"{sorted(seen.fenced_seen)} in {seen.samples} samples; leaders seen "
        f"{sorted(seen.leaders_seen)}; acknowledged {len(workload.acked)}, "
        f"failed {len(workload.failed)}"
    )
    # The woken node must notice it was deposed before it decides anything: no fencing.
    assert not seen.woken_decisions, (
        f"node {victim} took fencing decisions after waking: {seen.woken_decisions}"
    )
    assert seen.fenced_seen <= {victim}, (
        f"healthy brokers fenced: {sorted(seen.fenced_seen - {victim})}\n{cluster.logs(80)}"
    )
    assert victim in seen.fenced_seen, f"the paused broker {victim} was never fenced"
    assert seen.resumed_after_s <= SESSION_MS / 1000 + RESUME_SLACK_S, (
        f"produce resumed only after {seen.resumed_after_s:.2f} s\n{cluster.logs(80)}"
    )
    assert not workload.failed, f"writes failed: {list(workload.failed.items())[:10]}"
    read = check_read_back(workload, ConfluentDriver(cluster.bootstrap_servers), topic)
    assert read >= len(workload.acked)


def test_pause_active_controller_and_leader(make_cluster: Callable[..., Cluster]) -> None:
    run_pause(make_cluster, lambda cluster, controller: controller, "controller")


def test_pause_leader_not_controller(make_cluster: Callable[..., Cluster]) -> None:
    run_pause(
        make_cluster,
        lambda cluster, controller: next(n for n in sorted(cluster.nodes) if n != controller),
        "leader",
    )
