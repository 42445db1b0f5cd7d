"""The classic group coordinator as a pure state machine, driven by a manual clock.

No sockets, no event loop: requests are method calls whose answers land in `Reply` boxes,
timers fire only when the test advances the clock, and writes to `__consumer_offsets` are
kept in a list and completed (or failed) when the test says so — the way the broker's loop
would complete them, later than the call that made them.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import pytest

from kraft.net.groups.coordinator import (
    CommittedOffset,
    GroupConfig,
    GroupCoordinator,
    GroupState,
    JoinRequest,
    JoinResult,
    LeavingMember,
    Records,
    SyncRequest,
    SyncResult,
    java_string_hash,
    partition_for,
)
from kraft.net.groups.records import (
    GroupKey,
    GroupValue,
    MemberValue,
    OffsetKey,
    OffsetValue,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_group_value,
    encode_offset_key,
    encode_offset_value,
)
from kraft.net.groups.state import parse_subscription
from kraft.net.groups.timer import ManualTimer
from kraft.net.protocol import ConsumerProtocolSubscription, ErrorCode, encode_message

T = TypeVar("T")
PARTITIONS = 50
SESSION = 10_000
REBALANCE = 30_000
RANGE = [("range", b"range-meta")]


class Reply(Generic[T]):
    def __init__(self) -> None:
        self.results: list[T] = []

    def __call__(self, result: T) -> None:
        self.results.append(result)

    @property
    def done(self) -> bool:
        return bool(self.results)

    @property
    def result(self) -> T:
        assert len(self.results) == 1, f"expected one answer, got {self.results}"
        return self.results[0]


@dataclass
class Write:
    partition: int
    records: Records
    done: Callable[[int], None]


@dataclass
class Harness:
    config: GroupConfig = field(default_factory=lambda: GroupConfig(initial_rebalance_delay_ms=0))
    timer: ManualTimer = field(default_factory=lambda: ManualTimer(1_000_000))
    pending: list[Write] = field(default_factory=list)
    log: dict[int, Records] = field(default_factory=dict)
    auto_complete: bool = True

    def __post_init__(self) -> None:
        ids = itertools.count(1)
        self.coordinator = GroupCoordinator(
            self.config,
            self.timer.now,
            self.timer,
            self.write,
            lambda: PARTITIONS,
            new_id=lambda: f"u{next(ids)}",
        )
        for p in range(PARTITIONS):
            self.coordinator.begin_load(p)
            self.coordinator.complete_load(p)

    def write(self, partition: int, records: Records, done: Callable[[int], None]) -> None:
        self.pending.append(Write(partition, records, done))

    def settle(self, error: int = 0) -> None:
        """What the loop does next: run timers due now, complete the writes made so far."""
        while True:
            self.timer.advance(0)
            if not self.auto_complete or not self.pending:
                return
            writes, self.pending = self.pending, []
            for w in writes:
                if error == 0:
                    self.log.setdefault(w.partition, []).extend(w.records)
                w.done(error)

    def advance(self, ms: int) -> None:
        self.timer.advance(ms)
        self.settle()

    # ------------------------------------------------------------- requests

    def join(
        self,
        group: str,
        member_id: str = "",
        protocols: list[tuple[str, bytes]] | None = None,
        *,
        instance: str | None = None,
        version: int = 5,
        session: int = SESSION,
        rebalance: int = REBALANCE,
        client: str = "client",
        protocol_type: str = "consumer",
        settle: bool = True,
    ) -> Reply[JoinResult]:
        reply: Reply[JoinResult] = Reply()
        self.coordinator.join_group(
            JoinRequest(
                group_id=group,
                member_id=member_id,
                protocol_type=protocol_type,
                protocols=list(protocols if protocols is not None else RANGE),
                session_timeout_ms=session,
                rebalance_timeout_ms=rebalance,
                group_instance_id=instance,
                client_id=client,
                client_host="/127.0.0.1",
                require_known_member_id=version >= 4 and instance is None,
                supports_skip_assignment=version >= 9,
            ),
            reply,
        )
        if settle:
            self.settle()
        return reply

    def join_new(self, group: str, **kwargs: object) -> Reply[JoinResult]:
        """A dynamic member's two-step join (KIP-394): MEMBER_ID_REQUIRED, then with the id."""
        first = self.join(group, **kwargs)  # type: ignore[arg-type]
        assert first.result.error == ErrorCode.MEMBER_ID_REQUIRED
        return self.join(group, first.result.member_id, **kwargs)  # type: ignore[arg-type]

    def sync(
        self,
        group: str,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes] | None = None,
        instance: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> Reply[SyncResult]:
        reply: Reply[SyncResult] = Reply()
        self.coordinator.sync_group(
            SyncRequest(
                group,
                generation,
                member_id,
                instance,
                protocol_type,
                protocol_name,
                assignments or {},
            ),
            reply,
        )
        self.settle()
        return reply

    def heartbeat(
        self, group: str, member_id: str, generation: int, instance: str | None = None
    ) -> int:
        return self.coordinator.heartbeat(group, generation, member_id, instance)

    def commit(
        self,
        group: str,
        offsets: dict[tuple[str, int], int],
        generation: int = -1,
        member_id: str = "",
        metadata: str = "",
        settle: bool = True,
    ) -> Reply[dict[tuple[str, int], int]]:
        reply: Reply[dict[tuple[str, int], int]] = Reply()
        self.coordinator.commit_offsets(
            group,
            generation,
            member_id,
            None,
            {tp: CommittedOffset(o, 3, metadata) for tp, o in offsets.items()},
            reply,
        )
        if settle:
            self.settle()
        return reply

    def fetch(self, group: str, tps: list[tuple[str, int]] | None = None) -> dict:
        code, found = self.coordinator.fetch_offsets(group, tps)
        assert code == 0
        return {tp: (o.offset if o else None) for tp, o in found}

    def state(self, group: str) -> GroupState:
        return self.coordinator.groups[group].state

    def stable_group(self, group: str, members: int, **kwargs: object) -> list[str]:
        """`members` dynamic members joined and synced; their ids, leader first."""
        ids: list[str] = []
        first = self.join_new(group, **kwargs)
        ids.append(first.result.member_id)
        generation = first.result.generation_id
        assert self.sync(group, ids[0], generation, {ids[0]: b"a0"}).result.error == 0
        for _ in range(members - 1):
            new = self.join_new(group, settle=True, **kwargs)
            # Everyone else learns of the rebalance by heartbeat and rejoins.
            rejoins = [self.join(group, m, **kwargs) for m in ids]  # type: ignore[arg-type]
            ids.append(new.result.member_id)
            generation = new.result.generation_id
            assert all(r.result.generation_id == generation for r in rejoins)
            leader = new.result.leader_id
            assignments = {m: f"a{i}".encode() for i, m in enumerate(ids)}
            followers = [self.sync(group, m, generation) for m in ids if m != leader]
            self.sync(group, leader, generation, assignments)
            assert all(f.result.error == 0 for f in followers)
        assert self.state(group) is GroupState.STABLE
        final = self.coordinator.groups[group].leader_id
        assert final is not None
        return [final] + [m for m in ids if m != final]


def records_of(h: Harness, group: str) -> list[tuple[object, bytes | None]]:
    p = partition_for(group, PARTITIONS)
    return [(decode_key(k), v) for k, v in h.log.get(p, [])]


def subscription(*topics: str) -> bytes:
    return struct.pack(">h", 0) + bytes(
        encode_message(ConsumerProtocolSubscription(topics=list(topics)), 0)
    )


# ===================================================================== join and sync


def test_first_join_needs_a_member_id_then_completes_at_once_without_initial_delay() -> None:
    h = Harness()
    first = h.join("g", client="app")
    assert first.result.error == ErrorCode.MEMBER_ID_REQUIRED
    member_id = first.result.member_id
    assert member_id.startswith("app-")
    assert h.state("g") is GroupState.EMPTY  # a pending member only

    second = h.join("g", member_id)
    r = second.result
    assert (r.error, r.generation_id, r.leader_id, r.member_id) == (0, 1, member_id, member_id)
    assert (r.protocol_type, r.protocol_name) == ("consumer", "range")
    assert [(m.member_id, m.metadata) for m in r.members] == [(member_id, b"range-meta")]
    assert h.state("g") is GroupState.COMPLETING_REBALANCE

    sync = h.sync("g", member_id, 1, {member_id: b"assignment"}, None, "consumer", "range")
    assert sync.result == SyncResult(0, "consumer", "range", b"assignment")
    assert h.state("g") is GroupState.STABLE
    # The generation with its assignment is in the log, as Kafka's GroupMetadataValue v3.
    key, value = records_of(h, "g")[-1]
    assert key == GroupKey("g")
    assert value is not None
    stored = decode_group_value(value)
    assert (stored.generation, stored.protocol, stored.leader) == (1, "range", member_id)
    assert [(m.member_id, m.assignment) for m in stored.members] == [(member_id, b"assignment")]


def test_old_clients_join_without_the_member_id_round_trip() -> None:
    h = Harness()
    r = h.join("g", version=3).result
    assert r.error == 0 and r.generation_id == 1 and r.leader_id == r.member_id


def test_initial_rebalance_delay_waits_while_members_keep_arriving() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=3000))
    a = h.join("g", version=3)
    h.advance(1000)
    b = h.join("g", version=3)
    h.advance(1000)
    c = h.join("g", version=3)
    # The first delay ends at 3000 with new members seen: wait one more delay.
    h.advance(999)
    assert not (a.done or b.done or c.done)
    h.advance(3000)
    assert not (a.done or b.done or c.done)
    h.advance(1)
    results = [x.result for x in (a, b, c)]
    assert {r.generation_id for r in results} == {1}
    assert len(results[0].members) == 3  # the first member leads
    assert results[1].members == [] and results[2].members == []


def test_sync_delivers_the_leaders_assignment_to_every_member() -> None:
    h = Harness()
    ids = h.stable_group("g", 3)
    leader, f1, f2 = ids
    generation = h.coordinator.groups["g"].generation_id
    h.join("g", leader)  # the leader rejoins: everyone has to rejoin
    rejoins = [h.join("g", m) for m in (f1, f2)]
    generation = rejoins[0].result.generation_id
    waiting = [h.sync("g", m, generation) for m in (f1, f2)]
    assert not any(w.done for w in waiting)
    leader_sync = h.sync("g", leader, generation, {leader: b"L", f1: b"F1"})  # f2 left out
    assert leader_sync.result.assignment == b"L"
    assert waiting[0].result.assignment == b"F1"
    assert waiting[1].result == SyncResult(0, "consumer", "range", b"")
    # A late SyncGroup in a stable group gets the stored assignment.
    assert h.sync("g", f1, generation).result.assignment == b"F1"


def test_sync_answers_wait_for_the_group_record_and_fail_with_it() -> None:
    h = Harness()
    h.auto_complete = False
    m = h.join("g", version=3).result.member_id
    sync = h.sync("g", m, 1, {m: b"x"})
    assert not sync.done and len(h.pending) == 1
    h.pending.pop().done(ErrorCode.NOT_LEADER_OR_FOLLOWER)
    assert sync.result.error == ErrorCode.NOT_COORDINATOR
    # The failed store starts another rebalance for the same members.
    assert h.state("g") is GroupState.PREPARING_REBALANCE


def test_sync_checks_member_generation_and_protocol() -> None:
    h = Harness()
    m, other = h.stable_group("g", 2)
    gen = h.coordinator.groups["g"].generation_id
    assert h.sync("g", "nobody", gen).result.error == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.sync("g", m, gen + 1).result.error == ErrorCode.ILLEGAL_GENERATION
    bad_type = h.sync("g", m, gen, protocol_type="connect").result
    assert bad_type.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    bad_name = h.sync("g", m, gen, protocol_type="consumer", protocol_name="roundrobin").result
    assert bad_name.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert h.sync("nogroup", m, gen).result.error == ErrorCode.UNKNOWN_MEMBER_ID
    h.join("g", m)  # the leader rejoins: a rebalance waits for the other member
    assert h.sync("g", other, gen).result.error == ErrorCode.REBALANCE_IN_PROGRESS


def test_protocol_is_one_every_member_supports_chosen_by_vote() -> None:
    h = Harness()
    a = h.join("g", version=3, protocols=[("rr", b"1"), ("range", b"1")], settle=False)
    b = h.join("g", version=3, protocols=[("range", b"2"), ("rr", b"2")], settle=False)
    c = h.join("g", version=3, protocols=[("range", b"3"), ("rr", b"3")], settle=False)
    h.settle()
    assert {x.result.protocol_name for x in (a, b, c)} == {"range"}
    # A member supporting none of the group's protocols, or another type, is refused.
    assert h.join("g", version=3, protocols=[("sticky", b"")]).result.error == (
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    )
    assert h.join("g", version=3, protocol_type="connect").result.error == (
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    )
    assert h.join("other", version=3, protocols=[]).result.error == (
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    )
    assert "other" not in h.coordinator.groups  # a refused first join leaves nothing


@pytest.mark.parametrize("protocol", ["range", "cooperative-sticky"])
def test_eager_and_cooperative_rebalances_are_relayed_verbatim(protocol: str) -> None:
    """The broker is assignor-agnostic: an eager client revokes everything before joining,
    a cooperative one rejoins a second time after revoking; both are just joins and syncs,
    and each rebalance is one generation whose assignment bytes reach the members as sent."""
    h = Harness()
    protocols = [(protocol, b"owned: p0 p1")]
    a = h.join_new("g", protocols=protocols).result
    h.sync("g", a.member_id, 1, {a.member_id: b"p0 p1"})
    b = h.join_new("g", protocols=protocols)
    assert h.heartbeat("g", a.member_id, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    h.join("g", a.member_id, protocols)
    gen2 = b.result.generation_id
    assert gen2 == 2
    first = {a.member_id: b"p0", b.result.member_id: b""}  # cooperative: p1 revoked first
    if protocol == "range":
        first = {a.member_id: b"p0", b.result.member_id: b"p1"}
    follower = h.sync("g", b.result.member_id, gen2)
    assert h.sync("g", a.member_id, gen2, first).result.assignment == b"p0"
    assert follower.result.assignment == first[b.result.member_id]
    if protocol == "cooperative-sticky":
        # The follow-up rebalance: the member that revoked p1 rejoins; p1 moves over.
        h.join("g", a.member_id, [(protocol, b"owned: p0")])
        rejoin = h.join("g", b.result.member_id, protocols)
        gen3 = rejoin.result.generation_id
        assert gen3 == 3
        follower = h.sync("g", b.result.member_id, gen3)
        h.sync("g", a.member_id, gen3, {a.member_id: b"p0", b.result.member_id: b"p1"})
        assert follower.result.assignment == b"p1"
    assert h.state("g") is GroupState.STABLE


# ===================================================================== heartbeats


def test_heartbeat_answers() -> None:
    h = Harness()
    (m,) = h.stable_group("g", 1)
    gen = h.coordinator.groups["g"].generation_id
    assert h.heartbeat("g", m, gen) == 0
    assert h.heartbeat("g", m, gen - 1) == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat("g", "stranger", gen) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("unknown-group", m, gen) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("", m, gen) == ErrorCode.INVALID_GROUP_ID
    h.join_new("g")  # a second member: a rebalance starts
    assert h.heartbeat("g", m, gen) == ErrorCode.REBALANCE_IN_PROGRESS


def test_groups_of_partitions_not_served_here() -> None:
    h = Harness()
    p = partition_for("g", PARTITIONS)
    h.coordinator.unload(p)
    assert h.join("g").result.error == ErrorCode.NOT_COORDINATOR
    assert h.heartbeat("g", "m", 1) == ErrorCode.NOT_COORDINATOR
    h.coordinator.begin_load(p)
    assert h.join("g").result.error == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    assert h.commit("g", {("t", 0): 1}).result == {("t", 0): ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}
    assert h.coordinator.list_groups()[0] == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS


def test_session_expiry_removes_the_silent_member_and_rebalances() -> None:
    h = Harness()
    a, b = h.stable_group("g", 2)
    gen = h.coordinator.groups["g"].generation_id
    for _ in range(3):
        h.advance(SESSION // 3)
        assert h.heartbeat("g", a, gen) == 0  # only a keeps its session alive
    assert b in h.coordinator.groups["g"].members
    h.advance(SESSION - 3 * (SESSION // 3))
    assert b not in h.coordinator.groups["g"].members
    assert h.state("g") is GroupState.PREPARING_REBALANCE
    assert h.heartbeat("g", a, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    r = h.join("g", a).result
    assert (r.generation_id, [m.member_id for m in r.members]) == (gen + 1, [a])


def test_rebalance_timeout_removes_members_that_do_not_rejoin() -> None:
    h = Harness()
    a, b = h.stable_group("g", 2)
    gen = h.coordinator.groups["g"].generation_id
    c = h.join_new("g")
    rejoin_a = h.join("g", a)
    # b heartbeats (it is alive) but never rejoins, say stuck in a long poll loop.
    for _ in range(REBALANCE // 2000 - 1):
        h.advance(2000)
        assert h.heartbeat("g", b, gen) == ErrorCode.REBALANCE_IN_PROGRESS
        assert not c.done
    h.advance(2000)
    leader_view = c.result.members or rejoin_a.result.members
    assert {m.member_id for m in leader_view} == {a, c.result.member_id}
    assert c.result.generation_id == gen + 1
    assert h.heartbeat("g", b, gen) == ErrorCode.UNKNOWN_MEMBER_ID


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    h = Harness()
    a = h.join("g", version=3, settle=False)
    b = h.join("g", version=3)
    assert a.result.generation_id == b.result.generation_id == 1
    leader, other = a.result.member_id, b.result.member_id
    assert a.result.leader_id == leader
    h.sync("g", leader, 1, {leader: b"x", other: b"y"})
    assert h.state("g") is GroupState.STABLE
    for step in (3000,) * 9 + (2999,):
        h.advance(step)  # both stay alive; `other` just never syncs
        assert h.heartbeat("g", leader, 1) == h.heartbeat("g", other, 1) == 0
    h.advance(1)
    assert other not in h.coordinator.groups["g"].members
    assert h.state("g") is GroupState.PREPARING_REBALANCE


def test_pending_member_that_never_comes_back_is_forgotten() -> None:
    h = Harness()
    first = h.join("g")
    assert first.result.error == ErrorCode.MEMBER_ID_REQUIRED
    assert "g" in h.coordinator.groups
    h.advance(SESSION)
    assert "g" not in h.coordinator.groups
    assert h.join("g", first.result.member_id).result.error == ErrorCode.UNKNOWN_MEMBER_ID


def test_session_timeout_bounds_are_enforced() -> None:
    h = Harness()
    assert h.join("g", session=100).result.error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert h.join("g", session=3_600_000).result.error == ErrorCode.INVALID_SESSION_TIMEOUT


def test_group_max_size() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, max_size=2))
    a, b = h.stable_group("g", 2)
    assert h.join("g").result.error == ErrorCode.GROUP_MAX_SIZE_REACHED
    # Members already in keep their place.
    assert h.join("g", b).result.error == 0


# ===================================================================== leaving


def test_leave_one_member_and_a_batch() -> None:
    h = Harness()
    a, b, c = h.stable_group("g", 3)
    code, results = h.coordinator.leave_group("g", [LeavingMember(b)])
    assert code == 0 and [e for _, e in results] == [0]
    assert h.state("g") is GroupState.PREPARING_REBALANCE
    code, results = h.coordinator.leave_group(
        "g", [LeavingMember(a), LeavingMember("ghost"), LeavingMember(c)]
    )
    assert [e for _, e in results] == [0, ErrorCode.UNKNOWN_MEMBER_ID, 0]
    h.settle()
    # Nobody left: the group is empty, at a new generation, and says so in the log.
    group = h.coordinator.groups["g"]
    assert group.state is GroupState.EMPTY and not group.members
    key, value = records_of(h, "g")[-1]
    assert key == GroupKey("g") and value is not None
    stored = decode_group_value(value)
    assert (stored.generation, stored.members, stored.protocol) == (group.generation_id, (), None)


def test_a_member_leaving_during_its_join_is_told_to_start_over() -> None:
    h = Harness()
    a, b = h.stable_group("g", 2)
    waiting = h.join("g", a)  # waits for b to rejoin
    assert not waiting.done
    h.coordinator.leave_group("g", [LeavingMember(a)])
    assert waiting.result.error == ErrorCode.UNKNOWN_MEMBER_ID


# ===================================================================== static membership


def test_static_member_rejoin_takes_over_without_a_rebalance() -> None:
    h = Harness()
    s1 = h.join("g", instance="i1", settle=False)
    s2 = h.join("g", instance="i2")
    gen = s1.result.generation_id
    leader = s1.result.leader_id
    ids = {s1.result.member_id: b"A1", s2.result.member_id: b"A2"}
    other = next(m for m in ids if m != leader)
    pending = h.sync("g", other, gen)
    h.sync("g", leader, gen, ids)
    assert pending.result.error == 0

    # i1's process restarts: it joins with no member id and the same protocols.
    old = s1.result.member_id
    again = h.join("g", instance="i1").result
    assert again.error == 0 and again.member_id != old
    assert again.generation_id == gen  # no new generation
    assert h.state("g") is GroupState.STABLE
    # Below v9 it is never told it leads, so it does not assign in a stable group.
    assert again.leader_id != again.member_id and again.members == []
    assert h.sync("g", again.member_id, gen, instance="i1").result.assignment == ids[old]
    # The old incarnation is fenced everywhere.
    assert h.heartbeat("g", old, gen, "i1") == ErrorCode.FENCED_INSTANCE_ID
    assert h.join("g", old, instance="i1").result.error == ErrorCode.FENCED_INSTANCE_ID
    assert h.sync("g", old, gen, instance="i1").result.error == ErrorCode.FENCED_INSTANCE_ID
    code, results = h.coordinator.leave_group("g", [LeavingMember(old, "i1")])
    assert results[0][1] == ErrorCode.FENCED_INSTANCE_ID
    # And the replacement was stored.
    _, value = records_of(h, "g")[-1]
    assert value is not None
    assert again.member_id in {m.member_id for m in decode_group_value(value).members}


def test_static_leader_rejoin_with_v9_is_told_to_skip_assignment() -> None:
    h = Harness()
    s1 = h.join("g", instance="i1", version=9).result
    h.sync("g", s1.member_id, s1.generation_id, {s1.member_id: b"A"})
    again = h.join("g", instance="i1", version=9).result
    assert again.leader_id == again.member_id and again.skip_assignment
    assert [m.member_id for m in again.members] == [again.member_id]


def test_static_member_rejoin_with_new_protocols_rebalances() -> None:
    h = Harness()
    s1 = h.join("g", instance="i1").result
    h.sync("g", s1.member_id, 1, {s1.member_id: b"A"})
    again = h.join("g", instance="i1", protocols=[("roundrobin", b""), ("range", b"")]).result
    assert again.generation_id == 2 and again.protocol_name == "roundrobin"


def test_static_members_survive_a_rebalance_they_miss_but_not_their_session() -> None:
    h = Harness()
    joins = [h.join("g", instance=f"i{i}", settle=False) for i in (1, 2, 3)]
    h.settle()
    s1, s2, s3 = (j.result.member_id for j in joins)
    leader = joins[0].result.leader_id
    assert leader == s1
    followers = [h.sync("g", m, 1, instance=i) for m, i in ((s2, "i2"), (s3, "i3"))]
    h.sync("g", s1, 1, {s1: b"A1", s2: b"A2", s3: b"A3"}, instance="i1")
    assert [f.result.assignment for f in followers] == [b"A2", b"A3"]
    # The leader rejoins; i2 follows; i3 keeps heartbeating but misses the rebalance.
    r1 = h.join("g", s1, instance="i1")
    r2 = h.join("g", s2, instance="i2")
    for _ in range(REBALANCE // 3000 - 1):
        h.advance(3000)
        assert h.heartbeat("g", s3, 1, "i3") == ErrorCode.REBALANCE_IN_PROGRESS
    h.advance(3000)
    # A static member is not removed for missing a rebalance: the leader still assigns to it.
    group = h.coordinator.groups["g"]
    assert set(group.members) == {s1, s2, s3} and group.generation_id == 2
    assert {m.member_id for m in r1.result.members} == {s1, s2, s3}
    assert r2.result.generation_id == 2
    follower = h.sync("g", s2, 2, instance="i2")
    h.sync("g", s1, 2, {s1: b"B1", s2: b"B2", s3: b"B3"}, instance="i1")
    assert follower.result.assignment == b"B2"
    # But its session runs out if it stays silent, and then it is removed.
    for _ in range(SESSION // 2000):
        h.advance(2000)
        assert h.heartbeat("g", s1, 2, "i1") in (0, ErrorCode.REBALANCE_IN_PROGRESS)
        h.heartbeat("g", s2, 2, "i2")
    assert s3 not in group.members and "i3" not in group.static_members


def test_static_member_removed_by_instance_id() -> None:
    h = Harness()
    s1 = h.join("g", instance="i1").result
    h.sync("g", s1.member_id, 1, {})
    code, results = h.coordinator.leave_group(
        "g", [LeavingMember("", "i1"), LeavingMember("", "x")]
    )
    assert [e for _, e in results] == [0, ErrorCode.UNKNOWN_MEMBER_ID]


# ===================================================================== offsets


def test_member_commits_are_visible_once_replicated() -> None:
    h = Harness()
    (m,) = h.stable_group("g", 1)
    gen = h.coordinator.groups["g"].generation_id
    h.auto_complete = False
    reply = h.commit("g", {("t", 0): 10, ("t", 1): 20}, gen, m, metadata="meta")
    assert not reply.done
    assert h.fetch("g", [("t", 0)]) == {("t", 0): None}
    h.auto_complete = True
    h.settle()
    assert reply.result == {("t", 0): 0, ("t", 1): 0}
    assert h.fetch("g") == {("t", 0): 10, ("t", 1): 20}
    assert h.fetch("g", [("t", 1), ("u", 0)]) == {("t", 1): 20, ("u", 0): None}
    key, value = records_of(h, "g")[-1]
    assert key == OffsetKey("g", "t", 1) and value is not None
    stored = decode_offset_value(value)
    assert (stored.offset, stored.leader_epoch, stored.metadata) == (20, 3, "meta")
    assert stored.commit_timestamp == h.timer.now()


def test_commit_checks() -> None:
    h = Harness()
    (m,) = h.stable_group("g", 1)
    gen = h.coordinator.groups["g"].generation_id
    tp = ("t", 0)
    assert h.commit("g", {tp: 1}, gen + 1, m).result[tp] == ErrorCode.ILLEGAL_GENERATION
    assert h.commit("g", {tp: 1}, gen, "ghost").result[tp] == ErrorCode.UNKNOWN_MEMBER_ID
    # Generation -1 without a member is only for groups without members.
    assert h.commit("g", {tp: 1}).result[tp] == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.commit("gone", {tp: 1}, 3, "m").result[tp] == ErrorCode.ILLEGAL_GENERATION
    too_big = "x" * 5000
    assert h.commit("g", {tp: 1}, gen, m, too_big).result[tp] == (
        ErrorCode.OFFSET_METADATA_TOO_LARGE
    )
    h.join_new("g")
    h.join("g", m)  # generation + 1, awaiting sync
    new_gen = h.coordinator.groups["g"].generation_id
    assert h.commit("g", {tp: 1}, new_gen, m).result[tp] == ErrorCode.REBALANCE_IN_PROGRESS


def test_simple_consumer_commits_without_a_group_generation() -> None:
    h = Harness()
    tp = ("t", 2)
    assert h.commit("standalone", {tp: 7}).result == {tp: 0}
    assert h.state("standalone") is GroupState.EMPTY
    assert h.fetch("standalone") == {tp: 7}
    # Empty group ids are allowed for offsets, as in Kafka.
    assert h.commit("", {tp: 1}).result == {tp: 0}


def test_failed_commit_writes_map_to_coordinator_errors() -> None:
    h = Harness()
    h.auto_complete = False
    tp = ("t", 0)
    reply = h.commit("g", {tp: 5})
    h.pending.pop().done(ErrorCode.NOT_LEADER_OR_FOLLOWER)
    assert reply.result == {tp: ErrorCode.NOT_COORDINATOR}
    reply = h.commit("g", {tp: 5})
    h.pending.pop().done(ErrorCode.NOT_ENOUGH_REPLICAS)
    assert reply.result == {tp: ErrorCode.COORDINATOR_NOT_AVAILABLE}
    assert "g" not in h.coordinator.groups  # nothing was stored


def test_offset_delete_spares_subscribed_topics() -> None:
    h = Harness()
    protocols = [("range", subscription("orders"))]
    (m,) = h.stable_group("g", 1, protocols=protocols)
    gen = h.coordinator.groups["g"].generation_id
    h.commit("g", {("orders", 0): 1, ("old", 0): 2}, gen, m)
    got: list[tuple[int, dict]] = []
    h.coordinator.delete_offsets(
        "g", [("orders", 0), ("old", 0)], lambda code, errors: got.append((code, errors))
    )
    h.settle()
    assert got == [(0, {("orders", 0): ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, ("old", 0): 0})]
    assert h.fetch("g") == {("orders", 0): 1}
    assert records_of(h, "g")[-1] == (OffsetKey("g", "old", 0), None)
    got.clear()
    h.coordinator.delete_offsets("nope", [("t", 0)], lambda c, e: got.append((c, e)))
    assert got == [(ErrorCode.GROUP_ID_NOT_FOUND, {})]


def test_delete_groups() -> None:
    h = Harness()
    h.stable_group("busy", 1)
    h.commit("idle", {("t", 0): 1, ("t", 1): 2})
    got: list[dict[str, int]] = []
    h.coordinator.delete_groups(["busy", "idle", "never"], got.append)
    h.settle()
    assert got == [
        {
            "busy": ErrorCode.NON_EMPTY_GROUP,
            "idle": 0,
            "never": ErrorCode.GROUP_ID_NOT_FOUND,
        }
    ]
    assert "idle" not in h.coordinator.groups
    # Offset tombstones; no group tombstone for an offsets-only group (Kafka's rule).
    assert records_of(h, "idle")[-2:] == [
        (OffsetKey("idle", "t", 0), None),
        (OffsetKey("idle", "t", 1), None),
    ]


def test_deleting_a_group_with_a_pending_member_makes_it_start_over() -> None:
    h = Harness()
    h.commit("g", {("t", 0): 1})
    pending = h.join("g").result
    assert pending.error == ErrorCode.MEMBER_ID_REQUIRED
    got: list[dict[str, int]] = []
    h.coordinator.delete_groups(["g"], got.append)
    h.settle()
    assert got == [{"g": 0}] and "g" not in h.coordinator.groups
    assert h.join("g", pending.member_id).result.error == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.fetch("g", [("t", 0)]) == {("t", 0): None}


# ===================================================================== describe and list


def test_describe_and_list() -> None:
    h = Harness()
    a, b = h.stable_group("g", 2, client="svc")
    h.commit("solo", {("t", 0): 1})
    code, d = h.coordinator.describe_group("g")
    assert (code, d.state, d.protocol_type, d.protocol_data) == (0, "Stable", "consumer", "range")
    assert {(m.member_id, m.client_id, m.client_host) for m in d.members} == {
        (a, "svc", "/127.0.0.1"),
        (b, "svc", "/127.0.0.1"),
    }
    assert all(m.metadata == b"range-meta" and m.assignment for m in d.members)
    assert h.coordinator.describe_group("missing")[1].state == "Dead"
    code, groups = h.coordinator.list_groups()
    assert [(g.group_id, g.state, g.protocol_type) for g in groups] == [
        ("g", "Stable", "consumer"),
        ("solo", "Empty", ""),
    ]
    assert [g.group_id for g in h.coordinator.list_groups(["EMPTY"])[1]] == ["solo"]
    assert h.coordinator.list_groups(types=["consumer"])[1] == []
    assert len(h.coordinator.list_groups(types=["Classic"])[1]) == 2


# ===================================================================== load and unload


def test_loading_the_log_restores_groups_and_offsets() -> None:
    h = Harness()
    a, b = h.stable_group("g", 2)
    gen = h.coordinator.groups["g"].generation_id
    h.commit("g", {("t", 0): 11}, gen, a)
    h.commit("gone", {("t", 0): 1})
    h.coordinator.delete_groups(["gone"], lambda r: None)
    h.settle()
    assignments = {m.member_id: m.assignment for m in h.coordinator.groups["g"].members.values()}

    fresh = Harness()
    p = partition_for("g", PARTITIONS)
    fresh.coordinator.unload(p)
    fresh.coordinator.begin_load(p)
    for key, value in h.log[p]:
        fresh.coordinator.replay(p, key, value)
    assert fresh.heartbeat("g", a, gen) == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    fresh.coordinator.complete_load(p)
    group = fresh.coordinator.groups["g"]
    assert group.state is GroupState.STABLE and group.generation_id == gen
    assert {m.member_id: m.assignment for m in group.members.values()} == assignments
    assert fresh.fetch("g") == {("t", 0): 11}
    assert "gone" not in fresh.coordinator.groups
    # Members carry on with the new coordinator as if nothing happened...
    assert fresh.heartbeat("g", a, gen) == 0
    assert fresh.sync("g", b, gen).result.assignment == assignments[b]
    # ...and one that does not find it within its session is removed.
    fresh.advance(SESSION // 2)
    assert fresh.heartbeat("g", a, gen) == 0
    fresh.advance(SESSION // 2 + 1)
    assert b not in group.members and group.state is GroupState.PREPARING_REBALANCE


def test_unload_answers_waiting_members_not_coordinator() -> None:
    h = Harness()
    a, b = h.stable_group("g", 2)
    waiting = h.join("g", a)
    h.coordinator.unload(partition_for("g", PARTITIONS))
    assert waiting.result.error == ErrorCode.NOT_COORDINATOR
    assert "g" not in h.coordinator.groups
    assert h.heartbeat("g", b, 1) == ErrorCode.NOT_COORDINATOR
    h.advance(REBALANCE * 2)  # timers of the dropped group do nothing


# ===================================================================== records


def _s(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    return struct.pack(">h", len(value.encode())) + value.encode()


def test_offset_commit_records_are_kafkas_bytes() -> None:
    key = encode_offset_key("grp", "topic", 7)
    assert key == struct.pack(">h", 1) + _s("grp") + _s("topic") + struct.pack(">i", 7)
    value = encode_offset_value(OffsetValue(42, 5, "m", 1_700_000_000_000))
    assert value == (struct.pack(">hqi", 3, 42, 5) + _s("m") + struct.pack(">q", 1_700_000_000_000))
    assert decode_key(key) == OffsetKey("grp", "topic", 7)
    assert decode_offset_value(value) == OffsetValue(42, 5, "m", 1_700_000_000_000)
    # Versions 0 and 1 (with its expire timestamp) still load.
    v0 = struct.pack(">hq", 0, 9) + _s("") + struct.pack(">q", 123)
    assert decode_offset_value(v0) == OffsetValue(9, -1, "", 123)
    v1 = struct.pack(">hq", 1, 9) + _s("x") + struct.pack(">qq", 123, 456)
    assert decode_offset_value(v1) == OffsetValue(9, -1, "x", 123)
    assert decode_key(struct.pack(">h", 0) + _s("g") + _s("t") + struct.pack(">i", 1)) == (
        OffsetKey("g", "t", 1)
    )


def test_group_metadata_records_are_kafkas_bytes() -> None:
    assert encode_group_key("grp") == struct.pack(">h", 2) + _s("grp")
    member = MemberValue("m-1", "inst", "client", "/10.0.0.1", 30000, 10000, b"sub", b"asg")
    value = GroupValue("consumer", 4, "range", "m-1", 1_700_000_000_000, (member,))
    expected = (
        struct.pack(">h", 3)
        + _s("consumer")
        + struct.pack(">i", 4)
        + _s("range")
        + _s("m-1")
        + struct.pack(">qi", 1_700_000_000_000, 1)
        + _s("m-1")
        + _s("inst")
        + _s("client")
        + _s("/10.0.0.1")
        + struct.pack(">ii", 30000, 10000)
        + struct.pack(">i", 3)
        + b"sub"
        + struct.pack(">i", 3)
        + b"asg"
    )
    assert encode_group_value(value) == expected
    assert decode_group_value(expected) == value
    empty = GroupValue("consumer", 5, None, None, 7, ())
    assert decode_group_value(encode_group_value(empty)) == empty
    # Version 0: no rebalance timeout (it is the session timeout), no timestamp, no instance.
    v0 = (
        struct.pack(">h", 0)
        + _s("consumer")
        + struct.pack(">i", 1)
        + _s("range")
        + _s("m")
        + struct.pack(">i", 1)
        + _s("m")
        + _s("c")
        + _s("/h")
        + struct.pack(">i", 6000)
        + struct.pack(">i", 0)
        + struct.pack(">i", 0)
    )
    loaded = decode_group_value(v0)
    assert loaded.members[0].rebalance_timeout_ms == 6000
    assert loaded.members[0].group_instance_id is None
    # Key versions of other group types are not ours.
    assert decode_key(struct.pack(">h", 3) + _s("x")) is None


def test_partition_of_a_group_is_kafkas() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00  # UTF-16 surrogates
    assert java_string_hash("polygenelubricants") == -(2**31)  # Integer.MIN_VALUE
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50


def test_subscriptions_parse_across_versions() -> None:
    assert parse_subscription(subscription("a", "b")) == {"a", "b"}
    assert parse_subscription(b"\x00") is None
    assert parse_subscription(b"garbage!") is None


# ------------------------------------------------------- offsets.retention.minutes

RETENTION = 60_000


def _expiring() -> Harness:
    return Harness(config=GroupConfig(initial_rebalance_delay_ms=0, offsets_retention_ms=RETENTION))


def _reload(h: Harness, group: str) -> Harness:
    fresh = Harness()
    p = partition_for(group, PARTITIONS)
    fresh.coordinator.begin_load(p)
    for key, value in h.log.get(p, []):
        fresh.coordinator.replay(p, key, value)
    fresh.coordinator.complete_load(p)
    return fresh


def _keep_alive(h: Harness, group: str, members: list[str], generation: int, ms: int) -> None:
    """Let `ms` pass with every member heartbeating twice per session."""
    for _ in range(ms // (SESSION // 2)):
        h.advance(SESSION // 2)
        assert all(h.heartbeat(group, m, generation) == 0 for m in members)


def test_standalone_offsets_expire_by_commit_time_with_tombstones() -> None:
    h = _expiring()
    h.commit("solo", {("t", 0): 5})
    h.advance(RETENTION // 2)
    h.commit("solo", {("t", 1): 6})
    all_partitions = range(PARTITIONS)
    h.advance(RETENTION // 2 - 1)
    assert h.coordinator.expire_offsets(all_partitions) == 0
    h.advance(1)
    assert h.coordinator.expire_offsets(all_partitions) == 1
    h.settle()
    assert h.fetch("solo") == {("t", 1): 6}
    assert records_of(h, "solo")[-1] == (OffsetKey("solo", "t", 0), None)
    h.advance(RETENTION // 2)
    assert h.coordinator.expire_offsets(all_partitions) == 1
    h.settle()
    # No offsets and no members left: the group is gone (never had metadata: no tombstone).
    assert "solo" not in h.coordinator.groups
    assert records_of(h, "solo")[-1] == (OffsetKey("solo", "t", 1), None)
    assert "solo" not in _reload(h, "solo").coordinator.groups


def test_offsets_of_an_empty_group_expire_once_it_has_been_empty_for_the_retention() -> None:
    h = _expiring()
    a, b = h.stable_group("g", 2)
    gen = h.coordinator.groups["g"].generation_id
    h.commit("g", {("t", 0): 11}, gen, a)
    all_partitions = range(PARTITIONS)
    # Members keep their offsets however old the commit is.
    _keep_alive(h, "g", [a, b], gen, RETENTION + SESSION)
    assert h.coordinator.expire_offsets(all_partitions) == 0
    h.coordinator.leave_group("g", [LeavingMember(a), LeavingMember(b)])
    h.settle()
    assert h.state("g") is GroupState.EMPTY
    h.advance(RETENTION - 1)
    assert h.coordinator.expire_offsets(all_partitions) == 0
    h.advance(1)
    assert h.coordinator.expire_offsets(all_partitions) == 1
    h.settle()
    assert "g" not in h.coordinator.groups
    assert records_of(h, "g")[-2:] == [(OffsetKey("g", "t", 0), None), (GroupKey("g"), None)]
    assert "g" not in _reload(h, "g").coordinator.groups


def test_a_stable_group_loses_only_offsets_of_topics_it_no_longer_subscribes_to() -> None:
    h = _expiring()
    (m,) = h.stable_group("g", 1, protocols=[("range", subscription("orders"))])
    gen = h.coordinator.groups["g"].generation_id
    h.commit("g", {("orders", 0): 1, ("old", 0): 2}, gen, m)
    _keep_alive(h, "g", [m], gen, RETENTION)
    assert h.coordinator.expire_offsets(range(PARTITIONS)) == 1
    h.settle()
    assert h.fetch("g") == {("orders", 0): 1}
    assert h.state("g") is GroupState.STABLE
    assert _reload(h, "g").fetch("g") == {("orders", 0): 1}


def test_offsets_of_partitions_served_elsewhere_are_left_alone() -> None:
    h = _expiring()
    h.commit("solo", {("t", 0): 5})
    h.advance(RETENTION)
    others = [p for p in range(PARTITIONS) if p != partition_for("solo", PARTITIONS)]
    assert h.coordinator.expire_offsets(others) == 0
    assert h.fetch("solo") == {("t", 0): 5}
