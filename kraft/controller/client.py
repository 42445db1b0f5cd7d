"""Requests to the active controller, from anywhere in the node (Kafka's
NodeToControllerChannelManager, plus the "local or forward" choice of a combined node).

Every caller — registration, heartbeats, AlterPartition, AllocateProducerIds, the admin
requests a broker forwards, the metadata fetches of a broker-only node — sends through one
`ControllerClient`:

- when this node hosts the active controller (`local.is_active()`), the request is answered
  in-process by the controller's own request service, with no network between;
- otherwise it goes to the controller endpoint believed active. That belief comes from the
  answers: an endpoint that answers is kept; NOT_CONTROLLER, a broken connection or no
  answer within `attempt_timeout_s` drops it. A new one is found by asking every controller
  endpoint at once who leads (DescribeQuorum, which only the active controller answers with
  no error, naming itself), or directly when the leader's id is known (the local quorum's
  view, `leader_hint`) and its endpoint was learnt from an earlier DescribeQuorum.

`attempt_timeout_s` is at most `broker.heartbeat.interval.ms`, so a request to a controller
that hangs (SIGSTOP, a stuck loop) is abandoned and retried at the new quorum leader within
one heartbeat interval. No lock is held across a network wait: each request in flight has a
connection of its own (idle connections are reused), so one hung request delays no other
caller. The overall deadline is the caller's (`timeout_s`): TimeoutError after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from kraft.net.client import KafkaConnection
from kraft.net.protocol import (
    API_KEYS,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    ErrorCode,
    Message,
    ProtocolError,
)

logger = logging.getLogger(__name__)

METADATA_TOPIC = "__cluster_metadata"
RETRY_BACKOFF_S = 0.05
# While no controller answers as active (an election in progress), ask again this often.
DISCOVERY_BACKOFF_S = 0.1
# Idle connections kept per endpoint for reuse.
MAX_IDLE_CONNECTIONS = 4
NETWORK_ERRORS = (OSError, ConnectionError, ProtocolError, EOFError)


class LocalController(Protocol):
    """The controller of this node, for requests answered in-process."""

    def is_active(self) -> bool:
        """Whether this node is the active controller now (the Raft leader of the current
        term, confirmed by a majority)."""
        ...

    async def handle_request(self, request: Message, version: int) -> Message:
        """Answer `request` as the controller's request service would over the network."""
        ...


def is_not_controller(response: Message) -> bool:
    """Top-level NOT_CONTROLLER, or every item of the response's first list carrying it."""
    if getattr(response, "error_code", 0) == ErrorCode.NOT_CONTROLLER:
        return True
    for name in ("topics", "responses", "results"):
        items = getattr(response, name, None)
        if items:
            return all(getattr(i, "error_code", 0) == ErrorCode.NOT_CONTROLLER for i in items)
    return False


def describe_quorum_request() -> DescribeQuorumRequest:
    return DescribeQuorumRequest(
        topics=[
            DescribeQuorumRequest.TopicData(
                topic_name=METADATA_TOPIC,
                partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)],
            )
        ]
    )


def quorum_leader_of(response: Message) -> int | None:
    """The leader a DescribeQuorum answer names, if it answered as the active controller."""
    if not isinstance(response, DescribeQuorumResponse) or response.error_code:
        return None
    for topic in response.topics:
        for partition in topic.partitions:
            if partition.error_code == 0 and partition.leader_id >= 0:
                return partition.leader_id
    return None


class ControllerClient:
    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        attempt_timeout_s: float,
        local: LocalController | None = None,
        leader_hint: Callable[[], int | None] = lambda: None,
        tag: str = "",
        client_id: str = "kraft-broker",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints and local is None:
            raise ValueError("no controller endpoints")
        self.endpoints = [(h, p) for h, p in endpoints]
        self.attempt_timeout_s = attempt_timeout_s
        self.local = local
        self.leader_hint = leader_hint
        self.tag = tag
        self.client_id = client_id
        self.clock = clock
        # The endpoint believed to be the active controller (an index), and which controller
        # each endpoint was learnt to be (id → endpoint index, from DescribeQuorum answers:
        # an endpoint stays the same controller, whether it leads or not).
        self.active: int | None = None
        self.endpoint_of_id: dict[int, int] = {}
        # Endpoints that hung or failed recently: asked last, until this clock time (a refused
        # DescribeQuorum is not held against an endpoint: see _ask_leader).
        self._suspect_until: dict[int, float] = {}
        # A leader id the local view named whose endpoint said it does not lead.
        self._refused_hint: int | None = None
        self._idle: dict[int, list[KafkaConnection]] = {}
        self._busy: set[KafkaConnection] = set()
        self._discovery: asyncio.Task[int | None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        request: Message,
        *,
        timeout_s: float,
        version: int | None = None,
        attempt_timeout_s: float | None = None,
    ) -> Message:
        """The active controller's answer to `request`; TimeoutError after `timeout_s`.

        Answers other than NOT_CONTROLLER (errors included) are returned as they are; the
        caller decides what they mean. `version` is the version to send (a forwarded
        request keeps its client's), else the highest both sides support."""
        api_key = type(request).API_KEY
        assert api_key is not None
        attempt_s = attempt_timeout_s or self.attempt_timeout_s
        async with asyncio.timeout(timeout_s):
            while True:
                if self.local is not None and self.local.is_active():
                    answer = await self.local.handle_request(
                        request, version if version is not None else _max_version(api_key)
                    )
                    if not is_not_controller(answer):
                        return answer
                    await asyncio.sleep(RETRY_BACKOFF_S)
                    continue
                index = self.active
                hinted = False
                if index is None:
                    index = self._hinted()
                    hinted = index is not None
                if index is None:
                    index = await self.discover()
                if index is None:
                    await asyncio.sleep(DISCOVERY_BACKOFF_S)
                    continue
                found = await self._attempt(index, request, version, attempt_s)
                if found is not None:
                    return found
                if hinted:
                    # The local view is behind (a new election): ask who leads instead.
                    self._refused_hint = self.leader_hint()
                await asyncio.sleep(RETRY_BACKOFF_S)

    async def _attempt(
        self, index: int, request: Message, version: int | None, attempt_s: float
    ) -> Message | None:
        """One try at endpoint `index`: its answer, or None (it is no longer believed)."""
        host, port = self.endpoints[index]
        conn: KafkaConnection | None = None
        try:
            async with asyncio.timeout(attempt_s):
                conn = await self._connection(index)
                api_key = type(request).API_KEY
                assert api_key is not None
                v = conn.version_for(api_key) if version is None else version
                answer = await conn.send(request, v)
        except TimeoutError:
            logger.warning(
                "%scontroller %s:%d gave no answer in %.1f s: trying the quorum's leader",
                self.tag,
                host,
                port,
                attempt_s,
            )
            self._distrust(index, suspect_s=attempt_s * 2)
            if conn is not None:
                await self._discard(conn)
            return None
        except NETWORK_ERRORS as e:
            logger.debug("%scontroller %s:%d: %s", self.tag, host, port, e)
            self._distrust(index, suspect_s=self.attempt_timeout_s)
            if conn is not None:
                await self._discard(conn)
            return None
        except BaseException:
            # Cancelled by the caller's deadline: the connection may still carry the request.
            if conn is not None:
                await self._discard(conn)
            raise
        self._release(index, conn)
        if is_not_controller(answer):
            self._distrust(index, suspect_s=0.0)
            return None
        self.active = index
        return answer

    def skip(self) -> None:
        """The caller gave up on the active controller (e.g. a long poll that never
        returned): the next request finds the leader again."""
        if self.active is not None:
            self._distrust(self.active, suspect_s=self.attempt_timeout_s)

    def _distrust(self, index: int, suspect_s: float) -> None:
        if self.active == index:
            self.active = None
        if suspect_s > 0:
            self._suspect_until[index] = self.clock() + suspect_s

    def _hinted(self) -> int | None:
        """The endpoint of the leader the local quorum names, if it was learnt before."""
        leader = self.leader_hint()
        if leader != self._refused_hint:
            self._refused_hint = None
        if leader is None or leader == self._refused_hint:
            return None
        index = self.endpoint_of_id.get(leader)
        if index is None or self._is_suspect(index):
            return None
        return index

    def _is_suspect(self, index: int) -> bool:
        return self._suspect_until.get(index, 0.0) > self.clock()

    # ---------------------------------------------------------------- discovery

    async def discover(self) -> int | None:
        """Ask every controller endpoint at once who leads; the endpoint that answers as the
        active controller (None if none does within one attempt timeout). Endpoints that
        hung recently are asked only when no other is left. Callers looking at the same time
        share one round of questions."""
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.get_running_loop().create_task(self._discover())
        return await asyncio.shield(self._discovery)

    async def _discover(self) -> int | None:
        candidates = [i for i in range(len(self.endpoints)) if not self._is_suspect(i)]
        if not candidates:
            candidates = list(range(len(self.endpoints)))
        tasks = {asyncio.create_task(self._ask_leader(i)): i for i in candidates}
        found: int | None = None
        try:
            pending = set(tasks)
            while pending and found is None:
                done, pending = await asyncio.wait(
                    pending, timeout=self.attempt_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break
                for task in done:
                    leader = task.result()
                    if leader is not None and found is None:
                        found = tasks[task]
                        self.endpoint_of_id[leader] = found
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if found is not None and found != self.active:
            host, port = self.endpoints[found]
            logger.info("%sactive controller found at %s:%d", self.tag, host, port)
        self.active = found
        return found

    async def _ask_leader(self, index: int) -> int | None:
        conn: KafkaConnection | None = None
        try:
            async with asyncio.timeout(self.attempt_timeout_s):
                conn = await self._connection(index)
                answer = await conn.request(describe_quorum_request())
        except ConnectionRefusedError:
            # Nobody listens there (yet: a controller starting a moment after this node).
            # A refusal costs nothing, so the next round asks again; held suspect for a whole
            # attempt timeout, it would be skipped while the others answer "no leader" (at
            # start-up: every broker's registration waited out that timeout).
            return None
        except (TimeoutError, *NETWORK_ERRORS):
            self._suspect_until[index] = self.clock() + self.attempt_timeout_s
            if conn is not None:
                await self._discard(conn)
            return None
        except BaseException:
            if conn is not None:
                await self._discard(conn)
            raise
        self._release(index, conn)
        return quorum_leader_of(answer)

    # -------------------------------------------------------------- connections

    async def _connection(self, index: int) -> KafkaConnection:
        """An idle connection to endpoint `index`, or a new one: never one in use."""
        if self._closed:
            raise ConnectionError("the controller client is closed")
        idle = self._idle.setdefault(index, [])
        while idle:
            conn = idle.pop()
            if conn.connected:
                self._busy.add(conn)
                return conn
            await conn.close()
        host, port = self.endpoints[index]
        conn = KafkaConnection(host, port, client_id=self.client_id)
        self._busy.add(conn)
        try:
            await conn.connect()
        except BaseException:
            await self._discard(conn)
            raise
        return conn

    def _release(self, index: int, conn: KafkaConnection) -> None:
        self._busy.discard(conn)
        idle = self._idle.setdefault(index, [])
        if self._closed or not conn.connected or len(idle) >= MAX_IDLE_CONNECTIONS:
            task = asyncio.get_running_loop().create_task(conn.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            idle.append(conn)

    async def _discard(self, conn: KafkaConnection) -> None:
        self._busy.discard(conn)
        with contextlib.suppress(*NETWORK_ERRORS):
            await conn.close()

    async def close(self) -> None:
        self._closed = True
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        connections = [c for idle in self._idle.values() for c in idle] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        for conn in connections:
            with contextlib.suppress(*NETWORK_ERRORS):
                await conn.close()


def _max_version(api_key: int) -> int:
    return API_KEYS[api_key].max_version
