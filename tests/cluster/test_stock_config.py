"""A stock Kafka KRaft `server.properties`, as Kafka's documentation writes it, runs unchanged:
formatted with `kraft storage format`, started with `kraft serve --config`, used at once.

Each node is a `kraft serve` child process on 127.0.0.1 (ports picked free; the Raft transport
on the derived port, CONTROLLER + RAFT_PORT_OFFSET, checked free too), stopped by the test.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kraft.config import derived_raft_port
from kraft.launcher import free_ports, node_command, request
from kraft.net.protocol import MetadataRequest, MetadataResponse
from tests.e2e.client_drivers import DRIVERS, Outgoing, ProducerSettings
from tests.wait import wait_until

# Well under the 30 s a client waited for a controller when it came too early.
FIRST_ATTEMPT_TIMEOUT_S = 15.0


def free_port_pairs(count: int) -> list[tuple[int, int]]:
    """`count` (broker, controller) port pairs free on 127.0.0.1, each controller port's
    derived Raft port free too."""
    held: list[socket.socket] = []
    pairs: list[tuple[int, int]] = []
    try:
        while len(pairs) < count:
            socks = []
            for _ in range(2):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            held += socks
            raft = socket.socket()
            held.append(raft)
            try:
                raft.bind(("127.0.0.1", derived_raft_port(socks[1].getsockname()[1])))
            except OSError:
                continue
            pairs.append((socks[0].getsockname()[1], socks[1].getsockname()[1]))
        return pairs
    finally:
        for s in held:
            s.close()


def stock_properties(node_id: int, ports: list[tuple[int, int]], log_dir: Path) -> str:
    """Kafka's config/kraft/server.properties for a combined node, ports changed."""
    kafka, controller = ports[node_id - 1]
    voters = ",".join(f"{i}@localhost:{c}" for i, (_, c) in enumerate(ports, 1))
    replication = min(3, len(ports))
    return f"""\
############################# Server Basics #############################
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}

############################# Socket Server Settings #############################
listeners=PLAINTEXT://:{kafka},CONTROLLER://:{controller}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:{kafka}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600

############################# Log Basics #############################
log.dirs={log_dir}
num.partitions=1
num.recovery.threads.per.data.dir=1

############################# Internal Topic Settings  #############################
offsets.topic.replication.factor={replication}
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr=1

############################# Log Retention Policy #############################
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""


def kraft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(node_command(*args), capture_output=True, text=True, timeout=60)


class StockCluster:
    """Nodes started from stock configs, after `kraft storage format` with one cluster id."""

    def __init__(self, root: Path, nodes: int, extra: str = "") -> None:
        self.root = root
        self.ports = free_port_pairs(nodes)
        self.internal_ports = free_ports(nodes)  # for configs with a second listener
        cluster_id = kraft("storage", "random-uuid").stdout.strip()
        self.configs = []
        for node_id in range(1, nodes + 1):
            path = root / f"server-{node_id}.properties"
            path.write_text(
                stock_properties(node_id, self.ports, root / f"kraft-combined-logs-{node_id}")
                + extra.format(**self._ports_of(node_id))
            )
            done = kraft("storage", "format", "-t", cluster_id, "-c", str(path))
            assert done.returncode == 0, done.stderr
            self.configs.append(path)
        self.procs: list[subprocess.Popen[bytes]] = []

    def _ports_of(self, node_id: int) -> dict[str, int]:
        kafka, controller = self.ports[node_id - 1]
        return {
            "kafka": kafka,
            "controller": controller,
            "internal": self.internal_ports[node_id - 1],
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(f"localhost:{k}" for k, _ in self.ports)

    def start(self) -> None:
        for i, path in enumerate(self.configs, 1):
            with open(self.root / f"node-{i}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        node_command("serve", "--config", str(path)),
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        start_new_session=True,
                    )
                )

    def logs(self) -> str:
        return "\n".join(
            f"---- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
            for p in sorted(self.root.glob("node-*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def brokers_listed(self, port: int) -> dict[int, int]:
        """Broker id → port, as Metadata asked on `port` lists them."""
        try:
            response = request(port, MetadataRequest(topics=[]), 2.0)
        except OSError:
            return {}
        assert isinstance(response, MetadataResponse)
        return {b.node_id: b.port for b in response.brokers}


@pytest.fixture
def stock_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StockCluster]:
    nodes, extra = request.param
    cluster = StockCluster(tmp_path, nodes, extra)
    try:
        yield cluster
    finally:
        cluster.stop()


def create_at_once(cluster: StockCluster, replication: int) -> float:
    """Start the nodes and create a topic with confluent-kafka's AdminClient at once; the
    seconds it took. The first attempt must succeed."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    started = time.monotonic()
    cluster.start()
    futures = admin.create_topics(
        [NewTopic("at-once", 3, replication)], request_timeout=FIRST_ATTEMPT_TIMEOUT_S
    )
    try:
        futures["at-once"].result(FIRST_ATTEMPT_TIMEOUT_S + 5)
    except KafkaException as e:
        raise AssertionError(f"create_topics failed: {e}\n{cluster.logs()}") from None
    return time.monotonic() - started


def use_with_every_client(cluster: StockCluster, topic: str, bootstrap: str, tag: str = "") -> None:
    """Each client produces 9 records (acks=all) and reads them back."""
    for client, driver_cls in DRIVERS.items():
        name = f"{tag}{client}"
        driver = driver_cls(bootstrap)
        records = [
            Outgoing(f"{name}-{i}".encode(), f"v{i}".encode(), (), 1_700_000_000_000 + i, i % 3)
            for i in range(9)
        ]
        acks = driver.produce(f"{topic}", records, ProducerSettings(acks="all"))
        assert all(not isinstance(a, Exception) for a in acks), (name, acks)
        read = driver.read_all(topic, 3)
        mine = {r.key for r in read if r.key is not None and r.key.startswith(f"{name}-".encode())}
        assert mine == {r.key for r in records}, (name, cluster.logs())


@pytest.mark.parametrize("stock_cluster", [(1, "")], indirect=True)
def test_stock_single_node_config_serves_at_once(stock_cluster: StockCluster) -> None:
    elapsed = create_at_once(stock_cluster, 1)
    print(f"single node: topic created {elapsed:.2f} s after start")
    use_with_every_client(stock_cluster, "at-once", stock_cluster.bootstrap)


@pytest.mark.parametrize("stock_cluster", [(3, "")], indirect=True)
def test_stock_three_node_config_forms_a_cluster(stock_cluster: StockCluster) -> None:
    # RF 1 at once: brokers unfence one by one, so RF 3 right at start would be refused
    # with INVALID_REPLICATION_FACTOR, as by Kafka.
    elapsed = create_at_once(stock_cluster, 1)
    print(f"three nodes: topic created {elapsed:.2f} s after start")
    kafka_ports = [k for k, _ in stock_cluster.ports]
    wait_until(
        lambda: all(set(stock_cluster.brokers_listed(p)) == {1, 2, 3} for p in kafka_ports),
        "every broker listing brokers 1, 2, 3",
        explain=stock_cluster.logs,
    )
    admin = AdminClient({"bootstrap.servers": stock_cluster.bootstrap})
    admin.create_topics([NewTopic("replicated", 3, 3)])["replicated"].result(30)
    use_with_every_client(stock_cluster, "replicated", stock_cluster.bootstrap)


# Two PLAINTEXT listeners besides CONTROLLER: brokers replicate on INTERNAL, clients use either.
NAMED = """
listeners=INTERNAL://:{internal},EXTERNAL://:{kafka},CONTROLLER://:{controller}
advertised.listeners=INTERNAL://127.0.0.1:{internal},EXTERNAL://localhost:{kafka}
listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
"""


@pytest.mark.parametrize("stock_cluster", [(3, NAMED)], indirect=True)
def test_named_plaintext_listeners_each_serve_clients(stock_cluster: StockCluster) -> None:
    external = {i: k for i, (k, _) in enumerate(stock_cluster.ports, 1)}
    internal = dict(enumerate(stock_cluster.internal_ports, 1))
    stock_cluster.start()
    # Each listener's Metadata names every broker's endpoint on that same listener.
    wait_until(
        lambda: (
            stock_cluster.brokers_listed(external[1]) == external
            and stock_cluster.brokers_listed(internal[2]) == internal
        ),
        "Metadata on EXTERNAL and INTERNAL to list their own listeners' ports",
        explain=stock_cluster.logs,
    )
    admin = AdminClient({"bootstrap.servers": stock_cluster.bootstrap})
    admin.create_topics([NewTopic("named", 3, 3)])["named"].result(30)
    # acks=all with RF 3: the followers replicate over INTERNAL (inter.broker.listener.name).
    use_with_every_client(stock_cluster, "named", stock_cluster.bootstrap)
    use_with_every_client(
        stock_cluster, "named", ",".join(f"127.0.0.1:{p}" for p in internal.values()), "in-"
    )
