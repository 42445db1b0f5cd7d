"""The simulated cluster's shape and timers (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

from kraft.log.config import LogConfig
from kraft.net.broker.handlers import supported_versions
from kraft.net.broker.replication import DEFAULT_FETCH_SETTINGS

TOPIC = "sim"
INDEX = 0
KEY = (TOPIC, INDEX)
BROKERS = (1, 2, 3)
CONTROLLER = 0
CLIENT = 9

FETCH_VERSION = supported_versions()[1][1]
PRODUCE_VERSION = supported_versions()[0][1]
ALTER_PARTITION_VERSION = 3
# Small segments: appends roll them and truncations cross them.
LOG_CONFIG = LogConfig(segment_bytes=4096, index_interval_bytes=256)


@dataclass(frozen=True, slots=True)
class Timing:
    """Kafka's timers, scaled down together (real defaults in comments)."""

    heartbeat_ms: int = 300  # broker.heartbeat.interval.ms 2000
    fenced_heartbeat_ms: int = 100  # as BrokerLifecycle
    session_timeout_ms: int = 1500  # broker.session.timeout.ms 9000
    session_check_ms: int = 250  # as ControllerService
    lag_ms: int = 2000  # replica.lag.time.max.ms 30000
    request_timeout_ms: int = 1000  # registration, heartbeats, metadata
    # The fetcher's max wait + 10 s.
    fetch_timeout_ms: int = DEFAULT_FETCH_SETTINGS.max_wait_ms + 2000
    alter_partition_timeout_ms: int = 3000  # FORWARD_TIMEOUT_S 30
    produce_timeout_ms: int = 3000  # request.timeout.ms 30000
    checkpoint_ms: int = 5000  # as Node
    preferred_leader_ms: int = 4000  # PREFERRED_LEADER_CHECK_S 30


@dataclass(frozen=True, slots=True)
class Plan:
    warmup_ms: int = 2000
    chaos_ms: int = 20000
    # Producing goes on this long into the recovery.
    produce_after_heal_ms: int = 1000
    recovery_ms: int = 40000
    quiet_ms: int = 3000  # a converged cluster must stay converged this long


class SimulationFailure(AssertionError):
    pass
