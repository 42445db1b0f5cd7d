"""Server-side partition assignors of KIP-848 consumer groups: `uniform` and `range`.

An assignor maps the group's members (with the topic ids each subscribes to) and the
partition counts of those topics to a target assignment: member id -> {topic id ->
partitions}. It is pure and deterministic (the same input gives the same output on every
coordinator) and gets the current target assignment so that it can be sticky: the less it
moves, the fewer partitions members must revoke before others may take them.

- `uniform` (Kafka's default): every partition of every subscribed topic goes to one member
  subscribed to its topic; each member keeps what it had while that stays balanced; counts
  differ by at most one between members with the same subscriptions.
- `range`: per topic, the members subscribed to it (sorted by member id) get consecutive
  ranges, the first `partitions % members` one partition more. Members with the same
  subscription get the same partition numbers of every topic (co-partitioning).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# topic id -> partitions: an assignment of one member.
Assignment = Mapping[uuid.UUID, frozenset[int]]
TopicPartition = tuple[uuid.UUID, int]


@dataclass(frozen=True, slots=True)
class MemberSubscription:
    member_id: str
    topics: frozenset[uuid.UUID]  # subscribed topics that exist (by id)
    instance_id: str | None = None
    rack_id: str | None = None


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic_id: uuid.UUID
    name: str
    partitions: int


class Assignor(Protocol):
    name: str

    def assign(
        self,
        members: Sequence[MemberSubscription],
        topics: Mapping[uuid.UUID, TopicInfo],
        current: Mapping[str, Assignment],
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        """The target assignment of every member (members that get nothing map to {})."""
        ...


def _to_assignment(tps: set[TopicPartition]) -> dict[uuid.UUID, frozenset[int]]:
    by_topic: dict[uuid.UUID, set[int]] = {}
    for topic_id, p in tps:
        by_topic.setdefault(topic_id, set()).add(p)
    return {t: frozenset(ps) for t, ps in by_topic.items()}


class UniformAssignor:
    """Balanced and sticky. Kafka's uniform assignor optimises the same two goals; this is
    a simpler algorithm with the same guarantees for members of equal subscriptions:

    1. every member keeps the partitions of its current target that are still valid (its
       topic still subscribed and the partition still there), at most once each;
    2. each unowned partition goes to the least loaded member subscribed to its topic;
    3. while a member has two or more partitions more than another member that could take
       one of them, one moves (from the most loaded to the least loaded).
    Ties break by member id, partitions go in (topic name, partition) order.
    """

    name = "uniform"

    def assign(
        self,
        members: Sequence[MemberSubscription],
        topics: Mapping[uuid.UUID, TopicInfo],
        current: Mapping[str, Assignment],
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        ordered = sorted(members, key=lambda m: m.member_id)
        subscribed = {m.member_id: m.topics & topics.keys() for m in ordered}
        owned: dict[str, set[TopicPartition]] = {m.member_id: set() for m in ordered}
        owner: dict[TopicPartition, str] = {}
        for m in ordered:
            for topic_id, partitions in current.get(m.member_id, {}).items():
                if topic_id not in subscribed[m.member_id]:
                    continue
                for p in sorted(partitions):
                    tp = (topic_id, p)
                    if p < topics[topic_id].partitions and tp not in owner:
                        owner[tp] = m.member_id
                        owned[m.member_id].add(tp)
        by_topic: dict[uuid.UUID, list[str]] = {}
        for m in ordered:
            for topic_id in subscribed[m.member_id]:
                by_topic.setdefault(topic_id, []).append(m.member_id)
        rank = {m.member_id: i for i, m in enumerate(ordered)}
        for topic_id in sorted(by_topic, key=lambda t: (topics[t].name, t)):
            eligible = by_topic[topic_id]
            for p in range(topics[topic_id].partitions):
                tp = (topic_id, p)
                if tp in owner:
                    continue
                taker = min(eligible, key=lambda mid: (len(owned[mid]), rank[mid]))
                owner[tp] = taker
                owned[taker].add(tp)
        self._balance(ordered, subscribed, owned, topics)
        return {mid: _to_assignment(tps) for mid, tps in owned.items()}

    @staticmethod
    def _balance(
        ordered: Sequence[MemberSubscription],
        subscribed: Mapping[str, frozenset[uuid.UUID]],
        owned: dict[str, set[TopicPartition]],
        topics: Mapping[uuid.UUID, TopicInfo],
    ) -> None:
        # Every move lowers the sum of squared loads, so this ends.
        ids = [m.member_id for m in ordered]
        while True:
            by_load = sorted(ids, key=lambda mid: (len(owned[mid]), mid))
            moved = False
            for receiver in by_load:
                for donor in reversed(by_load):
                    if len(owned[donor]) - len(owned[receiver]) < 2:
                        break
                    movable = [tp for tp in owned[donor] if tp[0] in subscribed[receiver]]
                    if not movable:
                        continue
                    tp = max(movable, key=lambda t: (topics[t[0]].name, t[1]))
                    owned[donor].discard(tp)
                    owned[receiver].add(tp)
                    moved = True
                    break
                if moved:
                    break
            if not moved:
                return


class RangeAssignor:
    name = "range"

    def assign(
        self,
        members: Sequence[MemberSubscription],
        topics: Mapping[uuid.UUID, TopicInfo],
        current: Mapping[str, Assignment],
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        out: dict[str, dict[uuid.UUID, frozenset[int]]] = {m.member_id: {} for m in members}
        ordered = sorted(members, key=lambda m: m.member_id)
        for topic_id, info in topics.items():
            eligible = [m.member_id for m in ordered if topic_id in m.topics]
            if not eligible:
                continue
            per_member, extra = divmod(info.partitions, len(eligible))
            start = 0
            for i, member_id in enumerate(eligible):
                count = per_member + (1 if i < extra else 0)
                if count:
                    out[member_id][topic_id] = frozenset(range(start, start + count))
                start += count
        return out


ASSIGNORS: dict[str, Assignor] = {a.name: a for a in (UniformAssignor(), RangeAssignor())}
