"""The controller: validates metadata commands and turns them into metadata records.

Like Kafka's QuorumController, every command is a pure function of the current image that
returns *records plus a response*; nothing changes until the records are committed to the
metadata log and applied to the image. Commands run one at a time, so each sees the image
left by the previous one.

In a single node the record log is local; the Raft quorum replaces only `commit`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kraft.controller.replication import (
    RECOVERING,
    PartitionRef,
    all_partitions,
    elect_leaderless,
    elect_preferred_or_unclean,
    refresh_partitions,
    usable_brokers,
)
from kraft.controller.topic_configs import validate_topic_configs
from kraft.log.config import ConfigError
from kraft.metadata.image import TOPIC_RESOURCE, MetadataImage
from kraft.metadata.publisher import MetadataLog
from kraft.metrics import NodeMetrics
from kraft.net.protocol import ErrorCode, Message
from kraft.net.protocol import _generated as m

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_TOPIC_NAME = 249
_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
PRODUCER_ID_BLOCK = 1000
# Like Kafka's controller: one request may not create more partitions than this.
MAX_PARTITIONS_PER_REQUEST = 10_000
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


class ControllerError(Exception):
    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(slots=True)
class Result(Generic[T]):
    records: list[Message]
    response: T


@dataclass(slots=True)
class TopicSpec:
    name: str
    num_partitions: int = -1  # -1: num.partitions
    replication_factor: int = -1  # -1: default.replication.factor
    assignments: dict[int, list[int]] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class TopicResult:
    name: str
    topic_id: uuid.UUID = field(default_factory=lambda: uuid.UUID(int=0))
    error_code: int = 0
    error_message: str | None = None
    num_partitions: int = -1
    replication_factor: int = -1
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ControllerDefaults:
    num_partitions: int = 1
    default_replication_factor: int = 1
    # Cluster defaults of the topic configs that govern leader election and the ELR.
    min_insync_replicas: int = 1
    unclean_leader_election_enable: bool = False


MIN_ISR_KEY = "min.insync.replicas"
UNCLEAN_KEY = "unclean.leader.election.enable"
PREFERRED_ELECTION = 0
UNCLEAN_ELECTION = 1


def _topic_configs(
    image: MetadataImage, overrides: Mapping[str, Mapping[str, str]] | None, topic: str
) -> Mapping[str, str]:
    if overrides is not None and topic in overrides:
        return overrides[topic]
    return image.topic_config(topic)


def validate_topic_name(name: str) -> None:
    if not name or name in (".", ".."):
        raise ControllerError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"topic name {name!r} is illegal")
    if len(name) > MAX_TOPIC_NAME:
        raise ControllerError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"topic name is {len(name)} characters long, more than {MAX_TOPIC_NAME}",
        )
    if not _LEGAL_TOPIC.match(name):
        raise ControllerError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"topic name {name!r} may only contain ASCII alphanumerics, '.', '_' and '-'",
        )


class Controller:
    def __init__(
        self,
        image: MetadataImage,
        log: MetadataLog,
        defaults: ControllerDefaults,
        rng: random.Random | None = None,
        node_tag: str = "",
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.image = image
        self.log = log
        self.metrics = metrics or NodeMetrics()
        self.defaults = defaults
        self.rng = rng or random.Random()
        self.node_tag = node_tag
        self._lock = asyncio.Lock()

    # ------------------------------------------------ replication settings

    def min_isr_for(
        self, image: MetadataImage, overrides: Mapping[str, Mapping[str, str]] | None = None
    ) -> Callable[[str], int]:
        """A topic's effective min.insync.replicas: its override, else the cluster default
        (`overrides`: configs standing in for the image's, for the topics it names)."""

        def min_isr(topic: str) -> int:
            value = _topic_configs(image, overrides, topic).get(MIN_ISR_KEY)
            return int(value) if value is not None else self.defaults.min_insync_replicas

        return min_isr

    def unclean_for(
        self, image: MetadataImage, overrides: Mapping[str, Mapping[str, str]] | None = None
    ) -> Callable[[str], bool]:
        """A topic's effective unclean.leader.election.enable."""

        def unclean(topic: str) -> bool:
            value = _topic_configs(image, overrides, topic).get(UNCLEAN_KEY)
            if value is None:
                return self.defaults.unclean_leader_election_enable
            return value.lower() == "true"

        return unclean

    async def run(self, command: Callable[[MetadataImage], Result[T]]) -> T:
        """Run a command against the current image; commit its records (the log publishes
        them to the image before `append` returns) and return its response."""
        async with self._lock:
            result = command(self.image)
            if result.records:
                start = time.perf_counter()
                await self.log.append(result.records)
                self.metrics.commit_latency.observe((time.perf_counter() - start) * 1000.0)
                # Committed: an election that took a leader from outside the ISR and ELR
                # leaves its partition RECOVERING (only unclean elections do).
                unclean = 0
                for record in result.records:
                    if (
                        isinstance(record, m.PartitionChangeRecord)
                        and record.leader_recovery_state == RECOVERING
                        and record.leader >= 0
                    ):
                        unclean += 1
                if unclean:
                    self.metrics.unclean_elections.inc(unclean)
            return result.response

    # ----------------------------------------------------------- topics

    def create_topics(
        self, specs: Sequence[TopicSpec], validate_only: bool
    ) -> Callable[[MetadataImage], Result[list[TopicResult]]]:
        def command(image: MetadataImage) -> Result[list[TopicResult]]:
            records: list[Message] = []
            results: list[TopicResult] = []
            seen: dict[str, int] = {}
            for spec in specs:
                seen[spec.name] = seen.get(spec.name, 0) + 1
            for spec in specs:
                if seen[spec.name] > 1:
                    results.append(
                        TopicResult(
                            spec.name,
                            error_code=ErrorCode.INVALID_REQUEST,
                            error_message=f"topic {spec.name!r} appears more than once",
                        )
                    )
                    continue
                try:
                    topic_records, result = self._create_topic(image, spec)
                except ControllerError as e:
                    results.append(
                        TopicResult(spec.name, error_code=e.error_code, error_message=e.message)
                    )
                    continue
                results.append(result)
                if not validate_only:
                    records += topic_records
            return Result(records, results)

        return command

    def _create_topic(
        self, image: MetadataImage, spec: TopicSpec
    ) -> tuple[list[Message], TopicResult]:
        validate_topic_name(spec.name)
        if spec.name in image.topics:
            raise ControllerError(
                ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {spec.name!r} already exists"
            )
        collides = spec.name.replace(".", "_")
        for other in image.topics:
            if other.replace(".", "_") == collides:
                raise ControllerError(
                    ErrorCode.INVALID_TOPIC_EXCEPTION,
                    f"topic {spec.name!r} collides with existing topic {other!r}",
                )
        try:
            validate_topic_configs(spec.configs)
        except ConfigError as e:
            raise ControllerError(ErrorCode.INVALID_CONFIG, str(e)) from None
        brokers = image.unfenced_brokers()
        if spec.assignments:
            if spec.num_partitions != -1 or spec.replication_factor != -1:
                raise ControllerError(
                    ErrorCode.INVALID_REQUEST,
                    "both a replica assignment and partitions/replication factor were given",
                )
            assignment = self._check_assignment(image, spec.assignments, 0)
        else:
            partitions = (
                self.defaults.num_partitions if spec.num_partitions == -1 else spec.num_partitions
            )
            rf = (
                self.defaults.default_replication_factor
                if spec.replication_factor == -1
                else spec.replication_factor
            )
            if partitions <= 0:
                raise ControllerError(
                    ErrorCode.INVALID_PARTITIONS, f"number of partitions {partitions} must be > 0"
                )
            if partitions > MAX_PARTITIONS_PER_REQUEST:
                raise ControllerError(
                    ErrorCode.POLICY_VIOLATION,
                    f"{partitions} partitions in one request: the limit is "
                    f"{MAX_PARTITIONS_PER_REQUEST}",
                )
            if rf <= 0:
                raise ControllerError(
                    ErrorCode.INVALID_REPLICATION_FACTOR, f"replication factor {rf} must be > 0"
                )
            if rf > len(brokers):
                raise ControllerError(
                    ErrorCode.INVALID_REPLICATION_FACTOR,
                    f"replication factor {rf} is larger than the {len(brokers)} available brokers",
                )
            assignment = self._place(image, brokers, partitions, rf, 0)
        topic_id = uuid.UUID(int=self.rng.getrandbits(128))
        records: list[Message] = [m.TopicRecord(name=spec.name, topic_id=topic_id)]
        for key, value in sorted(spec.configs.items()):
            records.append(
                m.ConfigRecord(
                    resource_type=TOPIC_RESOURCE, resource_name=spec.name, name=key, value=value
                )
            )
        records += self._partition_records(image, topic_id, assignment, 0)
        rf = len(assignment[0]) if assignment else 0
        return records, TopicResult(
            spec.name,
            topic_id=topic_id,
            num_partitions=len(assignment),
            replication_factor=rf,
            configs=dict(spec.configs),
        )

    def _check_assignment(
        self, image: MetadataImage, assignments: Mapping[int, list[int]], first: int
    ) -> list[list[int]]:
        indexes = sorted(assignments)
        if indexes != list(range(first, first + len(indexes))):
            raise ControllerError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"partitions must be numbered consecutively from {first}",
            )
        out = []
        sizes = {len(assignments[i]) for i in indexes}
        if len(sizes) != 1 or 0 in sizes:
            raise ControllerError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "all partitions need the same non-zero number of replicas",
            )
        for i in indexes:
            replicas = list(assignments[i])
            if len(set(replicas)) != len(replicas):
                raise ControllerError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"partition {i} lists a broker twice"
                )
            unknown = [b for b in replicas if b not in image.brokers]
            if unknown:
                raise ControllerError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"partition {i} names unknown broker(s) {unknown}",
                )
            out.append(replicas)
        return out

    def _place(
        self,
        image: MetadataImage,
        brokers: list[int],
        partitions: int,
        rf: int,
        first_partition: int,
    ) -> list[list[int]]:
        """Round-robin placement from a random start, rack-aware when racks are known:
        replicas of a partition go to distinct racks as far as racks allow."""
        racks = {b: image.brokers[b].rack for b in brokers}
        if all(racks.values()):
            # Interleave brokers by rack so consecutive picks alternate racks.
            by_rack: dict[str, list[int]] = {}
            for b in brokers:
                by_rack.setdefault(racks[b] or "", []).append(b)
            order: list[int] = []
            lists = [by_rack[r] for r in sorted(by_rack)]
            for i in range(max(len(x) for x in lists)):
                order += [x[i] for x in lists if i < len(x)]
        else:
            order = list(brokers)
        n = len(order)
        start = self.rng.randrange(n)
        rack_aware = all(racks.values())
        all_racks = set(racks.values())
        # Without racks, a random shift spreads followers (Kafka does the same).
        shift = 0 if rack_aware else self.rng.randrange(n)
        out = []
        for p in range(partitions):
            first = (start + first_partition + p) % n
            replicas = [order[first]]
            used = {racks[order[first]]}
            k = 1
            while len(replicas) < rf:
                candidate = order[(first + k + shift) % n]
                k += 1
                if candidate in replicas:
                    if k > 2 * n:  # every broker seen twice: take the next free one
                        candidate = next(b for b in order if b not in replicas)
                    else:
                        continue
                # Rack-aware: a rack already holding a replica is skipped until every rack
                # holds one.
                if rack_aware and racks[candidate] in used and used != all_racks and k <= 2 * n:
                    continue
                replicas.append(candidate)
                used.add(racks[candidate])
            out.append(replicas)
        return out

    @staticmethod
    def _partition_records(
        image: MetadataImage, topic_id: uuid.UUID, assignment: list[list[int]], first: int
    ) -> list[Message]:
        out: list[Message] = []
        alive = set(image.unfenced_brokers())
        in_maintenance = image.in_maintenance()
        for i, replicas in enumerate(assignment):
            isr = [b for b in replicas if b in alive] or list(replicas)
            # Brokers in maintenance lead a new partition only when no other replica can.
            leader = next(
                (b for b in replicas if b in alive and b not in in_maintenance),
                next((b for b in replicas if b in alive), -1),
            )
            out.append(
                m.PartitionRecord(
                    partition_id=first + i,
                    topic_id=topic_id,
                    replicas=replicas,
                    isr=isr,
                    leader=leader,
                    leader_epoch=0,
                    partition_epoch=0,
                )
            )
        return out

    def delete_topics(
        self, names: Sequence[str], ids: Sequence[uuid.UUID]
    ) -> Callable[[MetadataImage], Result[list[tuple[str | None, uuid.UUID, int, str | None]]]]:
        def command(
            image: MetadataImage,
        ) -> Result[list[tuple[str | None, uuid.UUID, int, str | None]]]:
            records: list[Message] = []
            out: list[tuple[str | None, uuid.UUID, int, str | None]] = []
            zero = uuid.UUID(int=0)
            for name in names:
                topic = image.topics.get(name)
                if topic is None:
                    out.append(
                        (
                            name,
                            zero,
                            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                            f"unknown topic {name!r}",
                        )
                    )
                    continue
                records.append(m.RemoveTopicRecord(topic_id=topic.topic_id))
                out.append((name, topic.topic_id, 0, None))
            for topic_id in ids:
                topic = image.topics_by_id.get(topic_id)
                if topic is None:
                    out.append(
                        (None, topic_id, ErrorCode.UNKNOWN_TOPIC_ID, f"unknown topic id {topic_id}")
                    )
                    continue
                records.append(m.RemoveTopicRecord(topic_id=topic_id))
                out.append((topic.name, topic_id, 0, None))
            return Result(records, out)

        return command

    def create_partitions(
        self, name: str, count: int, assignments: list[list[int]] | None, validate_only: bool
    ) -> Callable[[MetadataImage], Result[tuple[int, str | None]]]:
        def command(image: MetadataImage) -> Result[tuple[int, str | None]]:
            topic = image.topics.get(name)
            if topic is None:
                return Result([], (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}"))
            current = len(topic.partitions)
            if count <= current:
                return Result(
                    [],
                    (
                        ErrorCode.INVALID_PARTITIONS,
                        f"topic has {current} partitions; the new count {count} must be larger",
                    ),
                )
            rf = len(next(iter(topic.partitions.values())).replicas) if topic.partitions else 1
            if count - current > MAX_PARTITIONS_PER_REQUEST:
                return Result(
                    [],
                    (
                        ErrorCode.POLICY_VIOLATION,
                        f"{count - current} new partitions in one request: the limit is "
                        f"{MAX_PARTITIONS_PER_REQUEST}",
                    ),
                )
            try:
                if assignments:
                    if any(len(a) != rf for a in assignments):
                        raise ControllerError(
                            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                            f"every new partition needs {rf} replicas, like the existing ones",
                        )
                    if len(assignments) != count - current:
                        raise ControllerError(
                            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                            f"{len(assignments)} assignments for {count - current} new partitions",
                        )
                    placed = self._check_assignment(
                        image, {current + i: a for i, a in enumerate(assignments)}, current
                    )
                else:
                    brokers = image.unfenced_brokers()
                    if rf > len(brokers):
                        raise ControllerError(
                            ErrorCode.INVALID_REPLICATION_FACTOR,
                            f"replication factor {rf} is larger than the "
                            f"{len(brokers)} available brokers",
                        )
                    placed = self._place(image, brokers, count - current, rf, current)
            except ControllerError as e:
                return Result([], (e.error_code, e.message))
            if validate_only:
                return Result([], (0, None))
            return Result(
                self._partition_records(image, topic.topic_id, placed, current), (0, None)
            )

        return command

    # ----------------------------------------------------------- configs

    def alter_topic_configs(
        self, name: str, changes: Mapping[str, str | None], incremental: bool, validate_only: bool
    ) -> Callable[[MetadataImage], Result[tuple[int, str | None]]]:
        """Set (value) or delete (None) topic configs; non-incremental replaces them all."""

        def command(image: MetadataImage) -> Result[tuple[int, str | None]]:
            if name not in image.topics:
                return Result([], (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}"))
            current = image.topic_config(name)
            target = dict(current) if incremental else {}
            for key, value in changes.items():
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value
            try:
                validate_topic_configs(
                    {**target, **{k: v for k, v in changes.items() if v is None}}
                )
            except ConfigError as e:
                return Result([], (ErrorCode.INVALID_CONFIG, str(e)))
            if validate_only:
                return Result([], (0, None))
            records: list[Message] = []
            for key in sorted(set(current) | set(target)):
                if current.get(key) != target.get(key):
                    records.append(
                        m.ConfigRecord(
                            resource_type=TOPIC_RESOURCE,
                            resource_name=name,
                            name=key,
                            value=target.get(key),
                        )
                    )
            # A new min ISR clears ELRs the ISR now satisfies; enabling unclean election
            # elects leaderless partitions now (Kafka waits for its periodic check).
            after = {name: target}
            min_isr, unclean = self.min_isr_for(image, after), self.unclean_for(image, after)
            before = (self.min_isr_for(image)(name), self.unclean_for(image)(name))
            if (min_isr(name), unclean(name)) != before:
                records += refresh_partitions(
                    image, usable_brokers(image), unclean, min_isr, [name]
                )
            return Result(records, (0, None))

        return command

    # ------------------------------------------------------ brokers, ids

    def register_broker(
        self,
        broker_id: int,
        incarnation_id: uuid.UUID,
        endpoints: Sequence[tuple[str, str, int]],
        rack: str | None,
        fenced: bool,
    ) -> Callable[[MetadataImage], Result[int]]:
        def command(image: MetadataImage) -> Result[int]:
            previous = image.brokers.get(broker_id)
            epoch = (
                image.last_offset + 1
                if previous is None
                else max(previous.epoch + 1, image.last_offset + 1)
            )
            record = m.RegisterBrokerRecord(
                broker_id=broker_id,
                incarnation_id=incarnation_id,
                broker_epoch=epoch,
                end_points=[
                    m.RegisterBrokerRecord.BrokerEndpoint(
                        name=name, host=host, port=port, security_protocol=0
                    )
                    for name, host, port in endpoints
                ],
                rack=rack,
                fenced=fenced,
            )
            return Result([record], epoch)

        return command

    def unfence_broker(self, broker_id: int, epoch: int) -> Callable[[MetadataImage], Result[None]]:
        def command(image: MetadataImage) -> Result[None]:
            broker = image.brokers.get(broker_id)
            if broker is None or broker.epoch != epoch or not broker.fenced:
                return Result([], None)
            records: list[Message] = [m.UnfenceBrokerRecord(id=broker_id, epoch=epoch)]
            # Every leaderless partition that now has a candidate (this broker or any other:
            # ISR, ELR, last known leader, or anyone where unclean election is enabled).
            records += elect_leaderless(
                image,
                usable_brokers(image) | {broker_id},
                self.unclean_for(image),
                self.min_isr_for(image),
            )
            return Result(records, None)

        return command

    def elect_leaders(
        self, election_type: int, partitions: Mapping[str, Sequence[int]] | None
    ) -> Callable[[MetadataImage], Result[dict[str, list[tuple[int, int, str | None]]]]]:
        """ElectLeaders: PREFERRED (0) or UNCLEAN (1) elections for the given partitions
        (None: every partition, leaving out those that need none, like Kafka). Response:
        topic → [(partition, error code, error message)]."""

        def command(
            image: MetadataImage,
        ) -> Result[dict[str, list[tuple[int, int, str | None]]]]:
            records: list[Message] = []
            out: dict[str, list[tuple[int, int, str | None]]] = {}
            usable = usable_brokers(image)
            in_maintenance = image.in_maintenance()
            min_isr = self.min_isr_for(image)
            every = partitions is None
            wanted: dict[str, list[int]] = {}
            if partitions is None:
                for ref in all_partitions(image):
                    wanted.setdefault(ref.topic, []).append(ref.index)
            else:
                wanted = {t: list(dict.fromkeys(ps)) for t, ps in partitions.items()}
            for topic_name, indexes in wanted.items():
                results = out.setdefault(topic_name, [])
                topic = image.topics.get(topic_name)
                for index in indexes:
                    state = topic.partitions.get(index) if topic else None
                    if topic is None or state is None:
                        results.append(
                            (
                                index,
                                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                f"no partition {topic_name}-{index}",
                            )
                        )
                        continue
                    if election_type not in (PREFERRED_ELECTION, UNCLEAN_ELECTION):
                        results.append(
                            (index, ErrorCode.INVALID_REQUEST, f"election type {election_type}")
                        )
                        continue
                    ref = PartitionRef(topic_name, topic.topic_id, index, state)
                    code, record = elect_preferred_or_unclean(
                        ref,
                        usable,
                        min_isr(topic_name),
                        election_type == UNCLEAN_ELECTION,
                        in_maintenance,
                    )
                    if record is not None:
                        records.append(record)
                    if every and code == ErrorCode.ELECTION_NOT_NEEDED:
                        continue
                    results.append((index, code, None))
            return Result(records, {t: r for t, r in out.items() if r or not every})

        return command

    def allocate_producer_ids(
        self, broker_id: int, broker_epoch: int
    ) -> Callable[[MetadataImage], Result[tuple[int, int]]]:
        def command(image: MetadataImage) -> Result[tuple[int, int]]:
            start = image.next_producer_id
            record = m.ProducerIdsRecord(
                broker_id=broker_id,
                broker_epoch=broker_epoch,
                next_producer_id=start + PRODUCER_ID_BLOCK,
            )
            return Result([record], (start, PRODUCER_ID_BLOCK))

        return command
