"""The node façade's views: plain frozen dataclasses of what one node knows (see
`kraft.node_api`, which builds them and re-exports them). A view is a snapshot taken when the
call is made; nothing in it changes afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field

from kraft.cluster_groups import TopicPartition


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    epoch: int
    rack: str | None
    fenced: bool
    in_controlled_shutdown: bool
    # Listener name → "host:port" as registered (what clients and peers are told to dial).
    endpoints: dict[str, str]
    # "registered" (unfenced, serving), "maintenance" (serving as a follower, leading only
    # what no other replica can), "fenced" or "controlled_shutdown".
    state: str = "registered"
    in_maintenance: bool = False
    leaderships: int = 0  # partitions it leads now


@dataclass(frozen=True, slots=True)
class VoterInfo:
    node_id: int
    # The leader's view of the voter's log end and its lag in entries; None off the leader.
    log_end_offset: int | None
    lag: int | None
    connected: bool
    last_heard_ms: int | None


@dataclass(frozen=True, slots=True)
class QuorumInfo:
    node_id: int  # the node this view was taken on
    leader_id: int | None
    term: int
    is_leader: bool
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    voters: list[VoterInfo]


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    broker_id: int
    in_isr: bool
    eligible: bool  # in the ELR (KIP-966): may be elected although out of the ISR
    # Known on the leader only (None elsewhere): the follower's log end offset, how many
    # offsets it is behind the leader's log end, and how long ago it was last caught up.
    log_end_offset: int | None = None
    lag: int | None = None
    caught_up_ms_ago: int | None = None


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    topic: str
    partition: int
    leader: int  # -1: offline
    leader_epoch: int
    partition_epoch: int
    replicas: list[int]
    isr: list[int]
    elr: list[int]
    last_known_elr: list[int]
    offline: bool
    under_replicated: bool
    under_min_isr: bool
    # From the log hosted on this node (None when this node holds no replica). On the leader
    # these are the partition's; on a follower, its own copy's.
    hosted_here: bool = False
    log_start_offset: int | None = None
    log_end_offset: int | None = None
    high_watermark: int | None = None
    replica_states: list[ReplicaInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: str
    internal: bool
    partitions: int
    replication_factor: int
    configs: dict[str, str]  # the topic's overrides; defaults come from the broker config
    offline_partitions: int
    under_replicated_partitions: int


@dataclass(frozen=True, slots=True)
class TopicDetail:
    topic: TopicInfo
    partitions: list[PartitionInfo]


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: str
    node_id: int  # the node this view was taken on
    controller_id: int | None  # the active controller, as this node knows it
    brokers: list[BrokerInfo]
    topics: int
    partitions: int
    offline_partitions: int
    under_replicated_partitions: int
    under_min_isr_partitions: int
    metadata_offset: int


@dataclass(frozen=True, slots=True)
class ConfigView:
    """One config of a topic: its value, where it comes from and what it is without the
    topic's own override."""

    name: str
    value: str
    source: str  # DYNAMIC_TOPIC_CONFIG (the topic's override), STATIC_BROKER_CONFIG, DEFAULT_CONFIG
    is_default: bool
    read_only: bool
    default: str | None


@dataclass(frozen=True, slots=True)
class TopicDescription:
    topic: TopicInfo
    partitions: list[PartitionInfo]
    configs: list[ConfigView]


@dataclass(frozen=True, slots=True)
class ClusterOverview:
    """The cluster at a glance, with what is wrong with it (`reasons`, empty when healthy)."""

    cluster_id: str
    node_id: int
    controller_id: int | None
    quorum: QuorumInfo | None  # None on broker-only nodes (not quorum members)
    brokers: list[BrokerInfo]
    topics: int
    partitions: int
    under_replicated: list[TopicPartition]
    under_min_isr: list[TopicPartition]
    offline: list[TopicPartition]  # no leader and no live replica to elect
    leaderless: list[TopicPartition]  # no leader at the moment
    is_healthy: bool
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class Health:
    """Liveness is the process answering at all; readiness is this node doing its job."""

    node_id: int
    ready: bool
    roles: list[str]
    # Why the node is not ready (empty when ready), in words an operator can act on.
    reasons: list[str]
    broker_registered: bool
    broker_fenced: bool | None  # None: not a broker
    controller_id: int | None
    offline_partitions: int
    under_replicated_partitions: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the controller (or coordinator) answered for one item of a write."""

    name: str
    error: str | None = None  # Kafka's error name (e.g. TOPIC_ALREADY_EXISTS); None = done
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
