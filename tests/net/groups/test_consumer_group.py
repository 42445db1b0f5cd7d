"""The KIP-848 consumer group coordinator as a pure state machine, driven by a manual clock.

Members are simulated the way a KIP-848 client behaves: it joins with epoch 0, applies every
assignment it gets at once (revoking what left it, taking what is new), reports what it owns
in the next heartbeat after a change, and otherwise heartbeats with its epoch only. Writes to
`__consumer_offsets` are kept and completed when the test settles, like the broker's loop
would. After every step the tests check that no partition is owned by two members.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from kraft.net.groups.assignors import MemberSubscription, RangeAssignor, TopicInfo, UniformAssignor
from kraft.net.groups.consumer import ConsumerGroup, ConsumerGroupState, MemberState
from kraft.net.groups.consumer_coordinator import (
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    HeartbeatRequest,
    HeartbeatResult,
)
from kraft.net.groups.consumer_records import (
    CURRENT_MEMBER_ASSIGNMENT,
    GROUP_METADATA,
    MEMBER_METADATA,
    ConsumerKey,
    ConsumerRecord,
    CurrentAssignmentValue,
    GroupMetadataValue,
    MemberMetadataValue,
    PartitionMetadataValue,
    TargetAssignmentMemberValue,
    TopicMetadata,
    decode_record,
    encode_key,
    encode_record,
    encode_value,
)
from kraft.net.groups.coordinator import (
    CommittedOffset,
    GroupConfig,
    GroupCoordinator,
    JoinRequest,
    JoinResult,
    Records,
    partition_for,
)
from kraft.net.groups.records import encode_offset_key
from kraft.net.groups.state import GroupState
from kraft.net.groups.timer import ManualTimer
from kraft.net.protocol import ErrorCode

PARTITIONS = 50
SESSION = 45_000
REBALANCE = 60_000
TOPIC_A = uuid.UUID(int=0xA)
TOPIC_B = uuid.UUID(int=0xB)
TOPIC_C = uuid.UUID(int=0xC)


@dataclass
class Write:
    partition: int
    records: Records
    done: Callable[[int], None]


@dataclass
class Harness:
    config: ConsumerGroupConfig = field(
        default_factory=lambda: ConsumerGroupConfig(session_timeout_ms=SESSION)
    )
    timer: ManualTimer = field(default_factory=lambda: ManualTimer(1_000_000))
    pending: list[Write] = field(default_factory=list)
    log: dict[int, Records] = field(default_factory=dict)
    topics: dict[str, TopicMetadata] = field(
        default_factory=lambda: {"a": TopicMetadata(TOPIC_A, "a", 6)}
    )
    write_error: int = 0
    classic_config: GroupConfig = field(
        default_factory=lambda: GroupConfig(initial_rebalance_delay_ms=0)
    )

    def __post_init__(self) -> None:
        ids = itertools.count(1)
        self.classic = GroupCoordinator(
            self.classic_config,
            self.timer.now,
            self.timer,
            self.write,
            lambda: PARTITIONS,
            new_id=lambda: f"c{next(ids)}",
        )
        self.coordinator = ConsumerGroupCoordinator(
            self.classic, self.config, lambda: self.topics, new_id=lambda: f"m{next(ids)}"
        )
        for p in range(PARTITIONS):
            self.coordinator.begin_load(p)
            self.coordinator.complete_load(p)

    def write(self, partition: int, records: Records, done: Callable[[int], None]) -> None:
        self.pending.append(Write(partition, records, done))

    def settle(self) -> None:
        while True:
            self.timer.advance(0)
            if not self.pending:
                return
            writes, self.pending = self.pending, []
            for w in writes:
                if self.write_error == 0:
                    self.log.setdefault(w.partition, []).extend(w.records)
                w.done(self.write_error)

    def advance(self, ms: int) -> None:
        self.timer.advance(ms)
        self.settle()

    def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResult:
        results: list[HeartbeatResult] = []
        self.coordinator.heartbeat(req, results.append)
        self.settle()
        assert len(results) == 1, results
        return results[0]

    def group(self, group_id: str = "g") -> ConsumerGroup:
        return self.coordinator.groups[group_id]

    def set_topic(self, name: str, topic_id: uuid.UUID, partitions: int | None) -> None:
        if partitions is None:
            del self.topics[name]
        else:
            self.topics[name] = TopicMetadata(topic_id, name, partitions)
        self.coordinator.on_metadata_change()
        self.settle()

    def reloaded(self) -> ConsumerGroupCoordinator:
        """A fresh coordinator that loads every partition from the log written so far."""
        fresh = Harness(
            config=self.config, topics=dict(self.topics), classic_config=self.classic_config
        )
        coordinator = fresh.coordinator
        for p, records in self.log.items():
            coordinator.begin_load(p)
            for key, value in records:
                coordinator.replay(p, key, value)
            coordinator.complete_load(p)
        return coordinator


class Member:
    """A well-behaved KIP-848 client."""

    def __init__(
        self,
        h: Harness,
        topics: list[str] | None = None,
        *,
        group: str = "g",
        member_id: str = "",
        instance: str | None = None,
        regex: str | None = None,
        assignor: str | None = None,
        version: int = 1,
    ) -> None:
        self.h = h
        self.group = group
        self.topics = topics if topics is not None else ["a"]
        self.instance = instance
        self.regex = regex
        self.assignor = assignor
        self.version = version
        self.member_id = member_id or (str(uuid.uuid4()) if version >= 1 else "")
        self.epoch = 0
        self.owned: dict[uuid.UUID, frozenset[int]] = {}
        self.report_owned = False
        self.last: HeartbeatResult | None = None

    def join(self) -> HeartbeatResult:
        self.epoch = 0
        self.owned = {}
        return self._send(
            HeartbeatRequest(
                self.group,
                self.member_id,
                0,
                instance_id=self.instance,
                rebalance_timeout_ms=REBALANCE,
                subscribed_topic_names=self.topics,
                subscribed_topic_regex=self.regex,
                server_assignor=self.assignor,
                owned={},
                client_id="client",
                client_host="/127.0.0.1",
                api_version=self.version,
            )
        )

    def beat(self) -> HeartbeatResult:
        owned = dict(self.owned) if self.report_owned else None
        self.report_owned = False
        return self._send(
            HeartbeatRequest(
                self.group,
                self.member_id,
                self.epoch,
                instance_id=self.instance,
                owned=owned,
                client_id="client",
                client_host="/127.0.0.1",
                api_version=self.version,
            )
        )

    def leave(self, epoch: int = -1) -> HeartbeatResult:
        result = self.h.heartbeat(
            HeartbeatRequest(
                self.group, self.member_id, epoch, instance_id=self.instance, api_version=1
            )
        )
        self.owned = {}
        return result

    def _send(self, req: HeartbeatRequest) -> HeartbeatResult:
        result = self.h.heartbeat(req)
        self.last = result
        if result.error == 0:
            if result.member_id:
                self.member_id = result.member_id
            self.epoch = result.member_epoch
            if result.assignment is not None:
                new = {t: frozenset(ps) for t, ps in result.assignment.items() if ps}
                if new != self.owned:
                    self.owned = new
                    self.report_owned = True
        return result

    def partitions(self, topic_id: uuid.UUID = TOPIC_A) -> set[int]:
        return set(self.owned.get(topic_id, frozenset()))


def no_overlap(members: list[Member]) -> None:
    seen: dict[tuple[uuid.UUID, int], str] = {}
    for m in members:
        for t, ps in m.owned.items():
            for p in ps:
                assert (t, p) not in seen, f"{(t, p)} owned by {seen[(t, p)]} and {m.member_id}"
                seen[(t, p)] = m.member_id


def converge(members: list[Member], rounds: int = 10) -> None:
    """Heartbeat round by round (checking ownership after each) until nothing changes."""
    for _ in range(rounds):
        before = [(m.epoch, dict(m.owned), m.report_owned) for m in members]
        for m in members:
            m.beat()
            no_overlap(members)
        after = [(m.epoch, dict(m.owned), m.report_owned) for m in members]
        if before == after:
            return
    raise AssertionError("the group did not converge")


# ----------------------------------------------------------------------------- joining


def test_first_member_gets_every_partition_at_epoch_one() -> None:
    h = Harness()
    m = Member(h)
    r = m.join()
    assert r.error == 0 and r.member_id == m.member_id
    assert r.member_epoch == 1 and r.heartbeat_interval_ms == 5000
    assert r.assignment == {TOPIC_A: frozenset(range(6))}
    g = h.group()
    assert (g.group_epoch, g.assignment_epoch) == (1, 1)
    assert g.state is ConsumerGroupState.STABLE
    # An acknowledgement changes nothing and gets no assignment back.
    r = m.beat()
    assert r.error == 0 and r.member_epoch == 1 and r.assignment is None
    assert h.group().state is ConsumerGroupState.STABLE


def test_v0_members_get_their_id_from_the_coordinator() -> None:
    h = Harness()
    m = Member(h, version=0)
    assert m.member_id == ""
    r = m.join()
    assert r.error == 0 and r.member_id and r.member_id in h.group().members
    bad = h.heartbeat(
        HeartbeatRequest(
            "g",
            "",
            0,
            rebalance_timeout_ms=1,
            subscribed_topic_names=["a"],
            owned={},
            api_version=1,
        )
    )
    assert bad.error == ErrorCode.INVALID_REQUEST and bad.message == "MemberId can't be empty."


def test_three_members_split_six_partitions_without_overlap() -> None:
    h = Harness()
    members = [Member(h) for _ in range(3)]
    for m in members:
        m.join()
        no_overlap(members)
    converge(members)
    assert sorted(len(m.partitions()) for m in members) == [2, 2, 2]
    assert set().union(*(m.partitions() for m in members)) == set(range(6))
    g = h.group()
    assert g.state is ConsumerGroupState.STABLE
    assert {m.epoch for m in members} == {g.assignment_epoch} == {3}


def test_a_partition_moves_only_after_its_owner_revoked_it() -> None:
    h = Harness()
    a, b = Member(h), Member(h)
    a.join()
    assert a.partitions() == set(range(6))
    a.beat()  # acknowledges
    r = b.join()
    # B is at the new epoch but gets nothing: A still owns everything.
    assert r.member_epoch == 2 and r.assignment == {}
    assert h.group().members[b.member_id].state is MemberState.UNRELEASED_PARTITIONS
    assert h.group().state is ConsumerGroupState.RECONCILING
    # A is told to revoke half, and stays at epoch 1 until it has.
    r = a.beat()
    assert r.member_epoch == 1 and len(a.partitions()) == 3
    assert h.group().members[a.member_id].state is MemberState.UNREVOKED_PARTITIONS
    given_up = set(range(6)) - a.partitions()
    # B asks again before A acknowledged: still nothing.
    assert b.beat().assignment is None and b.partitions() == set()
    r = a.beat()  # reports what it owns now
    assert r.member_epoch == 2
    r = b.beat()
    assert b.partitions() == given_up
    no_overlap([a, b])
    converge([a, b])
    assert h.group().state is ConsumerGroupState.STABLE


def test_without_owned_partitions_the_revocation_is_not_assumed() -> None:
    h = Harness()
    a, b = Member(h), Member(h)
    a.join()
    a.beat()
    b.join()
    a.beat()  # told to revoke
    a.report_owned = False  # a client that never reports
    for _ in range(3):
        a.beat()
        b.beat()
    assert b.partitions() == set()
    assert h.group().members[a.member_id].state is MemberState.UNREVOKED_PARTITIONS


def test_member_that_does_not_revoke_in_its_rebalance_timeout_is_removed() -> None:
    h = Harness()
    a, b = Member(h), Member(h)
    a.join()
    a.beat()
    b.join()
    a.beat()  # told to revoke, keeps heartbeating, never acknowledges
    a.report_owned = False
    for _ in range(REBALANCE // 10_000 - 1):
        h.advance(10_000)
        a.beat()
        b.beat()
    h.advance(9_999)
    assert a.member_id in h.group().members
    h.advance(1)
    assert a.member_id not in h.group().members
    converge([b])
    assert b.partitions() == set(range(6))


# ------------------------------------------------------------------------------- leaving


def test_members_that_leave_are_replaced_by_the_others() -> None:
    h = Harness()
    members = [Member(h) for _ in range(3)]
    for m in members:
        m.join()
    converge(members)
    leaver, stayers = members[0], members[1:]
    epoch = h.group().group_epoch
    r = leaver.leave()
    assert r.error == 0 and r.member_epoch == -1
    assert leaver.member_id not in h.group().members
    assert h.group().group_epoch == epoch + 1
    converge(stayers)
    assert sorted(len(m.partitions()) for m in stayers) == [3, 3]
    assert stayers[0].partitions() | stayers[1].partitions() == set(range(6))
    # The last one leaving leaves an empty group behind.
    for m in stayers:
        m.leave()
    assert h.group().state is ConsumerGroupState.EMPTY
    leaver.epoch = 2
    assert leaver.beat().error == ErrorCode.UNKNOWN_MEMBER_ID


def test_session_timeout_removes_a_silent_member() -> None:
    h = Harness()
    a, b = Member(h), Member(h)
    a.join()
    b.join()
    converge([a, b])
    for _ in range(4):
        h.advance(SESSION // 4)
        a.beat()
    assert b.member_id not in h.group().members
    converge([a])
    assert a.partitions() == set(range(6))
    assert b.beat().error == ErrorCode.UNKNOWN_MEMBER_ID


# ------------------------------------------------------------------------------- static


def test_static_member_leaves_for_a_while_and_comes_back_with_its_partitions() -> None:
    h = Harness()
    s = Member(h, instance="i-1")
    d = Member(h)
    s.join()
    d.join()
    converge([s, d])
    kept = s.partitions()
    epoch = h.group().group_epoch
    assert s.leave(epoch=-2).member_epoch == -2
    member = h.group().members[s.member_id]
    assert member.member_epoch == -2 and member.assigned == {TOPIC_A: frozenset(kept)}
    converge([d])
    assert d.partitions() == set(range(6)) - kept  # nobody takes the static member's share
    # Back under a new member id: the same partitions, no new group epoch.
    back = Member(h, instance="i-1")
    r = back.join()
    assert r.error == 0 and back.partitions() == kept
    assert h.group().group_epoch == epoch
    assert s.member_id not in h.group().members
    # The old incarnation is fenced.
    assert s.beat().error == ErrorCode.FENCED_INSTANCE_ID
    # A second instance with the same id while the first is active.
    other = Member(h, instance="i-1")
    assert other.join().error == ErrorCode.UNRELEASED_INSTANCE_ID
    converge([back, d])


def test_static_member_that_does_not_come_back_expires() -> None:
    h = Harness()
    s, d = Member(h, instance="i-1"), Member(h)
    s.join()
    d.join()
    converge([s, d])
    s.leave(epoch=-2)
    for _ in range(5):
        h.advance(SESSION // 4)
        d.beat()
    assert s.member_id not in h.group().members and "i-1" not in h.group().static_members
    converge([d])
    assert d.partitions() == set(range(6))


def test_static_leave_for_good() -> None:
    h = Harness()
    s = Member(h, instance="i-1")
    s.join()
    assert s.leave(epoch=-1).error == 0
    assert h.group().members == {} and h.group().static_members == {}


# ------------------------------------------------------------------------------- epochs


def test_fencing_by_member_epoch() -> None:
    h = Harness()
    a, b = Member(h), Member(h)
    a.join()
    a.beat()
    assert a.epoch == 1
    a.epoch = 5
    assert a.beat().error == ErrorCode.FENCED_MEMBER_EPOCH
    a.epoch = 1
    b.join()
    converge([a, b])
    assert a.epoch == 2
    # The previous epoch with no more than it owns: the response moving it on was lost.
    a.epoch = 1
    a.report_owned = True
    r = a.beat()
    assert r.error == 0 and r.member_epoch == 2
    # The previous epoch without saying what it owns, or an older one: fenced.
    a.epoch = 1
    assert a.beat().error == ErrorCode.FENCED_MEMBER_EPOCH
    a.epoch = 0
    a.report_owned = True
    r = h.heartbeat(HeartbeatRequest("g", a.member_id, -3, api_version=1))
    assert r.error == ErrorCode.INVALID_REQUEST
    ghost = Member(h, member_id="ghost")
    ghost.epoch = 1
    assert ghost.beat().error == ErrorCode.UNKNOWN_MEMBER_ID
    # A fenced member rejoins with epoch 0 under its id and gets its partitions back.
    owned = h.group().members[a.member_id].assigned
    r = a.join()
    assert r.error == 0 and r.assignment == owned


def test_group_max_size() -> None:
    h = Harness(config=ConsumerGroupConfig(max_size=2))
    a, b, c = Member(h), Member(h), Member(h)
    assert a.join().error == 0 and b.join().error == 0
    r = c.join()
    assert r.error == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert r.message == "The consumer group has reached its maximum capacity of 2 members."
    assert a.join().error == 0  # known members may rejoin


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"rebalance_timeout_ms": -1}, ErrorCode.INVALID_REQUEST, "RebalanceTimeoutMs must"),
        ({"owned": None}, ErrorCode.INVALID_REQUEST, "TopicPartitions must be empty"),
        ({"owned": {TOPIC_A: frozenset({1})}}, ErrorCode.INVALID_REQUEST, "TopicPartitions"),
        ({"subscribed_topic_names": None}, ErrorCode.INVALID_REQUEST, "SubscribedTopicNames"),
        ({"instance_id": ""}, ErrorCode.INVALID_REQUEST, "InstanceId can't be empty"),
        ({"server_assignor": "sticky"}, ErrorCode.UNSUPPORTED_ASSIGNOR, "ServerAssignor sticky"),
        ({"subscribed_topic_regex": "(("}, ErrorCode.INVALID_REGULAR_EXPRESSION, "Subscribed"),
    ],
)
def test_invalid_joins(change: dict[str, object], error: int, message: str) -> None:
    h = Harness()
    fields: dict[str, object] = {
        "group_id": "g",
        "member_id": "m",
        "member_epoch": 0,
        "rebalance_timeout_ms": REBALANCE,
        "subscribed_topic_names": ["a"],
        "owned": {},
        "api_version": 1,
    }
    fields.update(change)
    r = h.heartbeat(HeartbeatRequest(**fields))  # type: ignore[arg-type]
    assert r.error == error and r.message is not None and r.message.startswith(message)


def test_static_leave_needs_an_instance_id() -> None:
    h = Harness()
    r = h.heartbeat(HeartbeatRequest("g", "m", -2, api_version=1))
    assert r.error == ErrorCode.INVALID_REQUEST
    assert h.heartbeat(HeartbeatRequest("", "m", 0)).error == ErrorCode.INVALID_GROUP_ID


# ----------------------------------------------------------------------- topic metadata


def test_partitions_added_to_a_subscribed_topic_start_a_new_epoch() -> None:
    h = Harness()
    a, b = Member(h), Member(h)
    a.join()
    b.join()
    converge([a, b])
    epoch = h.group().group_epoch
    h.set_topic("a", TOPIC_A, 8)
    assert h.group().group_epoch == epoch + 1
    converge([a, b])
    assert a.partitions() | b.partitions() == set(range(8))
    assert len(a.partitions()) == len(b.partitions()) == 4


def test_topics_created_and_deleted() -> None:
    h = Harness()
    a = Member(h, topics=["a", "b"])
    a.join()
    assert a.owned == {TOPIC_A: frozenset(range(6))}
    h.set_topic("b", TOPIC_B, 2)
    converge([a])
    assert a.owned == {TOPIC_A: frozenset(range(6)), TOPIC_B: frozenset({0, 1})}
    h.set_topic("a", TOPIC_A, None)
    converge([a])
    assert a.owned == {TOPIC_B: frozenset({0, 1})}
    # Unrelated topics change nothing.
    epoch = h.group().group_epoch
    h.set_topic("c", TOPIC_C, 3)
    assert h.group().group_epoch == epoch


def test_regex_subscription_follows_matching_topics() -> None:
    h = Harness()
    m = Member(h, topics=[], regex="a|b.*")
    m.join()
    assert m.owned == {TOPIC_A: frozenset(range(6))}
    h.set_topic("bees", TOPIC_B, 1)
    h.set_topic("c", TOPIC_C, 1)
    converge([m])
    assert m.owned == {TOPIC_A: frozenset(range(6)), TOPIC_B: frozenset({0})}
    h.set_topic("__consumer_offsets", uuid.UUID(int=99), 50)
    converge([m])
    assert set(m.owned) == {TOPIC_A, TOPIC_B}


def test_subscription_change_reassigns() -> None:
    h = Harness()
    h.set_topic("b", TOPIC_B, 2)
    m = Member(h, topics=["a"])
    m.join()
    m.beat()
    r = h.heartbeat(
        HeartbeatRequest("g", m.member_id, m.epoch, subscribed_topic_names=["b"], api_version=1)
    )
    assert r.error == 0 and r.member_epoch == 1  # revokes "a" first
    m.owned, m.report_owned = {}, True
    m.epoch = r.member_epoch
    converge([m])
    assert m.owned == {TOPIC_B: frozenset({0, 1})}


def test_range_assignor_on_request() -> None:
    h = Harness()
    h.set_topic("b", TOPIC_B, 6)
    members = [Member(h, topics=["a", "b"], assignor="range") for _ in range(2)]
    for m in members:
        m.join()
    converge(members)
    # Co-partitioned: the same partition numbers of both topics.
    for m in members:
        assert m.partitions(TOPIC_A) == m.partitions(TOPIC_B)
        assert len(m.partitions(TOPIC_A)) == 3


# ------------------------------------------------------------------------------ offsets


def commit(
    h: Harness, epoch: int, member_id: str, offsets: dict[tuple[str, int], int], version: int = 9
) -> dict[tuple[str, int], int]:
    out: list[dict[tuple[str, int], int]] = []
    h.coordinator.commit_offsets(
        "g",
        epoch,
        member_id,
        None,
        {tp: CommittedOffset(o) for tp, o in offsets.items()},
        out.append,
        api_version=version,
    )
    h.settle()
    return out[0]


def test_offset_commits_and_fetches_check_the_member_epoch() -> None:
    h = Harness()
    a = Member(h)
    a.join()
    assert commit(h, 1, a.member_id, {("a", 0): 5}) == {("a", 0): 0}
    assert commit(h, 0, a.member_id, {("a", 0): 6}) == {("a", 0): ErrorCode.STALE_MEMBER_EPOCH}
    assert commit(h, 1, "who", {("a", 0): 6}) == {("a", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    assert commit(h, 1, a.member_id, {("a", 0): 6}, version=8) == {
        ("a", 0): ErrorCode.UNSUPPORTED_VERSION
    }
    assert commit(h, -1, "", {("a", 0): 6}) == {("a", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    code, found = h.coordinator.fetch_offsets("g", [("a", 0), ("a", 1)], a.member_id, 1)
    assert code == 0 and [(tp, o.offset if o else None) for tp, o in found] == [
        (("a", 0), 5),
        (("a", 1), None),
    ]
    assert h.coordinator.fetch_offsets("g", None, a.member_id, 0)[0] == ErrorCode.STALE_MEMBER_EPOCH
    assert h.coordinator.fetch_offsets("g", None, "who", 1)[0] == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.coordinator.fetch_offsets("g", None)[0] == 0  # admin tools
    a.leave()
    # Without members, tools outside the group may commit.
    assert commit(h, -1, "", {("a", 1): 7}) == {("a", 1): 0}


def test_commits_wait_for_earlier_writes() -> None:
    h = Harness()
    a = Member(h)
    a.join()
    a.beat()
    beat = HeartbeatRequest(
        "g", a.member_id, 1, client_id="client", client_host="/127.0.0.1", api_version=1
    )
    replies: list[HeartbeatResult] = []
    h.coordinator.heartbeat(beat, replies.append)
    assert replies  # nothing written, nothing pending: at once
    b_replies: list[HeartbeatResult] = []
    h.coordinator.heartbeat(
        HeartbeatRequest(
            "g",
            "b",
            0,
            rebalance_timeout_ms=1,
            subscribed_topic_names=["a"],
            owned={},
            api_version=1,
        ),
        b_replies.append,
    )
    replies.clear()
    h.coordinator.heartbeat(beat, replies.append)
    assert not replies and not b_replies  # both wait for b's join to be replicated
    h.settle()
    assert len(replies) == len(b_replies) == 1


def test_failed_write_is_reported() -> None:
    h = Harness()
    h.write_error = ErrorCode.NOT_LEADER_OR_FOLLOWER
    r = Member(h).join()
    assert r.error == ErrorCode.NOT_COORDINATOR


# -------------------------------------------------------------------------- persistence


def test_a_reloaded_coordinator_has_the_same_groups() -> None:
    h = Harness()
    h.set_topic("b", TOPIC_B, 3)
    members = [Member(h, topics=["a", "b"]) for _ in range(2)] + [Member(h, instance="s")]
    for m in members:
        m.join()
    converge(members)
    commit(h, members[0].epoch, members[0].member_id, {("a", 0): 42})
    members[1].leave()
    converge([members[0], members[2]])
    members[2].leave(epoch=-2)
    g = h.group()
    loaded = h.reloaded().groups["g"]
    assert loaded.members == g.members
    assert loaded.target == g.target
    assert (loaded.group_epoch, loaded.assignment_epoch) == (g.group_epoch, g.assignment_epoch)
    assert loaded.subscription_metadata == g.subscription_metadata
    assert loaded.owners == g.owners and loaded.static_members == g.static_members
    assert loaded.offsets[("a", 0)].offset == 42


def test_deleted_group_stays_deleted_after_reload() -> None:
    h = Harness()
    a = Member(h)
    a.join()
    commit(h, 1, a.member_id, {("a", 0): 1})
    a.leave()
    out: list[dict[str, int]] = []
    h.coordinator.delete_groups(["g", "nope"], out.append)
    h.settle()
    assert out == [{"g": 0, "nope": ErrorCode.GROUP_ID_NOT_FOUND}]
    assert "g" not in h.coordinator.groups
    reloaded = h.reloaded()
    assert "g" not in reloaded.groups and "g" not in reloaded.classic.groups


def test_non_empty_group_cannot_be_deleted() -> None:
    h = Harness()
    Member(h).join()
    out: list[dict[str, int]] = []
    h.coordinator.delete_groups(["g"], out.append)
    assert out == [{"g": ErrorCode.NON_EMPTY_GROUP}]


def test_session_timeouts_restart_after_a_load() -> None:
    h = Harness()
    Member(h).join()
    fresh = Harness(topics=dict(h.topics))
    c = fresh.coordinator
    p = partition_for("g", PARTITIONS)
    c.begin_load(p)
    for key, value in h.log[p]:
        c.replay(p, key, value)
    c.complete_load(p)
    fresh.advance(SESSION - 1)
    assert c.groups["g"].members
    fresh.advance(1)
    assert not c.groups["g"].members


# --------------------------------------------------------------- classic and consumer


def classic_join(h: Harness, group: str) -> JoinResult:
    out: list[JoinResult] = []
    error = h.coordinator.prepare_classic_join(group)
    if error:
        return JoinResult(error)
    h.classic.join_group(
        JoinRequest(group, "", "consumer", [("range", b"")], 10_000, 10_000), out.append
    )
    h.settle()
    return out[0]


def test_classic_join_on_a_consumer_group_with_members_is_refused() -> None:
    h = Harness()
    Member(h).join()
    assert classic_join(h, "g").error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_consumer_join_on_a_classic_group_with_members_is_refused() -> None:
    h = Harness()
    assert classic_join(h, "c").error == 0
    r = Member(h, group="c").join()
    assert r.error == ErrorCode.GROUP_ID_NOT_FOUND
    assert r.message is not None and "not a consumer group" in r.message


def test_empty_groups_change_kind_and_keep_their_offsets() -> None:
    h = Harness()
    # Offsets of a group nobody joined yet: an empty classic group.
    out: list[dict[tuple[str, int], int]] = []
    h.classic.commit_offsets("g", -1, "", None, {("a", 0): CommittedOffset(11)}, out.append)
    h.settle()
    assert h.classic.groups["g"].state is GroupState.EMPTY
    m = Member(h)
    assert m.join().error == 0
    assert "g" not in h.classic.groups
    assert h.coordinator.fetch_offsets("g", [("a", 0)])[1][0][1] == CommittedOffset(
        11, -1, "", h.timer.now()
    )
    assert h.reloaded().groups["g"].offsets[("a", 0)].offset == 11
    m.leave()
    # Back to classic: the empty consumer group turns into a classic one.
    r = classic_join(h, "g")
    assert r.error == 0 and r.generation_id == 1
    assert "g" not in h.coordinator.groups
    assert h.classic.fetch_offsets("g", [("a", 0)])[1][0][1] is not None
    reloaded = h.reloaded()
    assert "g" not in reloaded.groups
    assert reloaded.classic.groups["g"].offsets[("a", 0)].offset == 11


# ------------------------------------------------------------------ describe and list


def test_describe_and_list() -> None:
    h = Harness()
    a = Member(h)
    a.join()
    code, message, d = h.coordinator.describe("g")
    assert code == 0 and message is None and d is not None
    assert (d.state, d.group_epoch, d.assignment_epoch, d.assignor) == ("Stable", 1, 1, "uniform")
    assert [dm.member.member_id for dm in d.members] == [a.member_id]
    assert d.members[0].target == {TOPIC_A: frozenset(range(6))}
    assert d.topic_names[TOPIC_A] == "a"
    assert h.coordinator.describe("none")[0] == ErrorCode.GROUP_ID_NOT_FOUND
    code, classic_view = h.coordinator.describe_group("g")
    assert code == 0 and classic_view.protocol_type == "consumer"
    assert classic_view.state == "Stable" and classic_view.protocol_data == "uniform"
    assert classic_view.members[0].assignment.startswith(b"\x00\x00")
    out: list[dict[tuple[str, int], int]] = []
    h.classic.commit_offsets("c", -1, "", None, {("a", 0): CommittedOffset(1)}, out.append)
    h.settle()
    _, listed = h.coordinator.list_groups()
    assert [(g.group_id, g.group_type, g.state) for g in listed] == [
        ("c", "classic", "Empty"),
        ("g", "consumer", "Stable"),
    ]
    assert [g.group_id for g in h.coordinator.list_groups(types=["consumer"])[1]] == ["g"]
    assert [g.group_id for g in h.coordinator.list_groups(types=["classic"])[1]] == ["c"]
    assert h.coordinator.list_groups(states=["empty"], types=["consumer"])[1] == []


# ------------------------------------------------------------------------------ records


def test_record_bytes() -> None:
    key = ConsumerKey(GROUP_METADATA, "g")
    assert encode_key(key) == b"\x00\x03\x00\x01g"
    assert encode_value(GroupMetadataValue(7)) == b"\x00\x00\x00\x00\x00\x07\x00"
    member_key = ConsumerKey(MEMBER_METADATA, "g", "m")
    assert encode_key(member_key) == b"\x00\x05\x00\x01g\x00\x01m"
    value = CurrentAssignmentValue(3, 2, 1, {TOPIC_A: frozenset({2, 0})}, {})
    raw = encode_value(value)
    # version, epoch, previous epoch, state, one topic (uuid, 2 partitions, no tags), none
    # pending, no tags
    assert raw == (
        b"\x00\x00"
        + b"\x00\x00\x00\x03\x00\x00\x00\x02\x01"
        + b"\x02"
        + TOPIC_A.bytes
        + b"\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00"
        + b"\x01"
        + b"\x00"
    )


@pytest.mark.parametrize(
    "record",
    [
        ConsumerRecord(ConsumerKey(GROUP_METADATA, "g"), GroupMetadataValue(4)),
        ConsumerRecord(
            ConsumerKey(4, "g"),
            PartitionMetadataValue(
                2, (TopicMetadata(TOPIC_A, "a", 6), TopicMetadata(TOPIC_B, "b", 1))
            ),
        ),
        ConsumerRecord(
            ConsumerKey(MEMBER_METADATA, "g", "m"),
            MemberMetadataValue("i", None, "c", "/h", ("a", "b"), "x.*", 300, "range"),
        ),
        ConsumerRecord(
            ConsumerKey(7, "g", "m"),
            TargetAssignmentMemberValue({TOPIC_A: frozenset({1, 2}), TOPIC_B: frozenset({0})}),
        ),
        ConsumerRecord(
            ConsumerKey(CURRENT_MEMBER_ASSIGNMENT, "g", "m"),
            CurrentAssignmentValue(5, 4, 1, {TOPIC_A: frozenset({1})}, {TOPIC_B: frozenset({3})}),
        ),
        ConsumerRecord(ConsumerKey(CURRENT_MEMBER_ASSIGNMENT, "g", "m"), None),
    ],
)
def test_records_round_trip(record: ConsumerRecord) -> None:
    key, value = encode_record(record)
    assert decode_record(key, value) == record


def test_unknown_tagged_fields_are_skipped_and_other_keys_ignored() -> None:
    raw = encode_value(GroupMetadataValue(9))
    # The 4.1 metadata hash as tag 0 (8 bytes), after the epoch.
    tagged = raw[:-1] + b"\x01\x00\x08" + b"\x00" * 8
    record = decode_record(encode_key(ConsumerKey(GROUP_METADATA, "g")), tagged)
    assert record is not None and record.value == GroupMetadataValue(9)
    assert decode_record(encode_offset_key("g", "a", 0), b"") is None


# ------------------------------------------------------------------------------ assignors


def infos(**topics: int) -> dict[uuid.UUID, TopicInfo]:
    ids = {"a": TOPIC_A, "b": TOPIC_B, "c": TOPIC_C}
    return {ids[n]: TopicInfo(ids[n], n, p) for n, p in topics.items()}


def test_uniform_is_balanced_and_sticky() -> None:
    topics = infos(a=7)
    members = [MemberSubscription(f"m{i}", frozenset({TOPIC_A})) for i in range(3)]
    first = UniformAssignor().assign(members, topics, {})
    assert sorted(len(a[TOPIC_A]) for a in first.values()) == [2, 2, 3]
    # One more member: the others give up only what it needs.
    more = [*members, MemberSubscription("m3", frozenset({TOPIC_A}))]
    second = UniformAssignor().assign(more, topics, first)
    moved = sum(len(first[m][TOPIC_A] - second[m].get(TOPIC_A, frozenset())) for m in first)
    assert moved == 1 and sorted(len(a.get(TOPIC_A, ())) for a in second.values()) == [1, 2, 2, 2]


def test_uniform_with_different_subscriptions() -> None:
    topics = infos(a=4, b=2)
    members = [
        MemberSubscription("m0", frozenset({TOPIC_A, TOPIC_B})),
        MemberSubscription("m1", frozenset({TOPIC_B})),
    ]
    out = UniformAssignor().assign(members, topics, {})
    assert out["m0"] == {TOPIC_A: frozenset(range(4))}
    assert out["m1"] == {TOPIC_B: frozenset({0, 1})}


def test_range_gives_ranges() -> None:
    topics = infos(a=5)
    members = [MemberSubscription(f"m{i}", frozenset({TOPIC_A})) for i in range(2)]
    out = RangeAssignor().assign(members, topics, {})
    assert out == {"m0": {TOPIC_A: frozenset({0, 1, 2})}, "m1": {TOPIC_A: frozenset({3, 4})}}


def test_classic_groups_still_tombstone_normally() -> None:
    """A consumer group's tombstones never touch the classic group records of other ids."""
    h = Harness()
    m = Member(h)
    m.join()
    m.leave()
    out: list[dict[str, int]] = []
    h.coordinator.delete_groups(["g"], out.append)
    h.settle()
    p = partition_for("g", PARTITIONS)
    kinds = [decode_record(k, v) for k, v in h.log[p]]
    assert all(r is not None for r in kinds)
    assert kinds[-1] == ConsumerRecord(ConsumerKey(GROUP_METADATA, "g"), None)


# ------------------------------------------------------- offsets.retention.minutes

RETENTION = 200_000
CHECK_INTERVAL = 10_000


def test_offsets_expire_by_commit_time_unless_subscribed_checked_periodically() -> None:
    h = Harness(
        classic_config=GroupConfig(
            initial_rebalance_delay_ms=0,
            offsets_retention_ms=RETENTION,
            offsets_retention_check_interval_ms=CHECK_INTERVAL,
        )
    )
    a = Member(h)
    a.join()
    converge([a])
    assert commit(h, a.epoch, a.member_id, {("a", 0): 5, ("gone", 0): 6}) == {
        ("a", 0): 0,
        ("gone", 0): 0,
    }
    committed_at = h.timer.now()
    # The member stays: its subscribed topic keeps its offset, the other one expires at the
    # first check after the retention.
    while h.timer.now() < committed_at + RETENTION + CHECK_INTERVAL:
        h.advance(SESSION // 3)
        assert a.beat().error == 0
    assert [tp for tp, _ in h.coordinator.fetch_offsets("g", None)[1]] == [("a", 0)]
    assert encode_offset_key("g", "gone", 0) in [
        k for k, v in h.log[h.group().partition] if v is None
    ]
    # Without members nothing is subscribed: the rest expires at the next check, and the
    # group, empty and without offsets, is deleted with tombstones.
    a.leave()
    h.advance(CHECK_INTERVAL)
    assert "g" not in h.coordinator.groups
    assert "g" not in h.reloaded().groups
    assert "g" not in h.reloaded().classic.groups


def test_the_expiry_check_stops_when_no_partition_is_served() -> None:
    h = Harness(
        classic_config=GroupConfig(
            initial_rebalance_delay_ms=0,
            offsets_retention_ms=RETENTION,
            offsets_retention_check_interval_ms=CHECK_INTERVAL,
        )
    )
    h.classic.commit_offsets("solo", -1, "", None, {("a", 0): CommittedOffset(1)}, lambda r: None)
    h.settle()
    for p in range(PARTITIONS):
        h.coordinator.unload(p)
    h.advance(CHECK_INTERVAL)
    assert h.timer.deadline(("offset-expiry",)) is None
    p = h.classic.partition_of("solo")
    h.coordinator.begin_load(p)
    for key, value in h.log[p]:
        h.coordinator.replay(p, key, value)
    h.coordinator.complete_load(p)
    assert h.timer.deadline(("offset-expiry",)) == h.timer.now() + CHECK_INTERVAL
    h.advance(RETENTION)
    assert "solo" not in h.classic.groups
