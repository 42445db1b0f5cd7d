"""A controller that is not the confirmed quorum leader decides nothing: its request service
answers NOT_CONTROLLER, its session checks fence no one, and a newly active controller gives
every broker a fresh session. The quorum confirms leadership only from the Raft thread's
own recent view (a frozen leader wakes believing it still leads)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from kraft.config import NodeConfig
from kraft.controller import service as service_module
from kraft.controller.controller import Controller
from kraft.controller.replication import BrokerHeartbeats
from kraft.controller.service import ControllerService
from kraft.metadata.image import MetadataImage
from kraft.net.protocol import (
    BrokerHeartbeatRequest,
    BrokerHeartbeatResponse,
    BrokerRegistrationRequest,
    BrokerRegistrationResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    ErrorCode,
)
from kraft.net.protocol import _generated as m
from kraft.quorum import Quorum

SESSION_MS = 9000
INTERVAL_MS = 2000


class RecordingController:
    """Stands in for the Controller: records every command it is asked to commit."""

    def __init__(self) -> None:
        self.runs = 0
        self.ran = asyncio.Event()

    async def run(self, command: Any) -> Any:
        self.runs += 1
        self.ran.set()
        return None

    def __getattr__(self, name: str) -> Any:
        # Command builders (create_topics, ...): the command is only ever handed to `run`.
        return lambda *args, **kwargs: name


def make_service(
    tmp_path: Path, active: dict[str, bool], controller: object | None = None
) -> ControllerService:
    image = MetadataImage()
    for broker_id in (1, 2, 3):
        image.apply(
            m.RegisterBrokerRecord(
                broker_id=broker_id, incarnation_id=uuid.uuid4(), broker_epoch=broker_id
            ),
            broker_id,
        )
        image.apply(m.UnfenceBrokerRecord(id=broker_id, epoch=broker_id), 10 + broker_id)
    config = NodeConfig(
        node_id=1,
        process_roles=("controller",),
        listeners=(),
        advertised_listeners=(),
        log_dirs=(str(tmp_path),),
        broker_session_timeout_ms=SESSION_MS,
        broker_heartbeat_interval_ms=INTERVAL_MS,
    )
    return ControllerService(
        config,
        "cluster",
        image,
        cast(Controller, controller or RecordingController()),
        is_active=lambda: active["value"],
        quorum_status=lambda: None,
        last_offset=lambda: image.last_offset,
    )


async def test_not_active_controller_answers_not_controller(tmp_path: Path) -> None:
    controller = RecordingController()
    service = make_service(tmp_path, {"value": False}, controller)
    heartbeat = await service.handle_request(
        BrokerHeartbeatRequest(broker_id=2, broker_epoch=2, current_metadata_offset=9), 4
    )
    assert isinstance(heartbeat, BrokerHeartbeatResponse)
    assert heartbeat.error_code == ErrorCode.NOT_CONTROLLER
    registration = await service.handle_request(
        BrokerRegistrationRequest(broker_id=2, cluster_id="cluster", incarnation_id=uuid.uuid4()),
        4,
    )
    assert isinstance(registration, BrokerRegistrationResponse)
    assert registration.error_code == ErrorCode.NOT_CONTROLLER
    created = await service.handle_request(
        CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(name="t", num_partitions=1, replication_factor=1)
            ]
        ),
        7,
    )
    assert isinstance(created, CreateTopicsResponse)
    assert [t.error_code for t in created.topics] == [ErrorCode.NOT_CONTROLLER]
    assert controller.runs == 0


def test_new_active_controller_counts_sessions_from_the_old_leaders_silence(
    tmp_path: Path,
) -> None:
    service = make_service(tmp_path, {"value": True})
    now = {"ms": 100_000}
    service.heartbeats = BrokerHeartbeats(lambda: now["ms"])
    service.on_became_active(previous_leader_silent_ms=3000)
    # Every registered broker has a session, begun when the old leader went silent.
    now["ms"] += SESSION_MS - 3000
    assert service.heartbeats.expired(SESSION_MS) == []
    now["ms"] += 1
    assert service.heartbeats.expired(SESSION_MS) == [1, 2, 3]


def test_new_active_controller_leaves_two_heartbeat_intervals(tmp_path: Path) -> None:
    service = make_service(tmp_path, {"value": True})
    now = {"ms": 100_000}
    service.heartbeats = BrokerHeartbeats(lambda: now["ms"])
    # The old leader went silent long ago (a long election): brokers still get time to
    # find this controller before anyone is fenced.
    service.on_became_active(previous_leader_silent_ms=60_000)
    now["ms"] += 2 * INTERVAL_MS
    assert service.heartbeats.expired(SESSION_MS) == []
    now["ms"] += 1
    assert service.heartbeats.expired(SESSION_MS) == [1, 2, 3]


class SteppedClock:
    """The session checker's clock: each reading is a check, announced to the test."""

    def __init__(self) -> None:
        self.ms = 100_000
        self.read = asyncio.Event()

    def __call__(self) -> int:
        self.read.set()
        return self.ms

    async def next_check(self) -> None:
        self.read.clear()
        async with asyncio.timeout(2.0):
            await self.read.wait()


async def test_a_stalled_controller_restarts_sessions_instead_of_fencing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = RecordingController()
    service = make_service(tmp_path, {"value": True}, controller)
    clock = SteppedClock()
    monkeypatch.setattr(service_module, "_monotonic_ms", clock)
    monkeypatch.setattr(service_module, "SESSION_CHECK_INTERVAL_S", 0.001)
    service.heartbeats = BrokerHeartbeats(lambda: clock.ms)
    service.heartbeats.reset([1, 2, 3])
    task = asyncio.create_task(service._expire_sessions())
    try:
        await clock.next_check()
        clock.ms += 15_000  # SIGSTOP, then SIGCONT: the next check comes 15 s later
        await clock.next_check()
        await clock.next_check()
        assert controller.runs == 0
        assert service.heartbeats.expired(SESSION_MS) == []
        # Time goes on in small steps: brokers that really went silent are fenced.
        for _ in range(SESSION_MS // 1000 + 1):
            clock.ms += 1000
            await clock.next_check()
        async with asyncio.timeout(2.0):
            await controller.ran.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_session_checks_fence_no_one_unless_active(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = RecordingController()
    service = make_service(tmp_path, {"value": False}, controller)
    clock = SteppedClock()
    monkeypatch.setattr(service_module, "_monotonic_ms", clock)
    monkeypatch.setattr(service_module, "SESSION_CHECK_INTERVAL_S", 0.001)
    service.heartbeats = BrokerHeartbeats(lambda: clock.ms)
    service.heartbeats.reset([1, 2, 3], age_ms=SESSION_MS * 2)
    task = asyncio.create_task(service._expire_sessions())
    try:
        for _ in range(3):
            await clock.next_check()
        assert controller.runs == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_leadership_confirmed_needs_the_threads_recent_view(tmp_path: Path) -> None:
    voters = {1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2), 3: ("127.0.0.1", 3)}
    quorum = Quorum(1, voters, str(tmp_path), "secret", on_commit=lambda index, entry: None)
    try:
        quorum._leader_changed(1, 4)
        quorum._thread_view = (1, 4, time.monotonic())
        assert quorum.leadership_confirmed(2.0)
        # Woken after a freeze: the majority was last heard 15 s ago.
        quorum._thread_view = (1, 4, time.monotonic() - 15.0)
        assert not quorum.leadership_confirmed(2.0)
        # The thread has heard of a newer term the loop has not been told of yet.
        quorum._thread_view = (None, 5, None)
        assert not quorum.leadership_confirmed(2.0)
        quorum._thread_view = (1, 5, time.monotonic())
        assert not quorum.leadership_confirmed(2.0)
    finally:
        quorum._close_pipe()
