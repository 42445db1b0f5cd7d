"""Request handlers by API family, and the API versions this broker advertises.

Each handler is `async (context, header, request, conn) -> response | None`, where the
context is the narrow interface of `context.py` its family needs; `KafkaApis`
(`net.broker.apis`) dispatches and implements them all. Nothing here imports the broker."""

from __future__ import annotations

from typing import Any

from kraft.net.protocol import API_KEYS

from . import admin, consumer_groups, fetch, groups, metadata, produce, sasl
from .api_versions import handle_api_versions

# api key → (handler, lowest version advertised). The lowest versions are Kafka 4.0's
# (KIP-896 removed the oldest versions of several APIs; Produce stays from v0). The highest
# is the newest version in the protocol definitions.
_TABLE: dict[int, tuple[Any, int]] = {
    0: (produce.handle_produce, 0),
    1: (fetch.handle_fetch, 4),
    2: (fetch.handle_list_offsets, 1),
    3: (metadata.handle_metadata, 0),
    8: (groups.handle_offset_commit, 2),
    9: (groups.handle_offset_fetch, 1),
    10: (groups.handle_find_coordinator, 0),
    11: (groups.handle_join_group, 0),
    12: (groups.handle_heartbeat, 0),
    13: (groups.handle_leave_group, 0),
    14: (groups.handle_sync_group, 0),
    15: (groups.handle_describe_groups, 0),
    16: (groups.handle_list_groups, 0),
    17: (sasl.handle_sasl_handshake, 0),
    18: (handle_api_versions, 0),
    19: (admin.handle_forwarded, 2),
    20: (admin.handle_forwarded, 1),
    22: (produce.handle_init_producer_id, 0),
    23: (fetch.handle_offset_for_leader_epoch, 2),
    32: (admin.handle_describe_configs, 1),
    33: (admin.handle_forwarded, 0),
    36: (sasl.handle_sasl_authenticate, 0),
    37: (admin.handle_forwarded, 0),
    42: (groups.handle_delete_groups, 0),
    43: (admin.handle_forwarded, 0),
    44: (admin.handle_forwarded, 0),
    47: (groups.handle_offset_delete, 0),
    50: (sasl.handle_describe_user_scram_credentials, 0),
    51: (admin.handle_forwarded, 0),
    55: (metadata.handle_describe_quorum, 0),
    60: (metadata.handle_describe_cluster, 0),
    68: (consumer_groups.handle_consumer_group_heartbeat, 0),
    69: (consumer_groups.handle_consumer_group_describe, 0),
}
# Versions advertised although the definitions (Kafka's 4.0 development line) still mark
# them unstable: ConsumerGroupHeartbeat v1 (regex subscriptions, member ids the clients
# make, KIP-1082) is the stable version of Kafka 4.0, and what librdkafka asks for.
_STABLE_SINCE_DEFINITIONS = {68: 1}

HANDLERS = {key: handler for key, (handler, _) in _TABLE.items()}


def supported_versions() -> dict[int, tuple[int, int]]:
    out = {}
    for key, (_, low) in _TABLE.items():
        info = API_KEYS[key]
        # A version Kafka marks unstable is still in development: never advertised.
        high = info.max_version - 1 if info.latest_version_unstable else info.max_version
        high = max(high, _STABLE_SINCE_DEFINITIONS.get(key, high))
        out[key] = (low, high)
    return out
