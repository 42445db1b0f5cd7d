"""KIP-848 consumer groups (`group.protocol=consumer`) with confluent-kafka (librdkafka)
against a real `kraft serve` node.

Three consumers split a 6-partition topic with no overlap and take over from one that
leaves; a restarted consumer resumes exactly after the committed offsets, also after the
broker was killed (the group's records and offsets come back from `__consumer_offsets`);
classic and consumer groups coexist on different group ids and refuse to mix on one.

The node runs with a 500 ms heartbeat interval (`group.consumer.heartbeat.interval.ms`,
Kafka's default is 5 s) so that reconciliation rounds, one heartbeat each, stay short.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kraft.net.protocol import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
    DescribeGroupsRequest,
    ErrorCode,
    JoinGroupRequest,
    ListGroupsRequest,
)
from tests.e2e.client_drivers import KafkaPythonDriver
from tests.e2e.conftest import NodeProcess
from tests.e2e.group_clients import (
    ConfluentMember,
    GroupMember,
    KafkaPythonMember,
    assert_once_each,
    close_all,
    consumed,
    figure,
    settled,
)
from tests.e2e.test_groups import (
    PARTITIONS,
    assert_node_log_clean,
    create_topic,
    log_mark,
    owns_all,
    produce,
    request,
    split,
)
from tests.wait import wait_until

pytestmark = pytest.mark.timeout(120)

NODE_CONFIG = {
    "group.initial.rebalance.delay.ms": "0",
    "group.consumer.heartbeat.interval.ms": "500",
}


class ConsumerProtocolMember(ConfluentMember):
    """confluent-kafka with the KIP-848 protocol: the broker assigns (`assignor` names the
    server assignor); heartbeat interval and session timeout are the broker's."""

    client = "confluent-kafka-consumer-protocol"
    instance_id: str | None = None  # group.instance.id: a static member

    def _open(self) -> None:
        from confluent_kafka import Consumer

        config: dict[str, object] = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "group.protocol": "consumer",
            "group.remote.assignor": self.assignor,
            "client.id": self.name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "topic.metadata.refresh.interval.ms": 1000,
        }
        if self.instance_id is not None:
            config["group.instance.id"] = self.instance_id
        self.consumer = Consumer(config)
        # A topic name starting with ^ is a regex, which the broker resolves (KIP-848).
        self.consumer.subscribe([self.topic])

    def topic_partitions(self) -> set[tuple[str, int]]:
        """The assignment with topic names (call via `call`)."""
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("consumer-protocol"), extra=NODE_CONFIG)
    n.start()
    try:
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


def start(
    node: NodeProcess,
    topic: str,
    group: str,
    count: int,
    assignor: str = "uniform",
    cls: type[GroupMember] = ConsumerProtocolMember,
) -> list[GroupMember]:
    return [
        cls(node.bootstrap, topic, group, assignor, name=f"{group}-{i}").start()
        for i in range(count)
    ]


def describe(node: NodeProcess, group: str) -> ConsumerGroupDescribeResponse.DescribedGroup:
    (described,) = request(node, ConsumerGroupDescribeRequest(group_ids=[group]), 0).groups
    assert isinstance(described, ConsumerGroupDescribeResponse.DescribedGroup)
    return described


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_members_split_partitions_and_take_over_from_one_that_leaves(
    node: NodeProcess, assignor: str
) -> None:
    name = f"split-{assignor}"
    mark = log_mark(node)
    create_topic(node, name)
    members = start(node, name, name, 3, assignor)
    try:
        joined = wait_until(lambda: split(members), "three members to split six partitions")
        figure("kip848_three_members_split", joined, assignor=assignor)
        assert [len(m.assigned) for m in members] == [2, 2, 2]

        d = describe(node, name)
        assert d.error_code == 0 and d.assignor_name == assignor
        assert len(d.members) == 3

        first = produce(node, name, 10, "a")
        wait_until(settled(members, first), "60 records consumed and committed")
        assert_once_each(consumed(members), first)
        for m in members:
            assert {r.partition for r in m.records} <= m.assigned, m.name

        leaver, stayers = members[0], members[1:]
        taken = leaver.assigned
        begin = time.monotonic()
        leaver.close()
        wait_until(lambda: split(stayers), "two members to take over")
        figure("kip848_rebalance_after_leave", time.monotonic() - begin, assignor=assignor)
        assert [len(m.assigned) for m in stayers] == [3, 3]
        assert taken <= stayers[0].assigned | stayers[1].assigned

        second = produce(node, name, 10, "b")
        wait_until(settled(stayers, second), "60 more records consumed and committed")
        # The partitions taken over resume after the leaver's commits: nothing twice.
        assert_once_each(consumed(members), first | second)
        wait_until(
            lambda: describe(node, name).group_state == "Stable",
            "the group to be stable",
        )
        d = describe(node, name)
        assert len(d.members) == 2
        assert {m.member_epoch for m in d.members} == {d.assignment_epoch}
    finally:
        close_all(members)
    assert_node_log_clean(node, mark)


def test_restarted_consumer_resumes_after_the_committed_offsets(own_node: NodeProcess) -> None:
    """A consumer commits and leaves; the broker is killed (kill -9) and restarted; a new
    consumer of the group starts exactly after the committed offsets. Then a member that
    stays while the broker restarts cleanly keeps its partitions and its member epoch."""
    name = "resume"
    create_topic(own_node, name)
    old = produce(own_node, name, 5, "old")
    (first,) = start(own_node, name, name, 1)
    try:
        wait_until(settled([first], old), "the first consumer to commit")
    finally:
        close_all([first])
    assert_once_each(first.records, old)

    own_node.kill()
    own_node.start()
    new = produce(own_node, name, 5, "new")
    (second,) = start(own_node, name, name, 1)
    try:
        wait_until(settled([second], new), "the restarted consumer to catch up")
        committed = second.call(second.committed)
        assert committed == dict.fromkeys(range(PARTITIONS), 10)
        epoch = describe(own_node, name).members[0].member_epoch

        own_node.stop()
        own_node.start()
        more = produce(own_node, name, 1, "more")
        wait_until(settled([second], more), "the member to go on after the restart")
        d = describe(own_node, name)
        assert [m.member_epoch for m in d.members] == [epoch]
        assert second.assigned == frozenset(range(PARTITIONS))
    finally:
        close_all([second])
    assert_once_each(second.records, new | more)


def test_classic_and_consumer_groups_coexist(node: NodeProcess) -> None:
    mark = log_mark(node)
    topic = "coexist"
    create_topic(node, topic)
    consumer_group, classic_group = "coexist-consumer", "coexist-classic"
    new = start(node, topic, consumer_group, 1)
    classic = start(node, topic, classic_group, 1, "range", KafkaPythonMember)
    members = new + classic
    try:
        wait_until(lambda: all(owns_all(m)() for m in members), "both groups to be assigned")
        records = produce(node, topic, 5, "x")
        wait_until(lambda: settled(new, records)() and settled(classic, records)(), "both")
        assert_once_each(new[0].records, records)
        assert_once_each(classic[0].records, records)

        listed = request(node, ListGroupsRequest(), 5)
        found = {g.group_id: (g.group_type, g.protocol_type, g.group_state) for g in listed.groups}
        assert found[consumer_group] == ("consumer", "consumer", "Stable")
        assert found[classic_group] == ("classic", "consumer", "Stable")
        only = request(node, ListGroupsRequest(types_filter=["consumer"]), 5)
        ids = {g.group_id for g in only.groups}
        assert consumer_group in ids and classic_group not in ids

        described = request(node, DescribeGroupsRequest(groups=[consumer_group, classic_group]), 5)
        assert [(g.error_code, g.group_state, g.protocol_type) for g in described.groups] == [
            (0, "Stable", "consumer"),
            (0, "Stable", "consumer"),
        ]
        assert described.groups[0].protocol_data == "uniform"

        # One group id, two protocols: refused both ways.
        join = request(
            node,
            JoinGroupRequest(
                group_id=consumer_group,
                session_timeout_ms=10_000,
                rebalance_timeout_ms=10_000,
                protocol_type="consumer",
                protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"")],
            ),
            7,
        )
        assert join.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        d = describe(node, classic_group)
        assert d.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    finally:
        close_all(members)
    assert_node_log_clean(node, mark)


def test_static_member_with_a_regex_follows_topic_changes(node: NodeProcess) -> None:
    """The broker resolves a regex subscription and rebalances when matching topics appear
    or grow; a static member that closes keeps its partitions for its next incarnation."""
    from confluent_kafka.admin import AdminClient, NewPartitions

    mark = log_mark(node)
    group = "static-regex"
    create_driver = KafkaPythonDriver(node.bootstrap)
    assert create_driver.create_topics({"dyn-1": 2}) == {"dyn-1": 0}

    def incarnation() -> ConsumerProtocolMember:
        m = ConsumerProtocolMember(node.bootstrap, "^dyn-.*", group, "uniform", name="static")
        m.instance_id = "instance-1"
        m.start()
        return m

    def assigned(m: ConsumerProtocolMember, expected: set[tuple[str, int]]) -> Callable[[], bool]:
        return lambda: m.call(m.topic_partitions) == expected

    first = incarnation()
    try:
        wait_until(assigned(first, {("dyn-1", 0), ("dyn-1", 1)}), "the matching topic")
        assert create_driver.create_topics({"dyn-2": 1}) == {"dyn-2": 0}
        wait_until(
            assigned(first, {("dyn-1", 0), ("dyn-1", 1), ("dyn-2", 0)}), "the new matching topic"
        )
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        admin.create_partitions([NewPartitions("dyn-1", 3)])["dyn-1"].result(15)
        everything = {("dyn-1", 0), ("dyn-1", 1), ("dyn-1", 2), ("dyn-2", 0)}
        wait_until(assigned(first, everything), "the new partition")
        d = describe(node, group)
        epoch = d.group_epoch
        assert [m.instance_id for m in d.members] == ["instance-1"]
    finally:
        close_all([first])
    # Gone for a while (member epoch -2): still a member, its partitions kept for it.
    d = describe(node, group)
    assert [m.member_epoch for m in d.members] == [-2]
    second = incarnation()
    try:
        wait_until(assigned(second, everything), "the next incarnation to get the same partitions")
        d = describe(node, group)
        assert d.group_epoch == epoch  # no rebalance
    finally:
        close_all([second])
    assert_node_log_clean(node, mark)
