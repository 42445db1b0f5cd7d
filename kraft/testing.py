"""`KafkaContainer`: the surface of testcontainers-python's `testcontainers.kafka.KafkaContainer`
that its users call, served by a `kraft.Cluster` instead of a Docker container, so a test suite
moves off Docker by changing one import::

    -from testcontainers.kafka import KafkaContainer
    +from kraft.testing import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka:
        producer = KafkaProducer(bootstrap_servers=kafka.get_bootstrap_server())

Covered (same names, arguments and return values):

- `KafkaContainer(image=..., port=9093, **kwargs)`: `image` and `kwargs` are accepted and
  ignored (no Docker); `port` is the "container port" `get_exposed_port` maps.
- `start(timeout=30)` → self (a 1-node kraft cluster, healthy; `timeout` bounds the start),
  `stop(force=True, delete_volume=True)` (stops the node, removes its data), `with` blocks.
- `get_bootstrap_server()` → "127.0.0.1:<port>"; `get_container_host_ip()` → "127.0.0.1";
  `get_exposed_port(port)` → the Kafka port for the container port (`self.port`).
- `with_kraft()` (kraft is always KRaft; no version check), `with_env(key, value)`,
  `with_envs(**env)`, `with_exposed_ports(*ports)` and `with_name(name)` (accepted, no
  effect), `get_logs()` → (b"", the node's log tail).

`with_env` maps the Confluent image's variables to `server.properties` keys as that image does:
`KAFKA_` removed, lower case, `___` → `-`, `__` → `_`, `_` → `.` (KAFKA_NUM_PARTITIONS →
num.partitions, KAFKA_AUTO_CREATE_TOPICS_ENABLE → auto.create.topics.enable,
KAFKA_LOG_RETENTION_MS → log.retention.ms). The keys are checked as `kraft serve` checks its
config at `start()` (a refused key raises `kraft.embedded.ClusterConfigError`). Ignored, since
the adapter sets them itself or they concern the JVM or ZooKeeper: KAFKA_LISTENERS,
KAFKA_ADVERTISED_LISTENERS, KAFKA_LISTENER_SECURITY_PROTOCOL_MAP,
KAFKA_INTER_BROKER_LISTENER_NAME, KAFKA_CONTROLLER_QUORUM_VOTERS,
KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS, KAFKA_CONTROLLER_LISTENER_NAMES, KAFKA_BROKER_ID,
KAFKA_NODE_ID, KAFKA_PROCESS_ROLES, KAFKA_LOG_DIRS, KAFKA_ZOOKEEPER_*, KAFKA_HEAP_OPTS, KAFKA_JVM_*,
KAFKA_JMX_*, KAFKA_OPTS, KAFKA_LOG4J_*, CLUSTER_ID and every variable not starting KAFKA_.
Defaults, as testcontainers' KafkaContainer sets them: offsets.topic.num.partitions=1,
offsets.topic.replication.factor=1, group.initial.rebalance.delay.ms=0.

Not covered: `with_cluster_id` (kraft makes its own cluster id), Docker networks
(`with_network`, aliases: the broker is on 127.0.0.1 only), `with_volume_mapping`,
`with_command`, `exec`, `get_wrapped_container`/`get_docker_client` (there is no container),
`tc_start`/`create_file`, SSL/SASL listeners (refused: kraft has no security yet), and
`RedpandaContainer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kraft.embedded.cluster import Cluster

__all__ = ["KafkaContainer", "env_to_config"]

HOST = "127.0.0.1"
# Variables the adapter sets itself, or that concern the JVM, ZooKeeper or the image.
_IGNORED = frozenset(
    {
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_BROKER_ID",
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LOG_DIRS",
        "KAFKA_HEAP_OPTS",
        "KAFKA_OPTS",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
    }
)
_IGNORED_PREFIXES = (
    "KAFKA_ZOOKEEPER_",
    "KAFKA_JVM_",
    "KAFKA_JMX_",
    "KAFKA_LOG4J_",
)
DEFAULT_CONFIG = {
    "offsets.topic.num.partitions": "1",
    "offsets.topic.replication.factor": "1",
    "group.initial.rebalance.delay.ms": "0",
}


def env_to_config(env: dict[str, str]) -> dict[str, str]:
    """The `server.properties` keys of Confluent-image style variables (see the module doc)."""
    config = {}
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name in _IGNORED:
            continue
        if name.startswith(_IGNORED_PREFIXES):
            continue
        key = name.removeprefix("KAFKA_").lower()
        key = key.replace("___", "\0").replace("__", "\1").replace("_", ".")
        config[key.replace("\0", "-").replace("\1", "_")] = str(value)
    return config


class KafkaContainer:
    """testcontainers-python's KafkaContainer on a 1-node kraft cluster (module doc: what
    is covered and what is not). `nodes` (kraft's addition) asks for more combined nodes."""

    def __init__(
        self,
        image: str = "confluentinc/cp-kafka:7.6.0",
        port: int = 9093,
        *,
        nodes: int = 1,
        **kwargs: Any,
    ) -> None:
        self.image = image  # kept for code that reads it; nothing is pulled
        self.port = port
        self.nodes = nodes
        self.env: dict[str, str] = {}
        self.kraft_enabled = True
        self._cluster: Cluster | None = None

    # ------------------------------------------------------------ configuration

    def with_kraft(self) -> KafkaContainer:
        return self

    def with_env(self, key: str, value: str) -> KafkaContainer:
        self.env[key] = value
        return self

    def with_envs(self, **variables: str) -> KafkaContainer:
        self.env.update(variables)
        return self

    def with_exposed_ports(self, *ports: int) -> KafkaContainer:
        return self

    def with_name(self, name: str) -> KafkaContainer:
        return self

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30) -> KafkaContainer:
        if self._cluster is not None:
            return self
        from kraft.embedded.cluster import Cluster  # the node launcher loads on first start

        config = {**DEFAULT_CONFIG, **env_to_config(self.env)}
        if self.nodes > 1 and "offsets.topic.replication.factor" not in env_to_config(self.env):
            config["offsets.topic.replication.factor"] = str(min(3, self.nodes))
        cluster = Cluster(nodes=self.nodes, config=config, start_timeout=timeout)
        self._cluster = cluster.start()
        return self

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.stop()

    def __enter__(self) -> KafkaContainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ where it is

    @property
    def cluster(self) -> Cluster:
        """The kraft cluster behind it (for kraft's own API: nodes, faults, logs)."""
        if self._cluster is None:
            raise RuntimeError("KafkaContainer is not started: call start() or use `with`")
        return self._cluster

    def get_bootstrap_server(self) -> str:
        return self.cluster.bootstrap_servers

    def get_container_host_ip(self) -> str:
        return HOST

    def get_exposed_port(self, port: int) -> int:
        if int(port) != self.port:
            raise ValueError(f"port {port} is not exposed: only the Kafka port {self.port} is")
        bootstrap = self.cluster.nodes[0].bootstrap
        assert bootstrap is not None
        return int(bootstrap.rsplit(":", 1)[1])

    def get_logs(self) -> tuple[bytes, bytes]:
        """(stdout, stderr) as testcontainers returns them: the nodes' log tails as stderr."""
        return b"", self.cluster.logs(200).encode()
