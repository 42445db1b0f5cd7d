"""Topic configs the cluster knows: Kafka's names, validation, and defaults by source."""

from __future__ import annotations

from collections.abc import Mapping

from kraft.log.config import TOPIC_CONFIG_KEYS, ConfigError, LogConfig

# Topic configs handled outside the log (replication, producer side).
_REPLICATION_KEYS: dict[str, tuple[type, str]] = {
    "min.insync.replicas": (int, "a positive integer"),
    "unclean.leader.election.enable": (bool, "true or false"),
    "compression.type": (str, "producer, uncompressed, gzip, snappy, lz4 or zstd"),
    "message.timestamp.before.max.ms": (int, "an integer >= 0"),
    "message.timestamp.after.max.ms": (int, "an integer >= 0"),
}
_COMPRESSION = {"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"}

ALL_TOPIC_CONFIG_KEYS = frozenset(TOPIC_CONFIG_KEYS | set(_REPLICATION_KEYS))

# Broker-level names of topic configs (the `log.*` defaults), for DescribeConfigs synonyms.
BROKER_SYNONYMS = {
    "segment.bytes": "log.segment.bytes",
    "segment.ms": "log.roll.ms",
    "retention.ms": "log.retention.ms",
    "retention.bytes": "log.retention.bytes",
    "cleanup.policy": "log.cleanup.policy",
    "max.message.bytes": "message.max.bytes",
    "min.insync.replicas": "min.insync.replicas",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
}


def validate_topic_configs(configs: Mapping[str, str | None]) -> None:
    """Raise ConfigError (naming the key) for an unknown key or an invalid value."""
    log_part: dict[str, str] = {}
    for key, value in configs.items():
        if value is None:
            if key not in ALL_TOPIC_CONFIG_KEYS:
                raise ConfigError(f"unknown topic config {key!r}")
            continue
        if key in TOPIC_CONFIG_KEYS:
            log_part[key] = value
            continue
        spec = _REPLICATION_KEYS.get(key)
        if spec is None:
            raise ConfigError(f"unknown topic config {key!r}")
        kind, what = spec
        ok = True
        if kind is int:
            ok = value.lstrip("-").isdigit() and int(value) >= (
                1 if key == "min.insync.replicas" else 0
            )
        elif kind is bool:
            ok = value.lower() in ("true", "false")
        elif key == "compression.type":
            ok = value in _COMPRESSION
        if not ok:
            raise ConfigError(f"invalid value {value!r} for {key}: expected {what}")
    LogConfig().with_overrides(log_part)


def broker_topic_defaults(
    log_config: LogConfig, min_insync_replicas: int, unclean_leader_election: bool
) -> dict[str, str]:
    """Every topic config's default as this broker would apply it."""
    out = log_config.to_properties()
    out["min.insync.replicas"] = str(min_insync_replicas)
    out["unclean.leader.election.enable"] = str(unclean_leader_election).lower()
    out["compression.type"] = "producer"
    out["message.timestamp.before.max.ms"] = str((1 << 63) - 1)
    out["message.timestamp.after.max.ms"] = str((1 << 63) - 1)
    return out


def log_config_for(base: LogConfig, topic_configs: Mapping[str, str]) -> LogConfig:
    return base.with_overrides({k: v for k, v in topic_configs.items() if k in TOPIC_CONFIG_KEYS})
