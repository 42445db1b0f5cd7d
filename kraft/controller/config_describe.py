"""Effective configs with their sources and synonyms, as DescribeConfigs reports them.

One description serves the DescribeConfigs handler and the node façade (HTTP admin API,
CLI), so both tell the same story: a topic key's value is its dynamic override if the topic
has one, else the broker's default (named by its broker-level synonym, e.g.
`log.retention.ms` for `retention.ms`); broker keys are this node's static config, plus the
one dynamic broker config, kraft's `kraft.maintenance.mode` (from the metadata image).

Sources are Kafka's DescribeConfigs ConfigSource numbers; config types are its ConfigType
numbers (DescribeConfigs v3+).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from kraft.config import NodeConfig
from kraft.controller.topic_configs import BROKER_SYNONYMS, broker_topic_defaults
from kraft.metadata.image import MAINTENANCE_KEY, MetadataImage

DYNAMIC_TOPIC_CONFIG = 1
DYNAMIC_BROKER_CONFIG = 2
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
SOURCE_NAMES = {
    DYNAMIC_TOPIC_CONFIG: "DYNAMIC_TOPIC_CONFIG",
    DYNAMIC_BROKER_CONFIG: "DYNAMIC_BROKER_CONFIG",
    STATIC_BROKER_CONFIG: "STATIC_BROKER_CONFIG",
    DEFAULT_CONFIG: "DEFAULT_CONFIG",
}

# ConfigType: 1 boolean, 2 string, 3 int, 5 long, 6 double, 7 list.
BOOLEAN = 1
STRING = 2
LONG = 5
_TOPIC_CONFIG_TYPES = {
    "cleanup.policy": 7,
    "compression.type": STRING,
    "message.timestamp.type": STRING,
    "unclean.leader.election.enable": 1,
    "min.cleanable.dirty.ratio": 6,
    "min.insync.replicas": 3,
    "max.message.bytes": 3,
    "segment.bytes": 3,
    "index.interval.bytes": 3,
}


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    name: str
    value: str
    source: int


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str
    source: int
    read_only: bool
    is_default: bool
    config_type: int
    synonyms: list[ConfigSynonym] = field(default_factory=list)

    @property
    def source_name(self) -> str:
        return SOURCE_NAMES.get(self.source, "UNKNOWN")


def topic_defaults(config: NodeConfig) -> dict[str, str]:
    """Every topic config key with the value a topic without an override has."""
    return broker_topic_defaults(
        config.log_config, config.min_insync_replicas, config.unclean_leader_election_enable
    )


def broker_synonym(topic_key: str) -> str:
    """The broker-level key that sets a topic key's default."""
    return BROKER_SYNONYMS.get(topic_key, "log." + topic_key)


def describe_topic_configs(
    config: NodeConfig,
    image: MetadataImage,
    topic: str,
    keys: Collection[str] | None = None,
) -> list[ConfigEntry] | None:
    """Every topic config key (or those in `keys`) with value and source; None for a topic
    the image does not know."""
    if topic not in image.topics:
        return None
    overrides = image.topic_config(topic)
    out = []
    for key, default in sorted(topic_defaults(config).items()):
        if keys is not None and key not in keys:
            continue
        dynamic = key in overrides
        synonyms = [ConfigSynonym(key, overrides[key], DYNAMIC_TOPIC_CONFIG)] if dynamic else []
        synonyms.append(ConfigSynonym(broker_synonym(key), default, DEFAULT_CONFIG))
        out.append(
            ConfigEntry(
                name=key,
                value=overrides.get(key, default),
                source=DYNAMIC_TOPIC_CONFIG if dynamic else DEFAULT_CONFIG,
                read_only=False,
                is_default=not dynamic,
                config_type=_TOPIC_CONFIG_TYPES.get(key, LONG),
                synonyms=synonyms,
            )
        )
    return out


def static_broker_configs(config: NodeConfig) -> dict[str, str]:
    """This node's static broker config as Kafka names it, topic defaults included."""
    out = {
        "node.id": str(config.node_id),
        "broker.id": str(config.node_id),
        "process.roles": ",".join(config.process_roles),
        "listeners": ",".join(str(e) for e in config.listeners),
        "advertised.listeners": ",".join(str(e) for e in config.advertised_listeners),
        "log.dirs": ",".join(config.log_dirs),
        "num.partitions": str(config.num_partitions),
        "default.replication.factor": str(config.default_replication_factor),
        "auto.create.topics.enable": str(config.auto_create_topics_enable).lower(),
        "delete.topic.enable": str(config.delete_topic_enable).lower(),
        "broker.session.timeout.ms": str(config.broker_session_timeout_ms),
        "socket.request.max.bytes": str(config.socket_request_max_bytes),
    }
    for topic_key, value in topic_defaults(config).items():
        out[broker_synonym(topic_key)] = value
    if config.broker_rack:
        out["broker.rack"] = config.broker_rack
    return out


def describe_broker_configs(
    config: NodeConfig, keys: Collection[str] | None = None, image: MetadataImage | None = None
) -> list[ConfigEntry]:
    """This node's broker configs: the static ones (read-only at run time) and, given the
    image, `kraft.maintenance.mode` (dynamic: Kafka clients check that a key they alter is
    listed as one)."""
    out = [
        ConfigEntry(
            name=key,
            value=value,
            source=STATIC_BROKER_CONFIG,
            read_only=True,
            is_default=False,
            config_type=STRING,
        )
        for key, value in sorted(static_broker_configs(config).items())
        if keys is None or key in keys
    ]
    if image is not None and (keys is None or MAINTENANCE_KEY in keys):
        value = image.broker_config(config.node_id).get(MAINTENANCE_KEY)
        out.append(
            ConfigEntry(
                name=MAINTENANCE_KEY,
                value=value if value is not None else "false",
                source=DYNAMIC_BROKER_CONFIG if value is not None else DEFAULT_CONFIG,
                read_only=False,
                is_default=value is None,
                config_type=BOOLEAN,
            )
        )
    return out
