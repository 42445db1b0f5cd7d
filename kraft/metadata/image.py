"""The metadata image: cluster state built by applying KRaft metadata records in order.

Pure and deterministic: the same records give the same image on every node, so controllers
and brokers agree. `apply` is the only mutator. Records are the generated classes of
`net.protocol` (Kafka's own record types: RegisterBrokerRecord, TopicRecord, ...).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kraft.net.protocol import _generated as m
from kraft.security.scram import MECHANISM_TYPES, ScramCredential

logger = logging.getLogger(__name__)

TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4
NO_LEADER = -1
LEADER_UNCHANGED = -2
# kraft's maintenance mode of a broker (Redpanda's sense): a dynamic config of the broker,
# "true" while it is in maintenance. A config, not a field of the registration, so that it
# stays across the broker's restarts (a new registration) until it is taken out.
MAINTENANCE_KEY = "kraft.maintenance.mode"


@dataclass(slots=True)
class BrokerRegistration:
    broker_id: int
    epoch: int
    incarnation_id: uuid.UUID
    endpoints: dict[str, tuple[str, int]]
    rack: str | None
    fenced: bool = True
    in_controlled_shutdown: bool = False


@dataclass(slots=True)
class PartitionState:
    replicas: list[int]
    isr: list[int]
    leader: int
    leader_epoch: int
    partition_epoch: int
    eligible_leader_replicas: list[int] = field(default_factory=list)
    last_known_elr: list[int] = field(default_factory=list)
    leader_recovery_state: int = 0


@dataclass(slots=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: dict[int, PartitionState] = field(default_factory=dict)


class MetadataImage:
    def __init__(self) -> None:
        self.brokers: dict[int, BrokerRegistration] = {}
        self.topics: dict[str, TopicImage] = {}
        self.topics_by_id: dict[uuid.UUID, TopicImage] = {}
        # (resource type, resource name) → {config key: value}; name "" = cluster default.
        self.configs: dict[tuple[int, str], dict[str, str]] = {}
        self.next_producer_id = 0
        self.features: dict[str, int] = {}
        # (user, SCRAM mechanism type) → its salted credential (KIP-554).
        self.scram_credentials: dict[tuple[str, int], m.UserScramCredentialRecord] = {}
        self.last_offset = -1

    def copy(self) -> MetadataImage:
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ apply

    def apply(self, record: m.Message, offset: int | None = None) -> None:
        handler = _HANDLERS.get(type(record))
        if handler is None:
            logger.debug("metadata record %s has no effect on the image", type(record).__name__)
        else:
            handler(self, record)
        if offset is not None:
            self.last_offset = offset

    def _register_broker(self, r: m.RegisterBrokerRecord) -> None:
        self.brokers[r.broker_id] = BrokerRegistration(
            broker_id=r.broker_id,
            epoch=r.broker_epoch,
            incarnation_id=r.incarnation_id,
            endpoints={e.name: (e.host, e.port) for e in r.end_points},
            rack=r.rack or None,
            fenced=r.fenced,
            in_controlled_shutdown=r.in_controlled_shutdown,
        )

    def _unregister_broker(self, r: m.UnregisterBrokerRecord) -> None:
        broker = self.brokers.get(r.broker_id)
        if broker is not None and broker.epoch == r.broker_epoch:
            del self.brokers[r.broker_id]

    def _fence(self, r: m.FenceBrokerRecord) -> None:
        broker = self.brokers.get(r.id)
        if broker is not None and broker.epoch == r.epoch:
            broker.fenced = True

    def _unfence(self, r: m.UnfenceBrokerRecord) -> None:
        broker = self.brokers.get(r.id)
        if broker is not None and broker.epoch == r.epoch:
            broker.fenced = False

    def _registration_change(self, r: m.BrokerRegistrationChangeRecord) -> None:
        broker = self.brokers.get(r.broker_id)
        if broker is None or broker.epoch != r.broker_epoch:
            return
        # Tri-state bytes: 0 = unchanged, 1 = true / fenced, -1 = false / unfenced.
        if r.fenced:
            broker.fenced = r.fenced == 1
        if r.in_controlled_shutdown:
            broker.in_controlled_shutdown = r.in_controlled_shutdown == 1

    def _topic(self, r: m.TopicRecord) -> None:
        topic = TopicImage(r.name, r.topic_id)
        self.topics[r.name] = topic
        self.topics_by_id[r.topic_id] = topic

    def _partition(self, r: m.PartitionRecord) -> None:
        topic = self.topics_by_id.get(r.topic_id)
        if topic is None:
            logger.warning("PartitionRecord for unknown topic id %s", r.topic_id)
            return
        topic.partitions[r.partition_id] = PartitionState(
            replicas=list(r.replicas),
            isr=list(r.isr),
            leader=r.leader,
            leader_epoch=r.leader_epoch,
            partition_epoch=r.partition_epoch,
            eligible_leader_replicas=list(r.eligible_leader_replicas or []),
            last_known_elr=list(r.last_known_elr or []),
            leader_recovery_state=r.leader_recovery_state,
        )

    def _partition_change(self, r: m.PartitionChangeRecord) -> None:
        topic = self.topics_by_id.get(r.topic_id)
        part = topic.partitions.get(r.partition_id) if topic else None
        if part is None:
            logger.warning("PartitionChangeRecord for unknown partition %s", r.partition_id)
            return
        if r.replicas is not None:
            part.replicas = list(r.replicas)
        if r.isr is not None:
            part.isr = list(r.isr)
        if r.eligible_leader_replicas is not None:
            part.eligible_leader_replicas = list(r.eligible_leader_replicas)
        if r.last_known_elr is not None:
            part.last_known_elr = list(r.last_known_elr)
        if r.leader_recovery_state >= 0:
            part.leader_recovery_state = r.leader_recovery_state
        if r.leader != LEADER_UNCHANGED:
            part.leader = r.leader
            part.leader_epoch += 1
        part.partition_epoch += 1

    def _remove_topic(self, r: m.RemoveTopicRecord) -> None:
        topic = self.topics_by_id.pop(r.topic_id, None)
        if topic is not None:
            self.topics.pop(topic.name, None)
            self.configs.pop((TOPIC_RESOURCE, topic.name), None)

    def _config(self, r: m.ConfigRecord) -> None:
        key = (r.resource_type, r.resource_name)
        if r.value is None:
            entries = self.configs.get(key)
            if entries is not None:
                entries.pop(r.name, None)
                if not entries:
                    del self.configs[key]
        else:
            self.configs.setdefault(key, {})[r.name] = r.value

    def _producer_ids(self, r: m.ProducerIdsRecord) -> None:
        self.next_producer_id = max(self.next_producer_id, r.next_producer_id)

    def _feature(self, r: m.FeatureLevelRecord) -> None:
        self.features[r.name] = r.feature_level

    def _scram_credential(self, r: m.UserScramCredentialRecord) -> None:
        self.scram_credentials[(r.name, r.mechanism)] = r

    def _remove_scram_credential(self, r: m.RemoveUserScramCredentialRecord) -> None:
        self.scram_credentials.pop((r.name, r.mechanism), None)

    # ------------------------------------------------------------------ views

    def scram_credential(self, mechanism: str, user: str) -> ScramCredential | None:
        """`user`'s credential for SCRAM mechanism `mechanism` (e.g. SCRAM-SHA-256)."""
        mechanism_type = MECHANISM_TYPES.get(mechanism)
        r = self.scram_credentials.get((user, mechanism_type or 0))
        if r is None:
            return None
        return ScramCredential(r.salt, r.stored_key, r.server_key, r.iterations)

    def topic_config(self, topic: str) -> dict[str, str]:
        return dict(self.configs.get((TOPIC_RESOURCE, topic), {}))

    def broker_config(self, broker_id: int) -> dict[str, str]:
        return dict(self.configs.get((BROKER_RESOURCE, str(broker_id)), {}))

    def in_maintenance(self) -> frozenset[int]:
        """Brokers in maintenance: followers in their ISRs, leaders of nothing they can hand
        to another replica."""
        return frozenset(
            int(name)
            for (kind, name), entries in self.configs.items()
            if kind == BROKER_RESOURCE
            and name.isdigit()
            and entries.get(MAINTENANCE_KEY, "").lower() == "true"
        )

    def unfenced_brokers(self) -> list[int]:
        return sorted(b for b, reg in self.brokers.items() if not reg.fenced)

    def partition(self, topic: str, partition: int) -> PartitionState | None:
        t = self.topics.get(topic)
        return t.partitions.get(partition) if t else None


_HANDLERS: dict[type, Callable[[MetadataImage, Any], None]] = {
    m.RegisterBrokerRecord: MetadataImage._register_broker,
    m.UnregisterBrokerRecord: MetadataImage._unregister_broker,
    m.FenceBrokerRecord: MetadataImage._fence,
    m.UnfenceBrokerRecord: MetadataImage._unfence,
    m.BrokerRegistrationChangeRecord: MetadataImage._registration_change,
    m.TopicRecord: MetadataImage._topic,
    m.PartitionRecord: MetadataImage._partition,
    m.PartitionChangeRecord: MetadataImage._partition_change,
    m.RemoveTopicRecord: MetadataImage._remove_topic,
    m.ConfigRecord: MetadataImage._config,
    m.ProducerIdsRecord: MetadataImage._producer_ids,
    m.FeatureLevelRecord: MetadataImage._feature,
    m.UserScramCredentialRecord: MetadataImage._scram_credential,
    m.RemoveUserScramCredentialRecord: MetadataImage._remove_scram_credential,
}
