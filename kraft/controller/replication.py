"""Replication control: leader election, ISR and ELR changes, fencing, controlled shutdown.

Pure functions from the metadata image to PartitionChangeRecords, as Kafka's
ReplicationControlManager decides them. Every change of a partition's leader, ISR, eligible
leader replicas (ELR, KIP-966), last known ELR or leader recovery state is computed by one
function, `partition_change` (Kafka's PartitionChangeBuilder, with ELR enabled):

- **ELR.** The high watermark only advances while the ISR has at least `min.insync.replicas`
  members (the topic's override, else the cluster default). So when the ISR shrinks below
  min ISR, the replicas leaving it hold every committed write: they join the ELR (the union
  of the old ELR and the old ISR, minus the new ISR). Once the ISR is back at or above min
  ISR the ELR is cleared. A replica in the ISR is never in the ELR. A broker that registers
  again after an unclean shutdown (its previous broker epoch is not the registered one) may
  have lost unflushed writes: it leaves every ELR. Fencing or controlled shutdown does not
  remove a replica from the ELR: it keeps its log and can lead when it comes back.
- **The ISR may become empty**: a fenced or shutting-down last member leaves it (and, being
  below min ISR, joins the ELR), instead of staying in it as Kafka did before KIP-966.
- **Last known ELR** holds the last leader when the ISR becomes empty, and is cleared once the
  partition has a leader again (Kafka 4's "last known leader", which is what its controller
  stores there by default; the full last-known-ELR list is only consumed by KIP-966's unclean
  recovery, which neither Kafka nor this project implements).
- **Election**, in replica order among usable (registered, unfenced, not shutting down)
  brokers: a valid current leader stays; else an ISR member; else, when the ISR is empty, an
  ELR member, which becomes the ISR by itself; else, when ISR and ELR are both empty, the last
  known leader (Kafka's balanced recovery, regardless of `unclean.leader.election.enable`);
  else, with `unclean.leader.election.enable`, any usable replica. The last two are unclean:
  the leader becomes the whole ISR, the ELR is cleared, and its leader recovery state is
  RECOVERING until it reports RECOVERED through AlterPartition. Otherwise there is no
  leader (-1).
- **Maintenance** (kraft's, in Redpanda's sense; `MetadataImage.in_maintenance`): a broker in
  maintenance stays usable (it follows, joins and stays in ISRs) but every election passes it
  over while any other replica could be chosen by the same rule; it leads only where nobody
  else can (a partition with no other replica in its ISR stays available rather than going
  offline). Entering maintenance moves its leaderships (`drain_leaderships`), and the
  periodic preferred-leader check moves any it still holds once another replica can lead.
- **Leadership transfer** (kraft's, `transfer_leadership`): a named replica becomes the
  leader if it is in the ISR and its broker is usable and not in maintenance. The replica
  order is not changed, so a preferred-leader election moves leadership back to the first
  replica afterwards: a transfer, not a reassignment.
- A record changes the leader epoch only when the leader changes (image.apply bumps it), and
  every record bumps the partition epoch; a change that changes nothing is no record.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass

from kraft.metadata.image import LEADER_UNCHANGED, MetadataImage, PartitionState
from kraft.net.protocol import ErrorCode, Message
from kraft.net.protocol import _generated as m

NO_LEADER = -1
RECOVERED = 0
RECOVERING = 1


class Election(enum.Enum):
    # Keep a valid leader, else elect a clean one (ISR, then ELR), else the last known leader.
    ONLINE = "online"
    # Like ONLINE, but the first replica first (preferred-leader election).
    PREFERRED = "preferred"
    # Like ONLINE, then any usable replica (unclean.leader.election.enable).
    UNCLEAN = "unclean"


def kafka_default_min_isr(topic: str) -> int:
    """min.insync.replicas when no topic override or cluster default is given (Kafka's 1)."""
    return 1


def never_unclean(topic: str) -> bool:
    return False


def usable_brokers(image: MetadataImage) -> set[int]:
    return {
        b for b, reg in image.brokers.items() if not reg.fenced and not reg.in_controlled_shutdown
    }


@dataclass(frozen=True, slots=True)
class PartitionRef:
    topic: str
    topic_id: uuid.UUID
    index: int
    state: PartitionState


def partitions_of(image: MetadataImage, broker_id: int) -> Iterable[PartitionRef]:
    for topic in image.topics.values():
        for index, state in topic.partitions.items():
            if broker_id in state.replicas:
                yield PartitionRef(topic.name, topic.topic_id, index, state)


def all_partitions(
    image: MetadataImage, topics: Iterable[str] | None = None
) -> Iterable[PartitionRef]:
    names = list(image.topics) if topics is None else [t for t in topics if t in image.topics]
    for name in names:
        topic = image.topics[name]
        for index, state in topic.partitions.items():
            yield PartitionRef(topic.name, topic.topic_id, index, state)


def _target_elr(
    state: PartitionState, isr: list[int], min_isr: int, unclean_shutdown: int | None
) -> list[int]:
    if len(isr) >= min_isr:
        return []
    # Below min ISR the high watermark cannot advance: whoever was in the ISR or ELR and is
    # not in the new ISR has every committed write, unless it lost unflushed data.
    candidates = set(state.eligible_leader_replicas) | set(state.isr)
    return [r for r in state.replicas if r in candidates and r not in isr and r != unclean_shutdown]


def _elect(
    state: PartitionState,
    isr: list[int],
    elr: list[int],
    usable: set[int],
    election: Election,
    in_maintenance: Set[int],
    candidate: int | None,
) -> tuple[int, bool]:
    """(leader or -1, whether the election was unclean)."""

    def valid(replica: int) -> bool:
        # ELR members are candidates only when the ISR is empty (KIP-966).
        return replica in usable and (replica in isr if isr else replica in elr)

    if election is Election.PREFERRED:
        order = [*state.replicas[:1], state.leader, *state.replicas[1:]]
    else:
        order = [state.leader, *state.replicas]
    if candidate is not None:
        order.insert(0, candidate)
    # Brokers in maintenance come last: chosen only when no other replica qualifies.
    order = [r for r in order if r not in in_maintenance] + [
        r for r in order if r in in_maintenance
    ]
    for replica in order:
        if replica >= 0 and valid(replica):
            return replica, False
    last_known = state.last_known_elr
    if not isr and not elr and len(last_known) == 1 and last_known[0] in usable:
        return last_known[0], True
    if election is Election.UNCLEAN:
        replicas = [r for r in state.replicas if r not in in_maintenance] + [
            r for r in state.replicas if r in in_maintenance
        ]
        for replica in replicas:
            if replica in usable:
                return replica, True
    return NO_LEADER, False


def partition_change(
    ref: PartitionRef,
    usable: set[int],
    min_isr: int,
    *,
    isr: list[int] | None = None,
    election: Election = Election.ONLINE,
    unclean_shutdown: int | None = None,
    recovery: int = -1,
    in_maintenance: Set[int] = frozenset(),
    candidate: int | None = None,
) -> m.PartitionChangeRecord | None:
    """The one record (or None) moving a partition to `isr` (None: its current ISR), with
    its ELR, leader, last known ELR and recovery state following the rules above.

    `unclean_shutdown` names a broker that lost unflushed writes (it leaves the ELR);
    `recovery` is a leader recovery state the leader asks for (-1: unchanged);
    `in_maintenance` are brokers every election passes over while it can; `candidate` is a
    replica tried before all others (a leadership transfer)."""
    state = ref.state
    target_isr = list(state.isr) if isr is None else list(isr)
    elr = _target_elr(state, target_isr, min_isr, unclean_shutdown)
    leader, unclean = _elect(state, target_isr, elr, usable, election, in_maintenance, candidate)
    recovery_state = state.leader_recovery_state if recovery < 0 else recovery
    if unclean:
        # Possibly without some committed writes: it alone is in sync, nobody else is
        # eligible any more, and it must recover before it counts as a clean leader.
        target_isr, elr, recovery_state = [leader], [], RECOVERING
    elif leader in elr:
        # Elected from the ELR: it holds every committed write and is the ISR by itself.
        target_isr = [leader]
        elr = [] if len(target_isr) >= min_isr else [r for r in elr if r != leader]
    last_known = list(state.last_known_elr)
    if not target_isr and state.isr:
        # The ISR empties now: remember who led last.
        last_known = [state.leader if state.leader in state.isr else state.isr[0]]
    elif leader != NO_LEADER:
        last_known = []
    record = m.PartitionChangeRecord(topic_id=ref.topic_id, partition_id=ref.index)
    changed = False
    if leader != state.leader:
        record.leader, changed = leader, True
    if target_isr != state.isr:
        record.isr, changed = target_isr, True
    if elr != state.eligible_leader_replicas:
        record.eligible_leader_replicas, changed = elr, True
    if last_known != state.last_known_elr:
        record.last_known_elr, changed = last_known, True
    if recovery_state != state.leader_recovery_state:
        record.leader_recovery_state, changed = recovery_state, True
    return record if changed else None


def _election(unclean: bool) -> Election:
    return Election.UNCLEAN if unclean else Election.ONLINE


def remove_broker(
    image: MetadataImage,
    broker_id: int,
    unclean_for: Callable[[str], bool],
    usable: set[int],
    min_isr_for: Callable[[str], int] = kafka_default_min_isr,
    *,
    unclean_shutdown: bool = False,
) -> list[Message]:
    """Partition changes for a broker that can no longer lead or follow (fenced, in
    controlled shutdown, or registered again): leaderships move, it leaves every ISR (joining
    the ELR when the ISR falls below min ISR), and after an unclean shutdown every ELR."""
    records: list[Message] = []
    usable = usable - {broker_id}
    in_maintenance = image.in_maintenance()
    for ref in partitions_of(image, broker_id):
        record = partition_change(
            ref,
            usable,
            min_isr_for(ref.topic),
            isr=[r for r in ref.state.isr if r != broker_id],
            election=_election(unclean_for(ref.topic)),
            unclean_shutdown=broker_id if unclean_shutdown else None,
            in_maintenance=in_maintenance,
        )
        if record is not None:
            records.append(record)
    return records


def elect_leaderless(
    image: MetadataImage,
    usable: set[int],
    unclean_for: Callable[[str], bool],
    min_isr_for: Callable[[str], int] = kafka_default_min_isr,
    topics: Iterable[str] | None = None,
) -> list[Message]:
    """Leaders for partitions that have none (or an unusable one), now that `usable` brokers
    can lead: used on unfencing, on enabling unclean election, and periodically."""
    records: list[Message] = []
    in_maintenance = image.in_maintenance()
    for ref in all_partitions(image, topics):
        if ref.state.leader != NO_LEADER and ref.state.leader in usable:
            continue
        record = partition_change(
            ref,
            usable,
            min_isr_for(ref.topic),
            election=_election(unclean_for(ref.topic)),
            in_maintenance=in_maintenance,
        )
        if record is not None:
            records.append(record)
    return records


def refresh_partitions(
    image: MetadataImage,
    usable: set[int],
    unclean_for: Callable[[str], bool],
    min_isr_for: Callable[[str], int],
    topics: Iterable[str],
) -> list[Message]:
    """Re-apply the rules to every partition of `topics` after their min ISR or unclean
    setting changed: ELRs are cleared where the ISR now reaches min ISR, and leaderless
    partitions are elected (uncleanly, if now allowed)."""
    records: list[Message] = []
    in_maintenance = image.in_maintenance()
    for ref in all_partitions(image, topics):
        record = partition_change(
            ref,
            usable,
            min_isr_for(ref.topic),
            election=_election(unclean_for(ref.topic)),
            in_maintenance=in_maintenance,
        )
        if record is not None:
            records.append(record)
    return records


def preferred_leader_changes(
    image: MetadataImage,
    usable: set[int],
    min_isr_for: Callable[[str], int] = kafka_default_min_isr,
) -> list[Message]:
    """Move leadership back to the first replica wherever it is in the ISR, usable and not
    in maintenance (and the partition is not recovering from an unclean election); and off
    brokers in maintenance wherever another replica can lead now."""
    records: list[Message] = []
    in_maintenance = image.in_maintenance()
    for ref in all_partitions(image):
        state = ref.state
        preferred = state.replicas[0] if state.replicas else NO_LEADER
        if state.leader_recovery_state != RECOVERED:
            continue
        if (
            preferred != state.leader
            and preferred in state.isr
            and preferred in usable
            and preferred not in in_maintenance
        ) or state.leader in in_maintenance:
            record = partition_change(
                ref,
                usable,
                min_isr_for(ref.topic),
                election=Election.PREFERRED,
                in_maintenance=in_maintenance,
            )
            if record is not None:
                records.append(record)
    return records


def drain_leaderships(
    image: MetadataImage,
    broker_id: int,
    usable: set[int],
    min_isr_for: Callable[[str], int] = kafka_default_min_isr,
) -> list[Message]:
    """Leaderships moving off `broker_id`, entering maintenance: to another replica of the
    ISR where there is a usable one not in maintenance (the usual election order); the
    others stay, rather than leave their partition without a leader. ISRs do not change."""
    in_maintenance = image.in_maintenance() | {broker_id}
    records: list[Message] = []
    for ref in partitions_of(image, broker_id):
        if ref.state.leader != broker_id:
            continue
        record = partition_change(
            ref, usable, min_isr_for(ref.topic), in_maintenance=in_maintenance
        )
        if record is not None:
            records.append(record)
    return records


def transfer_leadership(
    image: MetadataImage,
    ref: PartitionRef,
    replica: int,
    usable: set[int],
    min_isr: int,
) -> tuple[int, str | None, m.PartitionChangeRecord | None]:
    """Make `replica` the leader of a partition: (error code, why, record). Kafka's codes:
    INVALID_REPLICA_ASSIGNMENT when it is no replica of the partition, ELECTION_NOT_NEEDED
    when it leads already, INELIGIBLE_REPLICA when it is not in the ISR or its broker is
    not registered, fenced, in controlled shutdown or in maintenance."""
    state = ref.state
    name = f"{ref.topic}-{ref.index}"
    if replica not in state.replicas:
        return (
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"broker {replica} holds no replica of {name} (replicas {state.replicas})",
            None,
        )
    if replica == state.leader:
        return ErrorCode.ELECTION_NOT_NEEDED, f"replica {replica} already leads {name}", None
    if replica not in state.isr:
        return (
            ErrorCode.INELIGIBLE_REPLICA,
            f"replica {replica} of {name} is not in its ISR {state.isr}",
            None,
        )
    broker = image.brokers.get(replica)
    why = (
        "is not registered"
        if broker is None
        else "is fenced"
        if broker.fenced
        else "is in controlled shutdown"
        if broker.in_controlled_shutdown
        else "is in maintenance"
        if replica in image.in_maintenance()
        else "cannot lead"
        if replica not in usable
        else None
    )
    if why is not None:
        return ErrorCode.INELIGIBLE_REPLICA, f"broker {replica} {why}", None
    record = partition_change(
        ref, usable, min_isr, in_maintenance=image.in_maintenance(), candidate=replica
    )
    if record is None or record.leader != replica:
        return ErrorCode.INELIGIBLE_REPLICA, f"replica {replica} cannot lead {name}", None
    return 0, None, record


def elect_preferred_or_unclean(
    ref: PartitionRef,
    usable: set[int],
    min_isr: int,
    unclean: bool,
    in_maintenance: Set[int] = frozenset(),
) -> tuple[int, m.PartitionChangeRecord | None]:
    """ElectLeaders for one partition (PREFERRED, or UNCLEAN when `unclean`), with Kafka's
    error codes: ELECTION_NOT_NEEDED when the preferred replica already leads (UNCLEAN: when
    there is a leader), PREFERRED_LEADER_NOT_AVAILABLE / ELIGIBLE_LEADERS_NOT_AVAILABLE when
    no election can change anything."""
    state = ref.state
    if unclean and state.leader != NO_LEADER:
        return ErrorCode.ELECTION_NOT_NEEDED, None
    if not unclean and state.replicas and state.leader == state.replicas[0]:
        return ErrorCode.ELECTION_NOT_NEEDED, None
    election = Election.UNCLEAN if unclean else Election.PREFERRED
    record = partition_change(
        ref, usable, min_isr, election=election, in_maintenance=in_maintenance
    )
    if record is None or record.leader in (LEADER_UNCHANGED, NO_LEADER):
        return (
            ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE
            if unclean
            else ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
        ), None
    return 0, record


@dataclass(slots=True)
class AlterPartitionResult:
    error_code: int
    record: m.PartitionChangeRecord | None = None


def alter_partition(
    image: MetadataImage,
    broker_id: int,
    topic_id: uuid.UUID,
    index: int,
    leader_epoch: int,
    partition_epoch: int,
    new_isr: list[int],
    leader_recovery_state: int,
    min_isr_for: Callable[[str], int] = kafka_default_min_isr,
    unclean_for: Callable[[str], bool] = never_unclean,
) -> AlterPartitionResult:
    """A leader's ISR change (AlterPartition), checked against the current partition state;
    the ELR follows the new ISR."""
    topic = image.topics_by_id.get(topic_id)
    state = topic.partitions.get(index) if topic else None
    if topic is None or state is None:
        return AlterPartitionResult(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if state.leader != broker_id:
        return AlterPartitionResult(ErrorCode.NOT_LEADER_OR_FOLLOWER)
    if leader_epoch != state.leader_epoch:
        return AlterPartitionResult(ErrorCode.FENCED_LEADER_EPOCH)
    if partition_epoch != state.partition_epoch:
        return AlterPartitionResult(ErrorCode.INVALID_UPDATE_VERSION)
    if broker_id not in new_isr or len(set(new_isr)) != len(new_isr):
        return AlterPartitionResult(ErrorCode.INVALID_REQUEST)
    usable = usable_brokers(image)
    added = set(new_isr) - set(state.isr)
    if any(r not in state.replicas or r not in usable for r in added):
        return AlterPartitionResult(ErrorCode.INELIGIBLE_REPLICA)
    if any(r not in state.replicas for r in new_isr):
        return AlterPartitionResult(ErrorCode.INELIGIBLE_REPLICA)
    if state.leader_recovery_state == RECOVERED and leader_recovery_state == RECOVERING:
        return AlterPartitionResult(ErrorCode.INVALID_REQUEST)
    if leader_recovery_state == RECOVERING and len(new_isr) > 1:
        # Like Kafka: a leader still recovering from an unclean election stays alone.
        return AlterPartitionResult(ErrorCode.INVALID_REQUEST)
    ref = PartitionRef(topic.name, topic_id, index, state)
    record = partition_change(
        ref,
        usable,
        min_isr_for(topic.name),
        isr=[r for r in state.replicas if r in new_isr],
        election=_election(unclean_for(topic.name)),
        recovery=leader_recovery_state,
    )
    return AlterPartitionResult(0, record)


class BrokerHeartbeats:
    """Soft state of the active controller: when each broker last heartbeated (monotonic ms).

    Not replicated (like Kafka's BrokerHeartbeatManager): a new active controller gives every
    broker a fresh session from the moment it takes over.
    """

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self._last: dict[int, int] = {}

    def touch(self, broker_id: int) -> None:
        self._last[broker_id] = self.clock()

    def forget(self, broker_id: int) -> None:
        self._last.pop(broker_id, None)

    def reset(self, broker_ids: Iterable[int], age_ms: int = 0) -> None:
        """A fresh session for each of `broker_ids`, begun `age_ms` ago."""
        start = self.clock() - age_ms
        self._last = {b: start for b in broker_ids}

    def known(self) -> list[int]:
        return list(self._last)

    def expired(self, session_timeout_ms: int) -> list[int]:
        now = self.clock()
        return sorted(b for b, t in self._last.items() if now - t > session_timeout_ms)
