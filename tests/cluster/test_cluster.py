"""Process tests of a 3-node cluster: formation, controller failover, broker fencing and
return, loss of quorum, whole-cluster crashes, hostile Raft peers, and `kraft up`.

These are about the control plane: data checks use RF=1 topics, and RF=3 topics serve to
watch leaders move in the metadata. Data replication under faults is in
test_replication_process.py.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest

from kraft.log.records import build_simple_batch
from kraft.net.protocol import (
    CreateTopicsResponse,
    ErrorCode,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    ProduceResponse,
)

from .conftest import (
    TRANSIENT,
    Cluster,
    call,
    create_topics_request,
    poll_until,
)

# Faster broker sessions than Kafka's defaults (2 s heartbeats, 9 s session), so fencing
# happens within a test's time.
FAST_SESSIONS = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "500"}
SEED = int(os.environ.get("KRAFT_CLUSTER_SEED", "20240611"))


def leaders(response: MetadataResponse, topic: str) -> dict[int, tuple[int, list[int]]]:
    """{partition: (leader, isr)} of `topic` in a Metadata response."""
    for t in response.topics:
        if t.name == topic:
            return {p.partition_index: (p.leader_id, list(p.isr_nodes)) for p in t.partitions}
    return {}


def quorum_leader(cluster: Cluster, node_id: int) -> tuple[int, int] | None:
    """(leader id, leader epoch) if `node_id` answers DescribeQuorum as the active
    controller."""
    response = cluster.describe_quorum(node_id, timeout=1.0)
    if response.error_code or not response.topics:
        return None
    partition = response.topics[0].partitions[0]
    if partition.leader_id != node_id:
        return None
    return partition.leader_id, partition.leader_epoch


# --------------------------------------------------------------------- formation


def test_cluster_forms(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    ids = set(cluster.nodes)
    cluster.wait_brokers(ids, on=ids)
    for node_id in ids:
        response = cluster.metadata(node_id, topics=[])
        assert response.cluster_id == cluster.cluster_id
    leader = cluster.wait_active_controller()
    answers = {n: cluster.describe_quorum(n) for n in ids}
    partition = answers[leader].topics[0].partitions[0]
    assert partition.leader_id == leader
    assert partition.leader_epoch >= 1
    assert partition.high_watermark > 0
    assert sorted(v.replica_id for v in partition.current_voters) == sorted(ids)
    # Only the active controller answers; the others point elsewhere.
    for node_id, answer in answers.items():
        if node_id != leader:
            assert answer.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, answer


# ----------------------------------------------------------- controller failover


def test_active_controller_failover(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    old = cluster.wait_active_controller()
    old_epoch = cluster.describe_quorum(old).topics[0].partitions[0].leader_epoch
    survivors = [n for n in cluster.nodes if n != old]

    cluster.kill(old)
    killed = time.monotonic()

    def new_leader() -> tuple[int, int] | None:
        for n in survivors:
            with suppress(*TRANSIENT):
                found = quorum_leader(cluster, n)
                if found is not None:
                    return found
        return None

    leader, epoch = poll_until(new_leader, 10.0, "a new active controller", 0.01, cluster.logs)
    elapsed = time.monotonic() - killed
    print(f"\nactive controller {old} killed: controller {leader} active after {elapsed:.3f} s")
    assert leader in survivors and epoch > old_epoch
    assert elapsed < 10.0

    # Metadata changes go on, through the node that is not the controller (forwarded).
    (other,) = [n for n in survivors if n != leader]
    topic_id = cluster.create_topic(other, "after-failover", 3, 3)
    assert topic_id.int
    cluster.wait_topic("after-failover", on=survivors)

    # The old controller comes back as a follower and catches up.
    cluster.nodes[old].start()
    cluster.nodes[old].wait_ready()
    cluster.wait_topic("after-failover", on=[old])
    cluster.wait_active_controller()


# ----------------------------------------------------- broker fencing and return


def test_killed_broker_is_fenced_and_returns(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extra=FAST_SESSIONS)
    controller = cluster.wait_active_controller()
    topic = "rf3"
    cluster.create_topic(controller, topic, 6, 3)
    cluster.wait_topic(topic, on=cluster.nodes)
    before = leaders(cluster.metadata(controller, [topic]), topic)
    victim = next(n for n in cluster.nodes if n != controller)
    led = sorted(p for p, (leader, _) in before.items() if leader == victim)
    assert led, f"broker {victim} leads no partition of {topic}: {before}"
    survivors = [n for n in cluster.nodes if n != victim]

    cluster.kill(victim)
    killed = time.monotonic()

    def moved() -> bool:
        for n in survivors:
            now = leaders(cluster.metadata(n, [topic]), topic)
            for p in led:
                leader, isr = now[p]
                if leader == victim or leader not in survivors or victim in isr:
                    return False
                if leader not in before[p][1]:
                    return False  # elected from outside the ISR
            if victim in cluster.broker_ids(n):
                return False
        return True

    poll_until(moved, 15.0, f"partitions {led} to leave broker {victim}", 0.05, cluster.logs)
    elapsed = time.monotonic() - killed
    print(f"\nbroker {victim} killed: leaders of {led} moved after {elapsed:.2f} s (session 2 s)")
    # Fencing waits for the session to expire; it does not happen at once.
    assert elapsed >= 1.5

    cluster.nodes[victim].start()
    cluster.nodes[victim].wait_ready()  # printed once registered again and unfenced
    cluster.wait_brokers(set(cluster.nodes), on=cluster.nodes)
    # It caught up: its image has the leaders the controller decided while it was away.
    want = leaders(cluster.metadata(controller, [topic]), topic)
    poll_until(
        lambda: leaders(cluster.metadata(victim, [topic]), topic) == want,
        10.0,
        f"broker {victim} to catch up with the leaders of {topic}",
    )


# ---------------------------------------------------------------- loss of quorum


@pytest.mark.parametrize("survivor_role", ["controller", "follower"])
def test_lost_quorum_blocks_metadata_but_not_data(
    make_cluster: Callable[..., Cluster], survivor_role: str
) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    cluster = make_cluster()
    controller = cluster.wait_active_controller()
    topic = "rf1"
    cluster.create_topic(controller, topic, 6, 1)
    cluster.wait_topic(topic, on=cluster.nodes)
    if survivor_role == "controller":
        survivor = controller
    else:
        survivor = next(n for n in cluster.nodes if n != controller)
    placement = leaders(cluster.metadata(survivor, [topic]), topic)
    partition = next(p for p, (leader, _) in sorted(placement.items()) if leader == survivor)
    bootstrap = f"127.0.0.1:{cluster.nodes[survivor].kafka_port}"
    tp = TopicPartition(topic, partition)

    def produce(values: list[bytes]) -> None:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks=1,
            enable_idempotence=False,  # InitProducerId would need the controller
            request_timeout_ms=5000,
            max_block_ms=10000,
            linger_ms=0,
        )
        try:
            for v in values:
                producer.send(topic, v, partition=partition).get(timeout=10)
        finally:
            producer.close(timeout=5)

    produce([b"before-%d" % i for i in range(5)])
    for n in cluster.nodes:
        if n != survivor:
            cluster.kill(n)

    started = time.monotonic()
    outcome: str
    try:
        (result,) = cluster.create_topics(
            survivor, {"no-quorum": (1, 1)}, timeout_ms=5000, timeout=7.0
        )
        outcome = f"error {result.error_code}"
        assert result.error_code == ErrorCode.REQUEST_TIMED_OUT, result
    except TRANSIENT as e:
        outcome = f"client-side failure {type(e).__name__}: {e}"
    elapsed = time.monotonic() - started
    print(f"\nCreateTopics without quorum ({survivor_role} survives): {outcome} in {elapsed:.2f} s")
    assert elapsed < 9.0

    produce([b"after-%d" % i for i in range(5)])
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=10000,
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(got) < 10 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got += [r.value for r in records]
    finally:
        consumer.close()
    assert got == [b"before-%d" % i for i in range(5)] + [b"after-%d" % i for i in range(5)]
    assert cluster.nodes[survivor].alive


def test_forwarded_write_without_quorum_answers_request_timed_out(
    make_cluster: Callable[..., Cluster],
) -> None:
    """A broker that forwards a metadata write while no controller is active answers
    REQUEST_TIMED_OUT within the request's timeout_ms (it used to hold the request for a
    fixed 30 s, then drop the connection)."""
    cluster = make_cluster()
    controller = cluster.wait_active_controller()
    survivor = next(n for n in cluster.nodes if n != controller)
    for n in cluster.nodes:
        if n != survivor:
            cluster.kill(n)
    started = time.monotonic()
    (result,) = cluster.create_topics(survivor, {"no-quorum": (1, 1)}, timeout_ms=2000, timeout=6.0)
    assert result.error_code == ErrorCode.REQUEST_TIMED_OUT
    assert time.monotonic() - started < 5.0


def test_last_node_stops_promptly(make_cluster: Callable[..., Cluster]) -> None:
    """Nodes stopped one by one all stop promptly, the last one too: with no quorum left to
    approve its controlled shutdown it gives up instead of waiting the whole shutdown
    timeout (it used to stall ~10 s, and so did `kraft up`'s stop)."""
    cluster = make_cluster()
    cluster.wait_active_controller()
    for node_id, node in cluster.nodes.items():
        started = time.monotonic()
        node.terminate()
        code = node.wait_exit(5.0)
        print(f"\nnode {node_id} SIGTERM: exit {code} after {time.monotonic() - started:.2f} s")
        assert code == 0, f"node {node_id} did not stop in 5 s\n{node.log_tail(10)}"


def test_sigterm_starts_controlled_shutdown_at_once(
    make_cluster: Callable[..., Cluster],
) -> None:
    """SIGTERM sends the shutdown heartbeat at once, not on the next heartbeat tick (it used
    to wait up to broker.heartbeat.interval.ms first)."""
    cluster = make_cluster(
        extra={"broker.heartbeat.interval.ms": "5000", "broker.session.timeout.ms": "15000"}
    )
    controller = cluster.wait_active_controller()
    node = next(n for i, n in cluster.nodes.items() if i != controller)
    started = time.monotonic()
    node.terminate()  # it heartbeated last when it was unfenced, just before ready
    code = node.wait_exit(10.0)
    elapsed = time.monotonic() - started
    print(
        f"\nnode {node.node_id} SIGTERM (heartbeats every 5 s): exit {code} after {elapsed:.2f} s"
    )
    assert code == 0 and elapsed < 2.0


# --------------------------------------------------------- whole-cluster crashes


def test_whole_cluster_crashes_lose_no_committed_metadata(
    make_cluster: Callable[..., Cluster],
) -> None:
    rounds = int(os.environ.get("KRAFT_CLUSTER_CRASH_ROUNDS", "20"))
    rng = random.Random(SEED)
    print(f"\nseed {SEED}, {rounds} rounds")
    cluster = make_cluster(start=False)
    acked: dict[str, tuple[uuid.UUID, int]] = {}
    unknown = 0
    counter = 0

    def try_create(node_id: int) -> None:
        nonlocal counter, unknown
        counter += 1
        name = f"crash-{counter}"
        # Small topics: every restart replays the whole metadata log and reopens every log.
        partitions = rng.randint(1, 3)
        rf = rng.choice([1, 1, 3])
        try:
            (result,) = cluster.create_topics(
                node_id, {name: (partitions, rf)}, timeout_ms=2000, timeout=3.0
            )
        except TRANSIENT:
            unknown += 1
            return
        if result.error_code == 0:
            assert result.topic_id.int, result
            acked[name] = (result.topic_id, partitions)
        else:
            unknown += 1

    for round_no in range(rounds):
        if rng.random() < 0.3:
            # Crash during start-up: recovery, election or registration in progress.
            cluster.start(wait=False)
            _kill_at_random(cluster, rng, 1.2)
        cluster.start(wait=True)
        # A healthy cluster after the previous crash accepts a write at once.
        before = len(acked)
        try_create(rng.choice(list(cluster.nodes)))
        assert len(acked) == before + 1, f"round {round_no}: a healthy cluster refused\n" + (
            cluster.logs()
        )
        # Writes in flight while the nodes die at random moments.
        timers = _kill_at_random(cluster, rng, 0.4, wait=False)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and cluster.alive_ids():
            try_create(rng.choice(cluster.alive_ids() or [1]))
        for timer in timers:
            timer.join()
        cluster.kill_all()

    cluster.start(wait=True)
    print(f"acknowledged {len(acked)} topics, {unknown} writes of unknown outcome")
    controller = cluster.wait_active_controller()
    final = _topics(cluster, controller)
    lost = {name: want for name, want in acked.items() if final.get(name) != want}
    assert not lost, f"lost or changed committed topics: {lost}\n{cluster.logs()}"
    # Every node holds the same metadata, the topics of unknown outcome included.
    for node_id in cluster.nodes:
        poll_until(
            functools.partial(_holds, cluster, node_id, final),
            10.0,
            f"node {node_id} to hold the controller's topics",
            on_timeout=cluster.logs,
        )


def _holds(cluster: Cluster, node_id: int, want: dict[str, tuple[uuid.UUID, int]]) -> bool:
    return _topics(cluster, node_id) == want


def _topics(cluster: Cluster, node_id: int) -> dict[str, tuple[uuid.UUID, int]]:
    return {
        t.name: (t.topic_id, len(t.partitions))
        for t in cluster.metadata(node_id).topics
        if t.error_code == 0 and t.name is not None
    }


def test_whole_cluster_crash_keeps_acknowledged_rf1_data(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Acknowledged RF=1 records survive a kill -9 of every node: a restarted broker must not
    delete logs whose partitions its partly replayed image does not hold yet (it used to)."""
    from kafka import KafkaConsumer, TopicPartition

    cluster = make_cluster()
    controller = cluster.wait_active_controller()
    cluster.create_topic(controller, "data", 6, 1)
    cluster.wait_topic("data", on=cluster.nodes)
    placement = leaders(cluster.metadata(controller, ["data"]), "data")
    batch = build_simple_batch([b"kept-%d" % i for i in range(5)])
    for partition, (leader, _) in sorted(placement.items()):
        request = ProduceRequest(
            acks=1,
            timeout_ms=5000,
            topic_data=[
                ProduceRequest.TopicProduceData(
                    name="data",
                    partition_data=[
                        ProduceRequest.PartitionProduceData(index=partition, records=batch)
                    ],
                )
            ],
        )
        response = call(cluster.nodes[leader].kafka_port, request)
        assert isinstance(response, ProduceResponse)
        (answer,) = response.responses[0].partition_responses
        assert answer.error_code == 0, answer

    # A crash of the whole cluster loses no acknowledged write: a killed process's writes are
    # in the page cache, and nothing deleted the topic.
    cluster.kill_all()
    cluster.start()
    cluster.wait_brokers(set(cluster.nodes), on=cluster.nodes)
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, group_id=None)
    try:
        tps = [TopicPartition("data", p) for p in sorted(placement)]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    deleted = [
        line
        for node in cluster.nodes.values()
        for line in node.log_path.read_text(errors="replace").splitlines()
        if "deleted log for partition data-" in line
    ]
    assert {tp.partition: end for tp, end in ends.items()} == dict.fromkeys(placement, 5), (
        "\n".join(deleted)
    )


def _kill_at_random(
    cluster: Cluster, rng: random.Random, window: float, wait: bool = True
) -> list[threading.Timer]:
    """kill -9 every node at its own random moment within `window` seconds."""
    timers: list[threading.Timer] = []
    for node in cluster.nodes.values():
        proc = node.proc
        if proc is None:
            continue
        timer = threading.Timer(rng.uniform(0, window), _sigkill, args=(proc.pid,))
        timer.start()
        timers.append(timer)
    if wait:
        for timer in timers:
            timer.join()
        cluster.kill_all()
    return timers


def _sigkill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------ hostile Raft peers


def test_hostile_raft_peers_change_nothing(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster()
    controller = cluster.wait_active_controller()
    epoch = cluster.describe_quorum(controller).topics[0].partitions[0].leader_epoch
    marker = tmp_path / "unpickled"

    class Opens:
        """Unpickling this creates `marker`: proof that a stranger's pickle ran."""

        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return open, (str(marker), "w")

    evil = pickle.dumps(Opens())
    rng = random.Random(SEED)
    garbage = bytes(rng.getrandbits(8) for _ in range(4096))
    hello_forged = b"KRQ1" + struct.pack(">II", 2, controller) + bytes(16)
    payloads = {
        "garbage": garbage,
        "raw pickle": evil,
        "pysyncobj frame": _pysyncobj_frame(evil),
        "huge length": struct.pack(">I", 0xFFFFFFF0) + garbage,
        "forged hello, then pickle": hello_forged + bytes(32) + _pysyncobj_frame(evil),
    }
    for node in cluster.nodes.values():
        for what, payload in payloads.items():
            closed_after = _send_and_wait_close(node.raft_port, payload, 10.0)
            assert closed_after is not None, f"node {node.node_id} kept the {what} link open"

    assert not marker.exists(), "a pickle sent to a Raft port was unpickled"
    assert all(n.alive for n in cluster.nodes.values()), cluster.logs()
    assert cluster.wait_active_controller() == controller
    assert cluster.describe_quorum(controller).topics[0].partitions[0].leader_epoch == epoch
    cluster.create_topic(controller, "after-garbage", 1, 3)
    cluster.wait_topic("after-garbage", on=cluster.nodes)
    cluster.wait_brokers(set(cluster.nodes), on=cluster.nodes)


def _pysyncobj_frame(data: bytes) -> bytes:
    """How pysyncobj's own TCP transport frames a message: native int length, zlib."""
    body = zlib.compress(data, 3)
    return struct.pack("i", len(body)) + body


def _send_and_wait_close(port: int, payload: bytes, timeout: float) -> float | None:
    """Send `payload`; seconds until the peer closed the connection (None: still open)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with suppress(OSError):
            s.sendall(payload)
        deadline = started + timeout
        while time.monotonic() < deadline:
            try:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                if not s.recv(65536):
                    return time.monotonic() - started
            except TimeoutError:
                break
            except OSError:
                return time.monotonic() - started
    return None


# ---------------------------------------------------------------------- kraft up


def _free_base_port() -> int:
    """A base port P with P..P+2, P+100..P+102, P+200..P+202 and P+300..P+302 free."""
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 40000)
        wanted = [base + off + i for off in (0, 100, 200, 300) for i in range(3)]
        held = []
        try:
            for port in wanted:
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise AssertionError("no free base port")


class KraftUp:
    """`kraft up --nodes 3` as a real subprocess."""

    def __init__(self, data_dir: Path, base_port: int) -> None:
        self.data_dir = data_dir
        self.base_port = base_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: list[bytes] = []

    def start(self, timeout: float = 60.0) -> float:
        """Seconds until it says the cluster is ready."""
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kraft.cli",
                "up",
                "--nodes",
                "3",
                "--data-dir",
                str(self.data_dir),
                "--base-port",
                str(self.base_port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            bufsize=0,  # unbuffered: select() then sees every line that is not read yet
        )
        assert self.proc.stdout is not None
        deadline = started + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if b"cluster file:" in line:
                return time.monotonic() - started
        self.kill()
        raise AssertionError(f"kraft up not ready: {b''.join(self.output)!r}\n{self.logs()}")

    def stop(self, timeout: float = 45.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        assert self.proc is not None and self.proc.stdout is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"kraft up did not stop in {timeout} s\n{self.logs()}") from None
        self.output.append(self.proc.stdout.read())
        self.proc.stdout.close()
        return code, time.monotonic() - started

    def kill(self) -> None:
        """Last resort: the whole tree (the nodes run in sessions of their own)."""
        pids = self.child_pids()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in pids:
            _sigkill(pid)

    def child_pids(self) -> list[int]:
        """The nodes this `kraft up` started: from cluster.json, or (before it is written)
        the processes serving a config under this test's own data dir."""
        with suppress(OSError, ValueError, KeyError):
            info = json.loads((self.data_dir / "cluster.json").read_text())
            return [int(n["pid"]) for n in info["nodes"]]
        return _serving_under(self.data_dir)

    def logs(self) -> str:
        out = []
        for i in (1, 2, 3):
            path = self.data_dir / f"node-{i}" / "node.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-30:]
                out.append(f"---- node {i}\n" + "\n".join(lines))
        return "\n".join(out)


def _serving_under(data_dir: Path) -> list[int]:
    """Pids of `kraft serve` processes whose config lies under `data_dir` (a fresh temporary
    dir of this test, so they are the ones it started)."""
    marker = str(data_dir).encode() + b"/node-"
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if b"kraft.cli\0serve" in cmdline and marker in cmdline:
                pids.append(int(entry.name))
    return pids


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours would still exist; `kraft up`'s children are reaped by it or by init.
    with suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    return True


def test_kraft_up_starts_stops_and_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "up"
    base = _free_base_port()
    up = KraftUp(data_dir, base)
    try:
        ready_s = up.start()
        info = json.loads((data_dir / "cluster.json").read_text())
        assert info["bootstrap_servers"] == ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        pids = [int(n["pid"]) for n in info["nodes"]]
        assert len(pids) == 3 and all(_pid_exists(p) for p in pids)
        # Each node's admin API on P+300+i-1, printed and in cluster.json.
        admin_urls = [n["admin"] for n in info["nodes"]]
        assert admin_urls == [f"http://127.0.0.1:{base + 300 + i}" for i in range(3)]
        printed = b"".join(up.output).decode()
        assert all(url in printed for url in admin_urls), printed
        for url in admin_urls:
            with urllib.request.urlopen(url + "/v1/health", timeout=10) as answer:
                assert json.loads(answer.read())["node_id"] in {1, 2, 3}
        metadata = call(base + 1, _metadata_all())
        assert isinstance(metadata, MetadataResponse)
        assert {b.node_id for b in metadata.brokers} == {1, 2, 3}
        cluster_id = metadata.cluster_id
        response = call(base + 1, create_topics_request({"kept": (4, 3)}))
        assert isinstance(response, CreateTopicsResponse)
        (created,) = response.topics
        assert created.error_code == 0, created

        code, stop_s = up.stop()
        print(f"\nkraft up: ready in {ready_s:.2f} s, stopped in {stop_s:.2f} s")
        assert code == 0, b"".join(up.output)
        assert not (data_dir / "cluster.json").exists()
        leftover = poll_until(
            lambda: not any(_pid_exists(p) for p in pids) and not _serving_under(data_dir),
            5.0,
            "the nodes to be gone",
        )
        assert leftover

        again = KraftUp(data_dir, base)
        up = again
        ready_s = again.start()
        metadata = call(base + 2, _metadata_all())
        assert isinstance(metadata, MetadataResponse)
        assert metadata.cluster_id == cluster_id
        kept = {t.name: t for t in metadata.topics}
        assert "kept" in kept and kept["kept"].topic_id == created.topic_id
        assert len(kept["kept"].partitions) == 4
        code, stop_s = again.stop()
        print(f"kraft up again: ready in {ready_s:.2f} s, stopped in {stop_s:.2f} s")
        assert code == 0
    finally:
        up.kill()


def _metadata_all() -> MetadataRequest:
    return MetadataRequest(topics=None, allow_auto_topic_creation=False)
