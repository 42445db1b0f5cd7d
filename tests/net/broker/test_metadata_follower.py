"""A broker-only node's MetadataFollower against controllers on real sockets.

Each fake controller is the CONTROLLER listener reduced to what a following broker uses
(ApiVersions, Fetch, FetchSnapshot), served by the real `MetadataFetch` handlers over its own
image; `Quorum.commit` gives every controller the same committed entry, as Raft would. The
follower's publisher checks on every publication that it continues the image exactly: no
record applied twice, none skipped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from kraft.controller.client import ControllerClient
from kraft.controller.metadata_fetch import CommittedEntries, MetadataFetch
from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataPublisher
from kraft.metadata.record_log import encode_entry
from kraft.net.broker.metadata_follower import MetadataFollower
from kraft.net.protocol import (
    API_KEYS,
    ApiVersionsResponse,
    DescribeQuorumResponse,
    ErrorCode,
    Message,
    RequestHeader,
)
from kraft.net.protocol import _generated as m
from kraft.net.server import CloseConnection, Connection, KafkaServer
from tests.wait import wait_until_async

CLUSTER = "follower-test"


class FakeController:
    def __init__(self, node_id: int, quorum: Quorum, window: int) -> None:
        self.node_id = node_id
        self.quorum = quorum
        self.image = MetadataImage()
        self.publisher = MetadataPublisher(self.image)
        self.fetch = MetadataFetch(
            node_id,
            CLUSTER,
            self.image,
            lambda: quorum.leader == node_id,
            lambda: (quorum.leader, quorum.term),
            CommittedEntries(max_entries=window),
        )
        self.server = KafkaServer(self, "127.0.0.1", 0, listener="CONTROLLER")
        self.before_snapshot: Callable[[], None] | None = None
        self.fetches = 0
        self.fetches_in_flight = 0  # with nothing new to send, a fetch in flight is parked

    async def handle(
        self, header: RequestHeader, request: Message, conn: Connection
    ) -> Message | None:
        if header.api_key == 18:
            return ApiVersionsResponse(
                api_keys=[
                    ApiVersionsResponse.ApiVersion(
                        api_key=k, min_version=0, max_version=API_KEYS[k].max_version
                    )
                    for k in (1, 18, 55, 59)
                ]
            )
        if header.api_key == 55:
            # How the follower's ControllerClient finds the active controller.
            if self.quorum.leader != self.node_id:
                return DescribeQuorumResponse(error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER)
            return DescribeQuorumResponse(
                topics=[
                    DescribeQuorumResponse.TopicData(
                        topic_name="__cluster_metadata",
                        partitions=[
                            DescribeQuorumResponse.PartitionData(
                                partition_index=0, leader_id=self.node_id
                            )
                        ],
                    )
                ]
            )
        if header.api_key == 1:
            self.fetches += 1
            self.fetches_in_flight += 1
            try:
                return await self.fetch.fetch(header, request)  # type: ignore[arg-type]
            finally:
                self.fetches_in_flight -= 1
        if header.api_key == 59:
            if self.before_snapshot is not None:
                self.before_snapshot()
            return await self.fetch.fetch_snapshot(header, request)  # type: ignore[arg-type]
        raise CloseConnection(f"api key {header.api_key}")

    def api_versions_range(self) -> tuple[int, int]:
        return (0, API_KEYS[18].max_version)


class Quorum:
    def __init__(self, size: int = 3, window: int = 1000) -> None:
        self.leader = 1
        self.term = 1
        self.next_offset = 0
        self.controllers = {i: FakeController(i, self, window) for i in range(1, size + 1)}

    async def start(self) -> Quorum:
        for c in self.controllers.values():
            await c.server.start()
        return self

    async def stop(self) -> None:
        for c in self.controllers.values():
            await c.server.stop()

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", c.server.port) for c in self.controllers.values()]

    @property
    def active(self) -> FakeController:
        return self.controllers[self.leader]

    def commit(self, *records: Message) -> None:
        first = self.next_offset
        self.next_offset += len(records)
        entry = encode_entry(records)
        for c in self.controllers.values():
            c.publisher.publish(first, records)
            c.fetch.on_commit(first, entry, len(records))

    def topics(self, count: int, prefix: str = "t") -> None:
        for i in range(count):
            topic_id = uuid.uuid4()
            self.commit(
                m.TopicRecord(name=f"{prefix}{i}", topic_id=topic_id),
                m.PartitionRecord(partition_id=0, topic_id=topic_id, replicas=[1], isr=[1]),
            )

    def elect(self, leader: int) -> None:
        self.leader = leader
        self.term += 1
        for c in self.controllers.values():
            c.fetch.on_leader_change()


class CheckingPublisher(MetadataPublisher):
    """Fails the test on a publication that does not continue the image exactly."""

    def __init__(self, image: MetadataImage) -> None:
        super().__init__(image)
        self.publications: list[tuple[int, int]] = []
        self.listeners.append(self._heard)
        self.changed = asyncio.Event()

    def publish(self, first_offset: int, records: Sequence[Message]) -> None:
        if records:
            assert first_offset == self.image.last_offset + 1, (
                first_offset,
                self.image.last_offset,
            )
        self.publications.append((first_offset, len(records)))
        super().publish(first_offset, records)

    def _heard(self) -> None:
        self.changed.set()


async def following(quorum: Quorum) -> tuple[MetadataFollower, CheckingPublisher]:
    publisher = CheckingPublisher(MetadataImage())
    follower = MetadataFollower(
        9,
        CLUSTER,
        ControllerClient(quorum.endpoints, attempt_timeout_s=2.0),
        publisher,
        request_timeout_s=2.0,
    )
    follower.start()
    return follower, publisher


async def caught_up(follower: MetadataFollower, quorum: Quorum, within: float = 5.0) -> None:
    publisher = follower.publisher
    assert isinstance(publisher, CheckingPublisher)
    async with asyncio.timeout(within):
        while follower.applied_offset != quorum.next_offset - 1:
            publisher.changed.clear()
            await publisher.changed.wait()
    assert vars(follower.publisher.image) == vars(quorum.active.image)


async def test_follows_from_the_start_and_then_each_commit() -> None:
    quorum = await Quorum().start()
    quorum.topics(5)
    follower, publisher = await following(quorum)
    try:
        await caught_up(follower, quorum)
        assert follower.snapshots_loaded == 0
        for i in range(5):
            quorum.topics(1, prefix=f"live{i}-")
            await caught_up(follower, quorum, within=1.0)
        assert follower.leader_id == 1
        # Only the active controller was asked (it answered from the first try on).
        assert quorum.controllers[1].fetches > 0
    finally:
        await follower.stop()
        await quorum.stop()


async def test_a_commit_reaches_a_parked_follower_at_once() -> None:
    quorum = await Quorum().start()
    quorum.topics(1)
    follower, _ = await following(quorum)
    try:
        await caught_up(follower, quorum)
        leader = quorum.controllers[quorum.leader]
        await wait_until_async(
            lambda: leader.fetches_in_flight > 0, "the caught-up follower's fetch to park", 5
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        quorum.topics(1, prefix="new")
        await caught_up(follower, quorum, within=1.0)
        # Far below the 500 ms long poll: the commit woke the parked fetch.
        assert loop.time() - started < 0.2
    finally:
        await follower.stop()
        await quorum.stop()


async def test_failover_moves_the_follower_on_without_gaps_or_repeats() -> None:
    quorum = await Quorum().start()
    quorum.topics(3)
    follower, publisher = await following(quorum)
    try:
        await caught_up(follower, quorum)
        # The active controller dies; controller 2 takes over and commits more.
        await quorum.controllers[1].server.stop()
        quorum.elect(2)
        quorum.topics(3, prefix="after")
        await caught_up(follower, quorum)
        assert follower.leader_id == 2
        # Controller 3 (a follower controller) refuses; the follower stays with 2.
        quorum.topics(2, prefix="more")
        await caught_up(follower, quorum, within=1.0)
        assert follower.snapshots_loaded == 0
        applied = [(f, n) for f, n in publisher.publications if n]
        assert sum(n for _, n in applied) == quorum.next_offset
    finally:
        await follower.stop()
        await quorum.stop()


async def test_a_follower_too_far_behind_loads_a_snapshot_then_follows() -> None:
    quorum = await Quorum(window=3).start()
    quorum.topics(10)
    quorum.commit(m.ProducerIdsRecord(broker_id=1, broker_epoch=0, next_producer_id=2000))
    follower, publisher = await following(quorum)
    try:
        await caught_up(follower, quorum)
        assert follower.snapshots_loaded == 1
        # The snapshot was published as one change (no records) at its end offset.
        assert publisher.publications[0] == (21, 0)
        quorum.topics(2, prefix="after")
        await caught_up(follower, quorum, within=1.0)
        assert follower.snapshots_loaded == 1
    finally:
        await follower.stop()
        await quorum.stop()


async def test_a_snapshot_gone_mid_download_is_fetched_again() -> None:
    quorum = await Quorum(window=2).start()
    quorum.topics(6)
    lost = {"times": 0}

    def forget() -> None:
        # Like a failover between Fetch and FetchSnapshot: the snapshot id is unknown here.
        if lost["times"] == 0:
            lost["times"] += 1
            quorum.active.fetch.snapshots.clear()

    quorum.active.before_snapshot = forget
    follower, _ = await following(quorum)
    try:
        await caught_up(follower, quorum)
        assert lost["times"] == 1 and follower.snapshots_loaded == 1
    finally:
        await follower.stop()
        await quorum.stop()


async def test_a_diverging_batch_is_not_applied_and_a_snapshot_repairs_the_image() -> None:
    quorum = await Quorum().start()
    quorum.topics(2)
    follower, publisher = await following(quorum)
    try:
        await caught_up(follower, quorum)
        # The active controller serves the next entry at a wrong offset (a bug somewhere):
        # the follower must neither apply it nor skip ahead.
        quorum.topics(1, prefix="bad")
        window = quorum.active.fetch.entries
        entry = window._by_offset[4]
        broken = bytearray(entry.batch)
        broken[0:8] = (5).to_bytes(8, "big")
        window._by_offset[4] = type(entry)(entry.first_offset, entry.count, bytes(broken))
        await caught_up(follower, quorum)
        assert follower.divergences == 1 and follower.snapshots_loaded == 1
        quorum.topics(1, prefix="good")
        await caught_up(follower, quorum, within=1.0)
    finally:
        await follower.stop()
        await quorum.stop()


async def test_a_hung_controller_is_given_up_after_the_request_timeout() -> None:
    quorum = await Quorum().start()
    quorum.topics(1)
    follower, _ = await following(quorum)
    follower.request_timeout_s = 0.2
    follower.max_wait_ms = 50
    try:
        await caught_up(follower, quorum)
        entered = asyncio.Event()

        async def never(*args: object) -> Message:
            entered.set()
            await asyncio.Event().wait()
            raise AssertionError

        # Controller 1 takes the next fetch and never answers; then controller 2 is elected
        # (nothing tells the follower: only its request timeout does).
        quorum.controllers[1].fetch.fetch = never  # type: ignore[method-assign, assignment]
        await asyncio.wait_for(entered.wait(), 2.0)
        quorum.leader, quorum.term = 2, quorum.term + 1
        quorum.topics(1, prefix="later")
        await caught_up(follower, quorum, within=3.0)
        assert follower.leader_id == 2
    finally:
        await follower.stop()
        await quorum.stop()
