"""Per-log configuration, with Kafka's topic config names and defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LONG_MAX = (1 << 63) - 1


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key."""


def _positive(v: int) -> bool:
    return v > 0


def _non_negative(v: int) -> bool:
    return v >= 0


def _retention(v: int) -> bool:
    return v >= -1


@dataclass(frozen=True, slots=True)
class LogConfig:
    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * 24 * 3600 * 1000
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    cleanup_policy: str = "delete"
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    delete_retention_ms: int = 24 * 3600 * 1000
    min_compaction_lag_ms: int = 0
    min_cleanable_dirty_ratio: float = 0.5
    max_message_bytes: int = 1048588
    message_timestamp_type: str = "CreateTime"

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy.split(",")

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy.split(",")

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    def with_overrides(self, props: Mapping[str, str]) -> LogConfig:
        """This config with Kafka-named overrides (`retention.ms`, ...) applied and checked."""
        changes: dict[str, Any] = {}
        for key, raw in props.items():
            spec = _SPECS.get(key)
            if spec is None:
                raise ConfigError(f"unknown topic config {key!r}")
            attr, kind, check, what = spec
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"invalid value {raw!r} for {key}: expected {what}") from None
            if not check(value):
                raise ConfigError(f"invalid value {raw!r} for {key}: expected {what}")
            changes[attr] = value
        return dataclasses.replace(self, **changes)

    def to_properties(self) -> dict[str, str]:
        out = {}
        for key, (attr, _, _, _) in _SPECS.items():
            value = getattr(self, attr)
            out[key] = str(value)
        return out


def _policy(v: str) -> str:
    parts = [p.strip() for p in str(v).split(",") if p.strip()]
    if not parts or any(p not in ("delete", "compact") for p in parts):
        raise ValueError(v)
    return ",".join(sorted(set(parts), key=parts.index))


def _timestamp_type(v: str) -> str:
    if v not in ("CreateTime", "LogAppendTime"):
        raise ValueError(v)
    return v


def _always(_: Any) -> bool:
    return True


# Kafka name → (attribute, parser, check, description for errors)
_SPECS: dict[str, tuple[str, Any, Any, str]] = {
    "segment.bytes": ("segment_bytes", int, lambda v: v >= 14, "an integer >= 14"),
    "segment.ms": ("segment_ms", int, _positive, "a positive integer"),
    "index.interval.bytes": ("index_interval_bytes", int, _non_negative, "an integer >= 0"),
    "retention.ms": ("retention_ms", int, _retention, "an integer >= -1"),
    "retention.bytes": ("retention_bytes", int, _retention, "an integer >= -1"),
    "cleanup.policy": ("cleanup_policy", _policy, _always, "delete, compact or both"),
    "flush.messages": ("flush_messages", int, _positive, "a positive integer"),
    "flush.ms": ("flush_ms", int, _non_negative, "an integer >= 0"),
    "delete.retention.ms": ("delete_retention_ms", int, _non_negative, "an integer >= 0"),
    "min.compaction.lag.ms": ("min_compaction_lag_ms", int, _non_negative, "an integer >= 0"),
    "min.cleanable.dirty.ratio": (
        "min_cleanable_dirty_ratio",
        float,
        lambda v: 0.0 <= v <= 1.0,
        "a number in [0, 1]",
    ),
    "max.message.bytes": ("max_message_bytes", int, _non_negative, "an integer >= 0"),
    "message.timestamp.type": (
        "message_timestamp_type",
        _timestamp_type,
        _always,
        "CreateTime or LogAppendTime",
    ),
}

TOPIC_CONFIG_KEYS = frozenset(_SPECS)
