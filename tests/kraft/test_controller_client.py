"""The controller client against fake controllers on 127.0.0.1: it answers locally when this
node is the active controller, finds the active one by DescribeQuorum, abandons one that
hangs within one attempt timeout, does not serialize callers behind a hung request, and
gives up at the caller's deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from kraft.controller.client import ControllerClient
from kraft.net.protocol import (
    API_KEYS,
    ApiVersionsResponse,
    BrokerHeartbeatRequest,
    BrokerHeartbeatResponse,
    DescribeQuorumResponse,
    ErrorCode,
    Message,
    RequestHeader,
)
from kraft.net.server import CloseConnection, Connection, KafkaServer

ATTEMPT_S = 0.3


class FakeController:
    """Answers ApiVersions, DescribeQuorum (as the leader when `leads`) and BrokerHeartbeat
    (NOT_CONTROLLER unless it leads); when `hung`, answers nothing but ApiVersions."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.leads = False
        self.hung = False
        self.heartbeats = 0
        self.describes = 0
        self.server = KafkaServer(self, "127.0.0.1", 0, listener="CONTROLLER")
        self._never = asyncio.Event()

    async def handle(
        self, header: RequestHeader, request: Message, conn: Connection
    ) -> Message | None:
        if header.api_key == 18:
            return ApiVersionsResponse(
                api_keys=[
                    ApiVersionsResponse.ApiVersion(
                        api_key=k, min_version=0, max_version=API_KEYS[k].max_version
                    )
                    for k in (18, 55, 63)
                ]
            )
        if self.hung:
            await self._never.wait()
        if header.api_key == 55:
            self.describes += 1
            if not self.leads:
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
        if header.api_key == 63:
            if not self.leads:
                return BrokerHeartbeatResponse(error_code=ErrorCode.NOT_CONTROLLER)
            self.heartbeats += 1
            return BrokerHeartbeatResponse(is_fenced=False)
        raise CloseConnection(f"api key {header.api_key}")

    def api_versions_range(self) -> tuple[int, int]:
        return (0, API_KEYS[18].max_version)

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.port)


class LocalController:
    def __init__(self) -> None:
        self.active = False
        self.requests: list[Message] = []

    def is_active(self) -> bool:
        return self.active

    async def handle_request(self, request: Message, version: int) -> Message:
        self.requests.append(request)
        return BrokerHeartbeatResponse(is_fenced=False)


@pytest.fixture
async def controllers() -> AsyncIterator[list[FakeController]]:
    fakes = [FakeController(i) for i in (1, 2, 3)]
    for fake in fakes:
        await fake.server.start()
    try:
        yield fakes
    finally:
        for fake in fakes:
            fake._never.set()
            await fake.server.stop()


def heartbeat() -> BrokerHeartbeatRequest:
    return BrokerHeartbeatRequest(broker_id=7, broker_epoch=3, current_metadata_offset=5)


def client_for(fakes: list[FakeController], **kwargs: object) -> ControllerClient:
    return ControllerClient(
        [f.endpoint for f in fakes],
        attempt_timeout_s=ATTEMPT_S,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_finds_the_active_controller_by_describe_quorum(
    controllers: list[FakeController],
) -> None:
    controllers[1].leads = True
    client = client_for(controllers)
    try:
        answer = await client.send(heartbeat(), timeout_s=5.0)
        assert isinstance(answer, BrokerHeartbeatResponse) and answer.error_code == 0
        assert controllers[1].heartbeats == 1
        assert client.endpoint_of_id == {2: 1}
    finally:
        await client.close()


async def test_a_controller_not_listening_yet_is_asked_again_next_round(
    controllers: list[FakeController],
) -> None:
    """At start-up a peer's controller listener may not be bound yet: its refusal costs
    nothing, so the next round (DISCOVERY_BACKOFF_S later) asks it again, rather than
    skipping it for a whole attempt timeout while the others answer "no leader"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        late_port = s.getsockname()[1]
    late = FakeController(2)
    late.server = KafkaServer(late, "127.0.0.1", late_port, listener="CONTROLLER")
    late.leads = True
    client = ControllerClient(
        [controllers[0].endpoint, ("127.0.0.1", late_port)], attempt_timeout_s=5.0
    )
    started = time.monotonic()
    sending = asyncio.create_task(client.send(heartbeat(), timeout_s=10.0))
    try:
        while controllers[0].describes < 2:  # two rounds: the late one refused in both
            assert not sending.done()
            await asyncio.sleep(0.01)
        await late.server.start()
        answer = await sending
        assert isinstance(answer, BrokerHeartbeatResponse) and answer.error_code == 0
        took = time.monotonic() - started
        assert took < 2.0, f"found the late controller after {took:.1f} s"
    finally:
        sending.cancel()
        await client.close()
        late._never.set()
        await late.server.stop()


async def test_local_controller_answers_without_the_network(
    controllers: list[FakeController],
) -> None:
    local = LocalController()
    local.active = True
    client = client_for(controllers, local=local)
    try:
        await client.send(heartbeat(), timeout_s=5.0)
        assert len(local.requests) == 1
        assert all(f.heartbeats == 0 for f in controllers)
        # No longer active here: the request goes to the controller that is.
        local.active = False
        controllers[2].leads = True
        await client.send(heartbeat(), timeout_s=5.0)
        assert controllers[2].heartbeats == 1 and len(local.requests) == 1
    finally:
        await client.close()


async def test_hung_controller_is_abandoned_within_one_attempt(
    controllers: list[FakeController],
) -> None:
    controllers[0].leads = True
    client = client_for(controllers)
    try:
        await client.send(heartbeat(), timeout_s=5.0)
        # The active controller freezes; another wins the election.
        controllers[0].hung = True
        controllers[0].leads = False
        controllers[1].leads = True
        started = time.monotonic()
        # Concurrent callers: each has its own connection, none waits behind another.
        answers = await asyncio.gather(*(client.send(heartbeat(), timeout_s=5.0) for _ in range(3)))
        took = time.monotonic() - started
        assert all(isinstance(a, BrokerHeartbeatResponse) and a.error_code == 0 for a in answers)
        assert controllers[1].heartbeats == 3
        assert took < 2 * ATTEMPT_S + 0.5, f"took {took:.2f} s"
        # The hung one is not asked first any more.
        started = time.monotonic()
        await client.send(heartbeat(), timeout_s=5.0)
        assert time.monotonic() - started < ATTEMPT_S
    finally:
        await client.close()


async def test_not_controller_answer_moves_to_the_new_leader(
    controllers: list[FakeController],
) -> None:
    controllers[0].leads = True
    client = client_for(controllers)
    try:
        await client.send(heartbeat(), timeout_s=5.0)
        controllers[0].leads = False
        controllers[2].leads = True
        answer = await client.send(heartbeat(), timeout_s=5.0)
        assert isinstance(answer, BrokerHeartbeatResponse) and answer.error_code == 0
        assert controllers[2].heartbeats == 1
    finally:
        await client.close()


async def test_leader_hint_goes_straight_to_a_known_leader(
    controllers: list[FakeController],
) -> None:
    leader = {"id": 1}
    controllers[0].leads = True
    client = client_for(controllers, leader_hint=lambda: leader["id"])
    try:
        await client.send(heartbeat(), timeout_s=5.0)
        controllers[0].leads = False
        controllers[1].leads = True
        leader["id"] = 2
        await client.send(heartbeat(), timeout_s=5.0)  # learns controller 2's endpoint
        assert client.endpoint_of_id == {1: 0, 2: 1}
        controllers[1].leads = False
        controllers[0].leads = True
        leader["id"] = 1
        client.active = None
        asked = sum(f.describes for f in controllers)
        await client.send(heartbeat(), timeout_s=5.0)
        assert client.active == 0
        assert controllers[0].heartbeats == 2
        assert sum(f.describes for f in controllers) == asked, "asked who leads, not the hint"
    finally:
        await client.close()


async def test_stale_leader_hint_falls_back_to_asking(
    controllers: list[FakeController],
) -> None:
    controllers[0].leads = True
    client = client_for(controllers, leader_hint=lambda: 1)  # never updated
    try:
        await client.send(heartbeat(), timeout_s=5.0)
        controllers[0].leads = False
        controllers[2].leads = True
        client.active = None
        await client.send(heartbeat(), timeout_s=2.0)
        assert controllers[2].heartbeats == 1
    finally:
        await client.close()


async def test_gives_up_at_the_callers_deadline(controllers: list[FakeController]) -> None:
    client = client_for(controllers)  # nobody leads: an election that never ends
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.send(heartbeat(), timeout_s=0.5)
        assert time.monotonic() - started < 0.5 + ATTEMPT_S
    finally:
        await client.close()
