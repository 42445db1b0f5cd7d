"""Consumer groups with real clients against a real `kraft serve` node.

With each of kafka-python, aiokafka and confluent-kafka: members of one group split a
6-partition topic with no overlap and take over the partitions of one that leaves; a
restarted consumer resumes exactly after the committed offsets; committed offsets survive
kill -9 and a clean restart of the broker; and a group mixing the three clients works when
they share an assignor. First-join and rebalance times are printed as `FIGURE` lines.

Waits are bounded and on observable conditions (assignments, records consumed, commits
done); no sleep stands in for synchronisation.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kraft.net.client import KafkaConnection
from kraft.net.protocol import (
    DeleteGroupsRequest,
    DescribeGroupsRequest,
    ErrorCode,
    FindCoordinatorRequest,
    ListGroupsRequest,
    Message,
    MetadataRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
)
from tests.e2e import group_clients
from tests.e2e.client_drivers import KafkaPythonDriver
from tests.e2e.conftest import NodeProcess
from tests.e2e.group_clients import (
    MEMBERS,
    GroupMember,
    assert_once_each,
    close_all,
    consumed,
    figure,
    settled,
)
from tests.wait import wait_until

pytestmark = pytest.mark.timeout(120)

PARTITIONS = 6
# Like test setups of Kafka and `kraft up`: a new group's first rebalance starts at once.
NODE_CONFIG = {"group.initial.rebalance.delay.ms": "0"}


@pytest.fixture(scope="module")
def group_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node whose `__consumer_offsets` exists (the first FindCoordinator creates it, like
    Kafka's first use), so join times below do not include creating its 50 partitions."""
    n = NodeProcess(tmp_path_factory.mktemp("groups"), extra=NODE_CONFIG)
    n.start()
    try:
        start = time.monotonic()
        found = request(n, FindCoordinatorRequest(key="warm-up", key_type=0), 3)
        assert found.error_code == 0, found
        figure("offsets_topic_creation", time.monotonic() - start)
        yield n
    finally:
        n.stop()


@pytest.fixture
def own_node(tmp_path: Path) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path, extra=NODE_CONFIG)
    n.start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(params=sorted(MEMBERS))
def member_cls(request: pytest.FixtureRequest) -> type[GroupMember]:
    return MEMBERS[request.param]


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A topic and group name unique to the test id."""
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")


# ------------------------------------------------------------------------------ helpers


def request(node: NodeProcess, message: Message, version: int) -> Any:
    """One raw request at `version` on a connection of its own."""

    async def send() -> Message:
        conn = KafkaConnection("127.0.0.1", node.port, client_id="e2e-raw")
        async with asyncio.timeout(15):
            await conn.connect()
            try:
                return await conn.send(message, version)
            finally:
                await conn.close()

    return asyncio.run(send())


def create_topic(node: NodeProcess, topic: str) -> None:
    assert KafkaPythonDriver(node.bootstrap).create_topics({topic: PARTITIONS}) == {topic: 0}


def produce(node: NodeProcess, topic: str, per_partition: int, tag: str) -> set[tuple[int, int]]:
    """`per_partition` records into every partition; their (partition, offset)."""
    driver = KafkaPythonDriver(node.bootstrap)
    return group_clients.produce_to_each(driver, topic, PARTITIONS, per_partition, tag)


def owns_all(member: GroupMember) -> Callable[[], bool]:
    return lambda: member.assigned == frozenset(range(PARTITIONS))


def log_mark(node: NodeProcess) -> int:
    return node.log_path.stat().st_size


def assert_node_log_clean(node: NodeProcess, since: int) -> None:
    with open(node.log_path, "rb") as f:
        f.seek(since)
        new = f.read().decode(errors="replace")
    bad = [line for line in new.splitlines() if "closing connection" in line or "ERROR" in line]
    assert bad == [], "\n".join(bad)


def split(members: Sequence[GroupMember]) -> bool:
    """`group_clients.split` of this module's topics."""
    return group_clients.split(members, PARTITIONS)


def start_group(
    cls: type[GroupMember] | Sequence[type[GroupMember]],
    node: NodeProcess,
    topic: str,
    group: str,
    count: int,
    assignor: str = "range",
) -> list[GroupMember]:
    classes = list(cls) if isinstance(cls, Sequence) else [cls] * count
    return [
        c(node.bootstrap, topic, group, assignor, name=f"{c.client}-{i}").start()
        for i, c in enumerate(classes)
    ]


# --------------------------------------------------------------------------------- tests


def test_first_join_is_well_under_a_second(
    member_cls: type[GroupMember], group_node: NodeProcess, name: str
) -> None:
    """A new group with one member: from the consumer's start to its first assignment
    (bootstrap, FindCoordinator, JoinGroup twice, SyncGroup). The offsets topic is created
    by the first FindCoordinator the node gets."""
    mark = log_mark(group_node)
    create_topic(group_node, name)
    (member,) = start_group(member_cls, group_node, name, name, 1)
    try:
        wait_until(owns_all(member), "the first join")
    finally:
        close_all([member])
    assert member.first_join_s is not None
    figure("first_join", member.first_join_s, client=member.client)
    assert member.first_join_s < 1.0
    assert_node_log_clean(group_node, mark)


def test_members_split_partitions_and_take_over_from_one_that_leaves(
    member_cls: type[GroupMember], group_node: NodeProcess, name: str
) -> None:
    mark = log_mark(group_node)
    create_topic(group_node, name)
    members = start_group(member_cls, group_node, name, name, 3)
    try:
        joined = wait_until(lambda: split(members), "three members to split six partitions")
        figure("three_members_split", joined, client=member_cls.client)
        assert [len(m.assigned) for m in members] == [2, 2, 2]

        first = produce(group_node, name, 10, "a")
        wait_until(settled(members, first), "60 records consumed and committed")
        assert_once_each(consumed(members), first)
        for m in members:
            assert {r.partition for r in m.records} <= m.assigned, m.name

        leaver, stayers = members[0], members[1:]
        taken = leaver.assigned
        start = time.monotonic()
        leaver.close()
        wait_until(lambda: split(stayers), "two members to take over")
        figure("rebalance_after_leave", time.monotonic() - start, client=member_cls.client)
        assert [len(m.assigned) for m in stayers] == [3, 3]
        assert taken <= stayers[0].assigned | stayers[1].assigned

        second = produce(group_node, name, 10, "b")
        wait_until(settled(stayers, second), "60 more records consumed and committed")
        # The partitions taken over resume after the leaver's commits: nothing twice.
        assert_once_each(consumed(members), first | second)
    finally:
        close_all(members)
    assert_node_log_clean(group_node, mark)


def test_restarted_consumer_resumes_after_the_committed_offsets(
    member_cls: type[GroupMember], group_node: NodeProcess, name: str
) -> None:
    mark = log_mark(group_node)
    create_topic(group_node, name)
    old = produce(group_node, name, 5, "old")
    (first,) = start_group(member_cls, group_node, name, name, 1)
    try:
        wait_until(settled([first], old), "the first consumer to commit")
    finally:
        close_all([first])
    assert_once_each(first.records, old)

    new = produce(group_node, name, 5, "new")
    (second,) = start_group(member_cls, group_node, name, name, 1)
    try:
        wait_until(settled([second], new), "the restarted consumer to catch up")
        committed = second.call(second.committed)
    finally:
        close_all([second])
    assert_once_each(second.records, new)  # exactly after the committed offsets
    assert committed == dict.fromkeys(range(PARTITIONS), 10)
    assert_node_log_clean(group_node, mark)


def test_committed_offsets_survive_kill_and_clean_restart(own_node: NodeProcess) -> None:
    topic = "restarts"
    create_topic(own_node, topic)
    produced = produce(own_node, topic, 5, "x")
    groups = {client: f"restart-{client}" for client in MEMBERS}
    for client, group in groups.items():
        (m,) = start_group(MEMBERS[client], own_node, topic, group, 1)
        try:
            wait_until(settled([m], produced), f"{client} to commit")
        finally:
            close_all([m])

    own_node.kill()  # kill -9: no clean shutdown of the coordinator's logs
    own_node.start()
    more = produce(own_node, topic, 1, "y")
    for client, group in groups.items():
        (m,) = start_group(MEMBERS[client], own_node, topic, group, 1)
        try:
            wait_until(settled([m], more), f"{client} to resume after kill -9")
        finally:
            close_all([m])
        assert_once_each(m.records, more)  # from offset 5 exactly

    own_node.stop()
    own_node.start()
    for client, group in groups.items():
        (m,) = start_group(MEMBERS[client], own_node, topic, group, 1)
        try:
            wait_until(owns_all(m), "assignment")
            assert m.call(m.committed) == dict.fromkeys(range(PARTITIONS), 6), client
        finally:
            close_all([m])
        assert m.records == []


@pytest.mark.parametrize("assignor", ["roundrobin", "range"])
def test_mixed_client_group_shares_an_assignor(
    group_node: NodeProcess, name: str, assignor: str
) -> None:
    mark = log_mark(group_node)
    create_topic(group_node, name)
    classes = [MEMBERS[c] for c in sorted(MEMBERS)]
    members = start_group(classes, group_node, name, name, 3, assignor)
    try:
        joined = wait_until(lambda: split(members), "the three clients to split the topic")
        figure("mixed_split", joined, assignor=assignor)
        first = produce(group_node, name, 10, "a")
        wait_until(settled(members, first), "the mixed group to consume")
        assert_once_each(consumed(members), first)
        for m in members:
            assert {r.partition for r in m.records} <= m.assigned, m.name

        leaver = next(m for m in members if m.client == "confluent-kafka")
        stayers = [m for m in members if m is not leaver]
        leaver.close()
        wait_until(lambda: split(stayers), "the other clients to take over")
        second = produce(group_node, name, 10, "b")
        wait_until(settled(stayers, second), "the rest to consume")
        assert_once_each(consumed(members), first | second)
    finally:
        close_all(members)
    assert_node_log_clean(group_node, mark)


def test_group_apis_on_the_wire(group_node: NodeProcess, name: str) -> None:
    """What clients rarely send: batched FindCoordinator, transactional keys, commits by
    consumers outside any group, the multi-group OffsetFetch, filters, deletions."""
    mark = log_mark(group_node)
    create_topic(group_node, name)
    a, b = f"{name}-a", f"{name}-b"

    found = request(group_node, FindCoordinatorRequest(key_type=0, coordinator_keys=[a, b]), 4)
    assert [(c.key, c.error_code, c.node_id, c.port) for c in found.coordinators] == [
        (a, 0, 1, group_node.port),
        (b, 0, 1, group_node.port),
    ]
    txn = request(group_node, FindCoordinatorRequest(key="tx", key_type=1), 3)
    assert txn.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE and txn.node_id == -1
    old = request(group_node, FindCoordinatorRequest(key=a), 0)
    assert (old.error_code, old.node_id, old.port) == (0, 1, group_node.port)

    # Generation -1 and no member: commits of consumers that assign partitions themselves.
    Topic, Part = (
        OffsetCommitRequest.OffsetCommitRequestTopic,
        (OffsetCommitRequest.OffsetCommitRequestPartition),
    )
    for group, offsets in ((a, {0: 5, 1: 6}), (b, {2: 7})):
        committed = request(
            group_node,
            OffsetCommitRequest(
                group_id=group,
                topics=[
                    Topic(
                        name=name,
                        partitions=[
                            Part(partition_index=p, committed_offset=o, committed_metadata="m")
                            for p, o in offsets.items()
                        ],
                    ),
                    Topic(name="no-such-topic", partitions=[Part(partition_index=0)]),
                ],
            ),
            8,
        )
        assert [[p.error_code for p in t.partitions] for t in committed.topics] == [
            [0] * len(offsets),
            [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION],
        ]

    Group = OffsetFetchRequest.OffsetFetchRequestGroup
    Topics = OffsetFetchRequest.OffsetFetchRequestTopics
    fetched = request(
        group_node,
        OffsetFetchRequest(
            groups=[
                Group(group_id=a, topics=None),  # every committed offset
                Group(group_id=b, topics=[Topics(name=name, partition_indexes=[2, 3])]),
                Group(group_id=f"{name}-none", topics=[Topics(name=name, partition_indexes=[0])]),
            ]
        ),
        8,
    )
    assert [
        (
            g.group_id,
            g.error_code,
            [
                (p.partition_index, p.committed_offset, p.metadata)
                for t in g.topics
                for p in t.partitions
            ],
        )
        for g in fetched.groups
    ] == [
        (a, 0, [(0, 5, "m"), (1, 6, "m")]),
        (b, 0, [(2, 7, "m"), (3, -1, "")]),
        (f"{name}-none", 0, [(0, -1, "")]),
    ]
    v1 = request(
        group_node,
        OffsetFetchRequest(
            group_id=a,
            topics=[OffsetFetchRequest.OffsetFetchRequestTopic(name=name, partition_indexes=[1])],
        ),
        1,
    )
    assert [(p.partition_index, p.committed_offset) for p in v1.topics[0].partitions] == [(1, 6)]

    listed = request(group_node, ListGroupsRequest(states_filter=["empty"]), 5)
    assert {(g.group_id, g.group_state, g.group_type) for g in listed.groups} >= {
        (a, "Empty", "classic"),
        (b, "Empty", "classic"),
    }
    assert request(group_node, ListGroupsRequest(types_filter=["consumer"]), 5).groups == []
    described = request(group_node, DescribeGroupsRequest(groups=[a, f"{name}-none"]), 5)
    assert [(g.group_id, g.error_code, g.group_state) for g in described.groups] == [
        (a, 0, "Empty"),
        (f"{name}-none", 0, "Dead"),
    ]

    deleted = request(
        group_node,
        OffsetDeleteRequest(
            group_id=a,
            topics=[
                OffsetDeleteRequest.OffsetDeleteRequestTopic(
                    name=name,
                    partitions=[
                        OffsetDeleteRequest.OffsetDeleteRequestPartition(partition_index=0)
                    ],
                )
            ],
        ),
        0,
    )
    assert deleted.error_code == 0 and deleted.topics[0].partitions[0].error_code == 0
    gone = request(group_node, DeleteGroupsRequest(groups_names=[a, b, f"{name}-none"]), 2)
    assert [(r.group_id, r.error_code) for r in gone.results] == [
        (a, 0),
        (b, 0),
        (f"{name}-none", ErrorCode.GROUP_ID_NOT_FOUND),
    ]
    listed = request(group_node, ListGroupsRequest(), 5)
    assert not {a, b} & {g.group_id for g in listed.groups}

    metadata = request(group_node, MetadataRequest(topics=None), 12)
    offsets_topic = next(t for t in metadata.topics if t.name == "__consumer_offsets")
    assert offsets_topic.is_internal and len(offsets_topic.partitions) == 50
    assert_node_log_clean(group_node, mark)
