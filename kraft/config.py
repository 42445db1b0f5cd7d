"""Node configuration from a `server.properties`-style file, with Kafka's key names.

No key is accepted silently unless it is honoured: unknown keys, and known Kafka keys that have
no effect here, are warned about at start-up (a Kafka config often carries keys for features a
node does not have); a known key with an invalid value stops start-up with a message naming
the key. A listener is served only with a security protocol in `SERVABLE_PROTOCOLS`: PLAINTEXT,
SSL (its `ssl.*` keys honoured by `kraft.security.tls`) and SASL_PLAINTEXT (the SASL keys
`kraft.security.sasl` honours); a listener mapped to another (SASL_SSL, by name or through
`listener.security.protocol.map`), other `sasl.*` keys, `authorizer.class.name`, `super.users`
and their kin stop start-up, since serving them without the security they ask for would
mislead.

Listeners are Kafka's: any number of named listeners, each mapped to a security protocol by
`listener.security.protocol.map` (without it, Kafka's default map: each protocol name to
itself, and the controller listeners to PLAINTEXT); `inter.broker.listener.name` or
`security.inter.broker.protocol` (one of them, as in Kafka) names the listener brokers dial
each other on; `controller.listener.names` the controller's own.

The quorum. `controller.quorum.voters` (`id@host:port,...`) names each controller's CONTROLLER
listener, as in Kafka. The Raft traffic does not ride that listener yet: each voter's Raft
transport listens on its CONTROLLER port + RAFT_PORT_OFFSET (minus it past port 65535), bound
on the CONTROLLER listener's host, and the others dial the voter's host at that derived port.
This is an interim step until the Raft messages are carried on the controller listener itself.
kraft's earlier form stays accepted: with `controller.quorum.bootstrap.servers` given,
`controller.quorum.voters` names the voters' Raft transports and the bootstrap servers their
CONTROLLER listeners. The Raft links are authenticated with `kraft.cluster.secret`, or, when it
is absent, with the cluster id (from `meta.properties`): then anyone who knows the cluster id
(it is no secret: clients see it in Metadata) and reaches a controller's Raft port can join the
quorum's links, so keep the Raft ports on a trusted network or set `kraft.cluster.secret`.

Per-peer addresses (so a proxy can sit on each directed link between nodes)::

    kraft.peer.broker.<id>.address=host:port      broker <id>'s inter-broker listener
                                                  (replication fetches)
    kraft.peer.controller.<id>.address=host:port  controller <id>'s CONTROLLER listener; when
                                                  given (for every voter), the controllers this
                                                  node dials instead of
                                                  controller.quorum.bootstrap.servers
    kraft.peer.raft.<id>.address=host:port        voter <id>'s Raft transport, instead of its
                                                  controller.quorum.voters entry

Each is the address this node dials for that peer; the peer binds what its own config says.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kraft.log.config import LogConfig

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """An invalid node configuration; the message names the key."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    listener: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.listener}://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Voter:
    node_id: int
    host: str
    port: int


# Interim: a voter's Raft transport listens on its CONTROLLER listener's port plus this.
RAFT_PORT_OFFSET = 100


def derived_raft_port(controller_port: int) -> int:
    """The Raft transport port of a voter whose CONTROLLER listener is on `controller_port`."""
    up = controller_port + RAFT_PORT_OFFSET
    return up if up <= 65535 else controller_port - RAFT_PORT_OFFSET


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: int
    process_roles: tuple[str, ...]
    listeners: tuple[Endpoint, ...]
    advertised_listeners: tuple[Endpoint, ...]
    log_dirs: tuple[str, ...]
    controller_quorum_voters: tuple[Voter, ...] = ()
    # Where the controllers' CONTROLLER listeners are (KIP-853's key); the voters' addresses
    # are their Raft transports.
    controller_quorum_bootstrap_servers: tuple[tuple[str, int], ...] = ()
    controller_listener_names: tuple[str, ...] = ("CONTROLLER",)
    inter_broker_listener_name: str = "PLAINTEXT"
    # Listener name → security protocol, for every listener (the effective map; see
    # effective_protocol_map).
    listener_security_protocol_map: Mapping[str, str] = field(default_factory=dict)
    # Where the metadata log (and the quorum's journal) lives; "" = the first of log.dirs.
    metadata_log_dir: str = ""
    admin_listener: Endpoint | None = None
    # With a token, the admin API's writes need it as a bearer token (reads stay open).
    admin_auth_token: str = ""
    cluster_id: str = ""
    cluster_secret: str = ""
    broker_rack: str | None = None
    num_partitions: int = 1
    default_replication_factor: int = 1
    min_insync_replicas: int = 1
    auto_create_topics_enable: bool = True
    delete_topic_enable: bool = True
    unclean_leader_election_enable: bool = False
    broker_session_timeout_ms: int = 9000
    broker_heartbeat_interval_ms: int = 2000
    controller_quorum_fetch_timeout_ms: int = 2000
    controller_quorum_election_timeout_ms: int = 1000
    replica_lag_time_max_ms: int = 30000
    replica_fetch_wait_max_ms: int = 500
    replica_fetch_max_bytes: int = 1048576
    socket_request_max_bytes: int = 100 * 1024 * 1024
    message_max_bytes: int = 1048588
    offsets_topic_num_partitions: int = 50
    offsets_topic_replication_factor: int = 3
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600000
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_max_size: int = 2**31 - 1
    # KIP-848 consumer groups (group.protocol=consumer).
    group_consumer_session_timeout_ms: int = 45000
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_max_size: int = 2**31 - 1
    group_consumer_assignors: tuple[str, ...] = ("uniform", "range")
    offsets_commit_timeout_ms: int = 5000
    offsets_topic_segment_bytes: int = 100 * 1024 * 1024
    offset_metadata_max_bytes: int = 4096
    transactional_id_expiration_ms: int = 604800000
    producer_id_expiration_ms: int = 86400000
    log_retention_check_interval_ms: int = 300000
    log_flush_scheduler_interval_ms: int = 2**63 - 1
    log_cleaner_backoff_ms: int = 15000
    producer_id_expiration_check_interval_ms: int = 600000
    # (peer kind, node id) → (host, port): "broker", "controller" or "raft"; see the module doc.
    peer_addresses: Mapping[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    log_config: LogConfig = field(default_factory=LogConfig)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_broker(self) -> bool:
        return "broker" in self.process_roles

    @property
    def is_controller(self) -> bool:
        return "controller" in self.process_roles

    @property
    def is_cluster(self) -> bool:
        """More than one voter: metadata lives in the Raft quorum (one voter: a local log)."""
        return len(self.controller_quorum_voters) > 1 or not self.is_controller

    def listener(self, name: str) -> Endpoint | None:
        return next((e for e in self.listeners if e.listener == name), None)

    def advertised(self, name: str) -> Endpoint | None:
        found = next((e for e in self.advertised_listeners if e.listener == name), None)
        return found or self.listener(name)

    def security_protocol(self, listener: str) -> str:
        """The security protocol of listener `listener` (PLAINTEXT, SSL, SASL_PLAINTEXT...)."""
        return self.listener_security_protocol_map[listener]

    @property
    def metadata_dir(self) -> str:
        """`metadata.log.dir`, or the first of `log.dirs` (as in Kafka)."""
        return self.metadata_log_dir or self.log_dirs[0]

    @property
    def all_log_dirs(self) -> tuple[str, ...]:
        """Every dir this node keeps data in: `log.dirs`, then `metadata.log.dir` if apart."""
        if self.metadata_dir in self.log_dirs:
            return self.log_dirs
        return (*self.log_dirs, self.metadata_dir)

    @property
    def voters_name_controller_listeners(self) -> bool:
        """Kafka's form of `controller.quorum.voters`: each voter's CONTROLLER listener (the
        Raft transport on a derived port). kraft's earlier form, recognised by
        `controller.quorum.bootstrap.servers` being given too, names the Raft transports."""
        return not self.controller_quorum_bootstrap_servers

    def controller_listener(self) -> Endpoint | None:
        """This node's (first) controller listener, as it binds it."""
        return next(
            (e for e in self.listeners if e.listener in self.controller_listener_names), None
        )

    def raft_listen_address(self) -> tuple[str, int]:
        """Where this voter's Raft transport listens."""
        own = next(v for v in self.controller_quorum_voters if v.node_id == self.node_id)
        if not self.voters_name_controller_listeners:
            return own.host, own.port
        endpoint = self.controller_listener()
        host = endpoint.host if endpoint is not None else own.host
        return host, derived_raft_port(own.port)

    def peer_address(self, kind: str, node_id: int) -> tuple[str, int] | None:
        """The address this node dials for peer `node_id` of `kind` ("broker", "controller",
        "raft") when its config overrides it, else None."""
        return self.peer_addresses.get((kind, node_id))

    def raft_voters(self) -> dict[int, tuple[str, int]]:
        """Every voter's Raft transport address as this node dials it (its own: as it binds)."""
        derive = self.voters_name_controller_listeners
        out = {}
        for v in self.controller_quorum_voters:
            port = derived_raft_port(v.port) if derive else v.port
            out[v.node_id] = self.peer_address("raft", v.node_id) or (v.host, port)
        return out

    def controller_endpoints(self) -> tuple[tuple[str, int], ...]:
        """The controllers' CONTROLLER listeners this node dials: the per-controller addresses
        (`kraft.peer.controller.<id>.address`, by id) when given, else
        `controller.quorum.bootstrap.servers`, else the voters (Kafka's form)."""
        by_id = sorted(
            (i, a) for (kind, i), a in self.peer_addresses.items() if kind == "controller"
        )
        if by_id:
            return tuple(a for _, a in by_id)
        if self.controller_quorum_bootstrap_servers:
            return self.controller_quorum_bootstrap_servers
        return tuple((v.host, v.port) for v in self.controller_quorum_voters)


# ----------------------------------------------------------------------------- parsing

_ENDPOINT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)://(\[[^\]]*\]|[^:/]*):(\d+)$")
_VOTER = re.compile(r"^(\d+)@(\[[^\]]*\]|[^:]+):(\d+)$")


def parse_properties(text: str) -> dict[str, str]:
    """Java-properties subset: `key=value` or `key: value`, `#`/`!` comments, `\\` joins."""
    out: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1]
            continue
        line = pending + line
        pending = ""
        _put(out, line)
    if pending:
        _put(out, pending)  # a continuation at the end of the file still ends the property
    return out


def _put(out: dict[str, str], line: str) -> None:
    match = re.match(r"^([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
    if match is None:
        out[line] = ""
    else:
        out[match.group(1)] = match.group(2).strip()


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(v: str) -> int:
        n = int(v)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise ValueError(f"must be within [{lo}, {hi}]")
        return n

    return parse


def _bool(v: str) -> bool:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError("must be true or false")


def _endpoints(v: str) -> tuple[Endpoint, ...]:
    out = []
    for item in (p.strip() for p in v.split(",") if p.strip()):
        m = _ENDPOINT.match(item)
        if m is None:
            raise ValueError(f"{item!r} is not NAME://host:port")
        host = m.group(2).strip("[]") or "127.0.0.1"
        port = int(m.group(3))
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        out.append(Endpoint(m.group(1).upper(), host, port))
    names = [e.listener for e in out]
    if len(set(names)) != len(names):
        raise ValueError("a listener name appears twice")
    return tuple(out)


def _voters(v: str) -> tuple[Voter, ...]:
    out = []
    for item in (p.strip() for p in v.split(",") if p.strip()):
        m = _VOTER.match(item)
        if m is None:
            raise ValueError(f"{item!r} is not id@host:port")
        out.append(Voter(int(m.group(1)), m.group(2).strip("[]"), int(m.group(3))))
    ids = [x.node_id for x in out]
    if len(set(ids)) != len(ids):
        raise ValueError("a node id appears twice")
    return tuple(out)


def _hostports(v: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in (p.strip() for p in v.split(",") if p.strip()):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"{item!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def _roles(v: str) -> tuple[str, ...]:
    roles = tuple(sorted({r.strip() for r in v.split(",") if r.strip()}))
    if not roles or any(r not in ("broker", "controller") for r in roles):
        raise ValueError("must be broker, controller or broker,controller")
    return roles


def _names(v: str) -> tuple[str, ...]:
    return tuple(p.strip().upper() for p in v.split(",") if p.strip())


def _assignors(v: str) -> tuple[str, ...]:
    """Server assignor names; Kafka's class names (…UniformAssignor) are accepted too."""
    out = []
    for part in (p.strip() for p in v.split(",")):
        if not part:
            continue
        name = part.rsplit(".", 1)[-1].removesuffix("Assignor").lower()
        if name not in ("uniform", "range"):
            raise ValueError(f"unknown consumer group assignor {part!r} (uniform, range)")
        out.append(name)
    if not out:
        raise ValueError("needs at least one assignor")
    return tuple(out)


def _dirs(v: str) -> tuple[str, ...]:
    dirs = tuple(p.strip() for p in v.split(",") if p.strip())
    if not dirs:
        raise ValueError("at least one directory is needed")
    return dirs


def _str(v: str) -> str:
    return v


def _admin(v: str) -> Endpoint | None:
    if not v:
        return None
    m = re.match(r"^(?:https?://)?(\[[^\]]*\]|[^:/]+):(\d+)/?$", v)
    if m is None:
        raise ValueError(f"{v!r} is not http://host:port")
    return Endpoint("HTTP", m.group(1).strip("[]"), int(m.group(2)))


_NODE_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "node.id": ("node_id", _int(0)),
    "broker.id": ("node_id", _int(0)),
    "process.roles": ("process_roles", _roles),
    "listeners": ("listeners", _endpoints),
    "advertised.listeners": ("advertised_listeners", _endpoints),
    "log.dirs": ("log_dirs", _dirs),
    "log.dir": ("log_dirs", _dirs),
    "controller.quorum.voters": ("controller_quorum_voters", _voters),
    "controller.listener.names": ("controller_listener_names", _names),
    "controller.quorum.bootstrap.servers": ("controller_quorum_bootstrap_servers", _hostports),
    "metadata.log.dir": ("metadata_log_dir", _str),
    "kraft.admin.listener": ("admin_listener", _admin),
    "kraft.admin.auth.token": ("admin_auth_token", _str),
    "cluster.id": ("cluster_id", _str),
    "kraft.cluster.secret": ("cluster_secret", _str),
    "broker.rack": ("broker_rack", _str),
    "num.partitions": ("num_partitions", _int(1)),
    "default.replication.factor": ("default_replication_factor", _int(1)),
    "min.insync.replicas": ("min_insync_replicas", _int(1)),
    "auto.create.topics.enable": ("auto_create_topics_enable", _bool),
    "delete.topic.enable": ("delete_topic_enable", _bool),
    "unclean.leader.election.enable": ("unclean_leader_election_enable", _bool),
    "broker.session.timeout.ms": ("broker_session_timeout_ms", _int(1)),
    "broker.heartbeat.interval.ms": ("broker_heartbeat_interval_ms", _int(1)),
    "controller.quorum.fetch.timeout.ms": ("controller_quorum_fetch_timeout_ms", _int(1)),
    "controller.quorum.election.timeout.ms": ("controller_quorum_election_timeout_ms", _int(1)),
    "replica.lag.time.max.ms": ("replica_lag_time_max_ms", _int(1)),
    "replica.fetch.wait.max.ms": ("replica_fetch_wait_max_ms", _int(0)),
    "replica.fetch.max.bytes": ("replica_fetch_max_bytes", _int(1)),
    "socket.request.max.bytes": ("socket_request_max_bytes", _int(1)),
    "message.max.bytes": ("message_max_bytes", _int(0)),
    "offsets.topic.num.partitions": ("offsets_topic_num_partitions", _int(1)),
    "offsets.topic.replication.factor": ("offsets_topic_replication_factor", _int(1)),
    "offsets.retention.minutes": ("offsets_retention_minutes", _int(1)),
    "offsets.retention.check.interval.ms": ("offsets_retention_check_interval_ms", _int(1)),
    "group.initial.rebalance.delay.ms": ("group_initial_rebalance_delay_ms", _int(0)),
    "group.min.session.timeout.ms": ("group_min_session_timeout_ms", _int(0)),
    "group.max.session.timeout.ms": ("group_max_session_timeout_ms", _int(0)),
    "group.max.size": ("group_max_size", _int(1)),
    "group.consumer.session.timeout.ms": ("group_consumer_session_timeout_ms", _int(1)),
    "group.consumer.heartbeat.interval.ms": ("group_consumer_heartbeat_interval_ms", _int(1)),
    "group.consumer.max.size": ("group_consumer_max_size", _int(1)),
    "group.consumer.assignors": ("group_consumer_assignors", _assignors),
    "offsets.commit.timeout.ms": ("offsets_commit_timeout_ms", _int(1)),
    "offsets.topic.segment.bytes": ("offsets_topic_segment_bytes", _int(1)),
    "offset.metadata.max.bytes": ("offset_metadata_max_bytes", _int(0)),
    "transactional.id.expiration.ms": ("transactional_id_expiration_ms", _int(1)),
    "producer.id.expiration.ms": ("producer_id_expiration_ms", _int(1)),
    "log.retention.check.interval.ms": ("log_retention_check_interval_ms", _int(1)),
    "log.flush.scheduler.interval.ms": ("log_flush_scheduler_interval_ms", _int(1)),
    "log.cleaner.backoff.ms": ("log_cleaner_backoff_ms", _int(0)),
    "producer.id.expiration.check.interval.ms": (
        "producer_id_expiration_check_interval_ms",
        _int(1),
    ),
}

_PEER_KEY = re.compile(r"^kraft\.peer\.(broker|controller|raft)\.(\d+)\.address$")

# Parsed keys that are not honoured yet: accepted (a value is still checked), with a warning.
_NO_EFFECT_YET = {
    "transactional.id.expiration.ms": "transactions are not implemented yet",
}

# Broker-wide log defaults (`log.*`) → topic config keys of log.config.LogConfig.
_LOG_KEYS: dict[str, tuple[str, Callable[[str], str]]] = {
    "log.segment.bytes": ("segment.bytes", str),
    "log.roll.ms": ("segment.ms", str),
    "log.roll.hours": ("segment.ms", lambda v: str(int(v) * 3600_000)),
    "log.index.interval.bytes": ("index.interval.bytes", str),
    "log.retention.ms": ("retention.ms", str),
    "log.retention.minutes": ("retention.ms", lambda v: str(int(v) * 60_000)),
    "log.retention.hours": ("retention.ms", lambda v: str(int(v) * 3600_000)),
    "log.retention.bytes": ("retention.bytes", str),
    "log.cleanup.policy": ("cleanup.policy", str),
    "log.flush.interval.messages": ("flush.messages", str),
    "log.flush.interval.ms": ("flush.ms", str),
    "log.cleaner.delete.retention.ms": ("delete.retention.ms", str),
    "log.cleaner.min.compaction.lag.ms": ("min.compaction.lag.ms", str),
    "log.cleaner.min.cleanable.ratio": ("min.cleanable.dirty.ratio", str),
    "log.message.timestamp.type": ("message.timestamp.type", str),
    "message.max.bytes": ("max.message.bytes", str),
}
# More specific keys win (ms over minutes over hours), as in Kafka.
_LOG_KEY_ORDER = sorted(_LOG_KEYS, key=lambda k: (k.endswith(".hours"), k.endswith(".minutes")))
_LOG_KEY_PRIORITY = {k: i for i, k in enumerate(reversed(_LOG_KEY_ORDER))}

# Kafka keys with no counterpart here, accepted with a warning saying why (a Kafka user's file
# often carries them).
_NOT_APPLICABLE = {
    "num.network.threads": "a node serves its connections from one event loop",
    "num.io.threads": "a node serves its requests from one event loop",
    "num.recovery.threads.per.data.dir": "logs are recovered on the event loop's thread",
    "socket.send.buffer.bytes": "the operating system's socket buffer sizes are used",
    "socket.receive.buffer.bytes": "the operating system's socket buffer sizes are used",
    "transaction.state.log.replication.factor": "transactions are not implemented yet",
    "transaction.state.log.min.isr": "transactions are not implemented yet",
    "group.coordinator.rebalance.protocols": "both the classic and the consumer protocol "
    "are always served",
}

# Kafka's security protocols (SecurityProtocol), each a listener may be mapped to.
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The protocols kraft serves: a listener mapped to any other stops start-up rather than be
# served as plaintext without authentication. The TLS and SASL work extends this one set.
SERVABLE_PROTOCOLS: frozenset[str] = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT"})
SECURE_PROTOCOLS = tuple(p for p in PROTOCOLS if p != "PLAINTEXT")
_PROTOCOLS = PROTOCOLS
# Security keys, until security is implemented: these stop start-up rather than be served as
# plaintext without authentication or authorization.
_SASL_KEYS = frozenset({"sasl.enabled.mechanisms", "connections.max.reauth.ms"})
_SECURITY_KEYS = frozenset(
    {
        "authorizer.class.name",
        "super.users",
        "allow.everyone.if.no.acl.found",
        "principal.builder.class",
        "security.inter.broker.protocol",
    }
)
_SECURITY_PREFIXES = ("sasl.", "delegation.token.")
# Checked by _refuse_security: accepted only when they ask for a servable protocol.
_SECURITY_CHECKED = frozenset(
    {
        "listener.security.protocol.map",
        "security.inter.broker.protocol",
        "inter.broker.listener.name",
    }
)


def _is_security_key(key: str, value: str) -> bool:
    if key == "security.inter.broker.protocol":
        return value.strip().upper() not in SERVABLE_PROTOCOLS
    if key.startswith("listener.name."):
        # Per-listener overrides: listener.name.<l>.ssl.* are TLS's, listener.name.<l>.<mech>.
        # sasl.* SASL's; each refuses at start-up what it cannot honour.
        return False
    if key in _SASL_KEYS:
        return False
    return key in _SECURITY_KEYS or key.startswith(_SECURITY_PREFIXES)


def _is_tls_key(key: str) -> bool:
    """`ssl.*` and `listener.name.<l>.ssl.*`: checked by kraft.security.tls at start-up."""
    return key.startswith("ssl.") or (key.startswith("listener.name.") and ".ssl." in key)


def _protocol_map(v: str) -> dict[str, str]:
    out = {}
    for item in (p.strip() for p in v.split(",") if p.strip()):
        name, sep, protocol = item.partition(":")
        protocol = protocol.strip().upper()
        if not sep or not name.strip() or protocol not in _PROTOCOLS:
            raise ValueError(f"{item!r} is not LISTENER:{'|'.join(_PROTOCOLS)}")
        out[name.strip().upper()] = protocol
    return out


def effective_protocol_map(
    props: Mapping[str, str], listeners: tuple[Endpoint, ...], controller_names: tuple[str, ...]
) -> dict[str, str]:
    """Every listener's security protocol, as Kafka resolves it: from
    `listener.security.protocol.map` when given (every listener must be in it), else Kafka's
    default map (each protocol name to itself) with the controller listeners as PLAINTEXT."""
    raw = props.get("listener.security.protocol.map", "").strip()
    try:
        mapping = _protocol_map(raw)
    except ValueError as e:
        raise ConfigError(
            f"invalid value {raw!r} for listener.security.protocol.map: {e}"
        ) from None
    if not raw:
        mapping = {p: p for p in PROTOCOLS}
        mapping.update({n: "PLAINTEXT" for n in controller_names if n not in mapping})
    for endpoint in listeners:
        if endpoint.listener not in mapping:
            key = "listener.security.protocol.map" if raw else "listeners"
            raise ConfigError(
                f"{key}: no security protocol defined for listener {endpoint.listener} (map it "
                f"in listener.security.protocol.map to one of {', '.join(PROTOCOLS)})"
            )
    return {e.listener: mapping[e.listener] for e in listeners}


def _refuse_security(
    props: Mapping[str, str], listeners: tuple[Endpoint, ...], protocols: Mapping[str, str]
) -> None:
    """ConfigError naming every listener and key that asks for security kraft cannot serve.
    Protocol map entries of listeners that do not exist ask for nothing (Kafka's stock config
    maps all four protocols)."""
    named: list[str] = []
    mapped = bool(props.get("listener.security.protocol.map", "").strip())
    for endpoint in listeners:
        protocol = protocols[endpoint.listener]
        if protocol in SERVABLE_PROTOCOLS:
            continue
        if mapped and endpoint.listener != protocol:
            named.append(
                f"listener {endpoint} (listener.security.protocol.map entry "
                f"{endpoint.listener}:{protocol})"
            )
        else:
            named.append(f"listener {endpoint}")
    named += sorted(k for k, v in props.items() if v.strip() and _is_security_key(k, v))
    if named:
        raise ConfigError(
            "SASL_SSL, the other SASL settings named and authorization are not implemented "
            "yet, and kraft will not serve them without the security they ask for: remove "
            + ", ".join(named)
        )


def _inter_broker_listener(props: Mapping[str, str]) -> str:
    """`inter.broker.listener.name`, or the listener named as `security.inter.broker.protocol`
    (Kafka's ListenerName.forSecurityProtocol), or PLAINTEXT; not both keys, as in Kafka."""
    name = props.get("inter.broker.listener.name", "").strip()
    protocol = props.get("security.inter.broker.protocol", "").strip()
    if name and protocol:
        raise ConfigError(
            "inter.broker.listener.name and security.inter.broker.protocol: only one of them "
            "may be set"
        )
    if protocol:
        if protocol.upper() not in PROTOCOLS:
            raise ConfigError(
                f"invalid value {protocol!r} for security.inter.broker.protocol: not one of "
                + ", ".join(PROTOCOLS)
            )
        return protocol.upper()
    return name.upper() or "PLAINTEXT"


def _peer_address(v: str) -> tuple[str, int]:
    found = _hostports(v)
    if len(found) != 1:
        raise ValueError("expected one host:port")
    host, port = found[0]
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, port


def build_config(props: Mapping[str, str]) -> NodeConfig:
    values: dict[str, Any] = {}
    log_props: dict[str, str] = {}
    log_sources: dict[str, str] = {}
    extra: dict[str, str] = {}
    peers: dict[tuple[str, int], tuple[str, int]] = {}
    if "node.id" in props and "broker.id" in props and props["node.id"] != props["broker.id"]:
        raise ConfigError(
            f"node.id ({props['node.id']}) and broker.id ({props['broker.id']}) disagree"
        )
    for key, raw in props.items():
        if key in _NODE_KEYS:
            attr, parse = _NODE_KEYS[key]
            try:
                values[attr] = parse(raw.strip())
            except ValueError as e:
                raise ConfigError(f"invalid value {raw!r} for {key}: {e}") from None
        if key in _LOG_KEYS:
            topic_key, convert = _LOG_KEYS[key]
            try:
                converted = convert(raw.strip())
            except ValueError as e:
                raise ConfigError(f"invalid value {raw!r} for {key}: {e}") from None
            previous = log_sources.get(topic_key)
            if previous is None or _LOG_KEY_PRIORITY[key] > _LOG_KEY_PRIORITY[previous]:
                log_props[topic_key] = converted
                log_sources[topic_key] = key
        peer = _PEER_KEY.match(key)
        if peer is not None:
            try:
                peers[(peer.group(1), int(peer.group(2)))] = _peer_address(raw.strip())
            except ValueError as e:
                raise ConfigError(f"invalid value {raw!r} for {key}: {e}") from None
        elif key not in _NODE_KEYS and key not in _LOG_KEYS:
            if key in _NOT_APPLICABLE:
                logger.warning("config key %s has no effect: %s", key, _NOT_APPLICABLE[key])
            elif key in _SECURITY_CHECKED or (_is_security_key(key, raw) and raw.strip()):
                pass  # honoured (servable) or refused by _refuse_security below
            elif _is_tls_key(key):
                pass  # honoured, or refused at start-up, by kraft.security.tls
            elif key in _SASL_KEYS or (key.startswith("listener.name.") and ".sasl." in key):
                pass  # honoured, or refused, by kraft.security.sasl (check_sasl below)
            else:
                logger.warning("unknown config key %s ignored", key)
            extra[key] = raw
        if key in _NO_EFFECT_YET:
            logger.warning("config key %s has no effect: %s", key, _NO_EFFECT_YET[key])
    for required in ("node_id", "listeners", "log_dirs"):
        if required not in values:
            name = {"node_id": "node.id", "listeners": "listeners", "log_dirs": "log.dirs"}
            raise ConfigError(f"missing required key {name[required]}")
    controller_names = values.get("controller_listener_names", ("CONTROLLER",))
    bound = {e.listener for e in values["listeners"]}
    if "controller" in values.get("process_roles", ("controller",)) and not any(
        n in bound for n in controller_names
    ):
        raise ConfigError(
            f"controller.listener.names: none of {','.join(controller_names)} is in listeners"
        )
    protocols = effective_protocol_map(props, values["listeners"], controller_names)
    _refuse_security(props, values["listeners"], protocols)
    values["listener_security_protocol_map"] = protocols
    values["inter_broker_listener_name"] = _inter_broker_listener(props)
    values.setdefault("process_roles", ("broker", "controller"))
    values.setdefault("advertised_listeners", ())
    for topic_key, value in log_props.items():
        try:
            LogConfig().with_overrides({topic_key: value})
        except ValueError as e:
            raise ConfigError(f"{log_sources[topic_key]}: {e}") from None
    values["log_config"] = LogConfig().with_overrides(log_props)
    values["extra"] = extra
    values["peer_addresses"] = peers
    config = NodeConfig(**values)
    _check(config)
    from kraft.security.sasl_config import check_sasl  # it reads NodeConfig: imported here

    check_sasl(config)
    return config


def _check(config: NodeConfig) -> None:
    names = {e.listener for e in config.listeners}
    for adv in config.advertised_listeners:
        if adv.listener not in names:
            raise ConfigError(f"advertised.listeners: {adv.listener} is not in listeners")
        if adv.host in ("0.0.0.0", "::", ""):
            raise ConfigError(f"advertised.listeners: {adv} is not an address clients can dial")
    inter_broker = config.inter_broker_listener_name
    if config.is_broker and inter_broker not in names:
        raise ConfigError(f"inter.broker.listener.name: {inter_broker} is not in listeners")
    if config.is_broker and inter_broker in config.controller_listener_names:
        raise ConfigError(
            f"controller.listener.names: must not contain the inter-broker listener "
            f"{inter_broker} (inter.broker.listener.name)"
        )
    if config.is_broker and not any(n not in config.controller_listener_names for n in names):
        raise ConfigError("listeners: a broker needs a listener besides controller.listener.names")
    if config.is_controller:
        ids = {v.node_id for v in config.controller_quorum_voters}
        if not config.controller_quorum_voters:
            raise ConfigError(
                "controller.quorum.voters: required when process.roles has controller"
            )
        if config.node_id not in ids:
            raise ConfigError(
                f"controller.quorum.voters: does not contain this node's id {config.node_id}"
            )
        if not any(n in names for n in config.controller_listener_names):
            raise ConfigError(
                "controller.listener.names: none of "
                f"{','.join(config.controller_listener_names)} is in listeners"
            )
    _check_peers(config)
    if not config.is_controller and not config.controller_endpoints():
        raise ConfigError(
            "controller.quorum.bootstrap.servers: required when process.roles=broker, unless "
            "controller.quorum.voters names the controllers (their CONTROLLER listener "
            "addresses: where the broker registers and fetches the metadata)"
        )
    if config.is_controller and config.is_cluster and config.voters_name_controller_listeners:
        _check_own_voter(config)
    if not config.is_broker and not config.is_cluster:
        # A single voter keeps the metadata in a local log no other node can read.
        raise ConfigError(
            "controller.quorum.voters: a controller-only node (process.roles=controller) "
            "needs more than one voter"
        )


def _check_own_voter(config: NodeConfig) -> None:
    """In Kafka's form the others derive this voter's Raft port from its entry: the entry
    must name this node's CONTROLLER listener (as bound or advertised)."""
    own = next(v for v in config.controller_quorum_voters if v.node_id == config.node_id)
    ports = {
        e.port
        for e in (*config.listeners, *config.advertised_listeners)
        if e.listener in config.controller_listener_names
    }
    if own.port not in ports:
        raise ConfigError(
            f"controller.quorum.voters: this node's entry {own.node_id}@{own.host}:{own.port} "
            f"does not name its CONTROLLER listener (port {', '.join(map(str, sorted(ports)))}); "
            "name each controller's CONTROLLER listener, or give "
            "controller.quorum.bootstrap.servers for kraft's earlier form (the voters' Raft "
            "transports)"
        )


def _check_peers(config: NodeConfig) -> None:
    voters = {v.node_id for v in config.controller_quorum_voters}
    controllers = set()
    for kind, node_id in config.peer_addresses:
        key = f"kraft.peer.{kind}.{node_id}.address"
        if kind == "raft" and node_id not in voters:
            raise ConfigError(f"{key}: {node_id} is not in controller.quorum.voters")
        if kind == "raft" and node_id == config.node_id:
            raise ConfigError(f"{key}: this node binds its own controller.quorum.voters entry")
        if kind == "controller":
            if voters and node_id not in voters:
                raise ConfigError(f"{key}: {node_id} is not in controller.quorum.voters")
            controllers.add(node_id)
    if controllers and voters and controllers != voters:
        # The addresses replace the bootstrap list: a missing one would be a controller this
        # node never reaches.
        missing = ", ".join(
            f"kraft.peer.controller.{i}.address" for i in sorted(voters - controllers)
        )
        raise ConfigError(f"{missing}: needed, as the other controllers' addresses are given")


def load_config(path: str, overrides: Mapping[str, str] | None = None) -> NodeConfig:
    try:
        with open(path, encoding="utf-8") as f:
            props = parse_properties(f.read())
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    props.update(overrides or {})
    return build_config(props)
