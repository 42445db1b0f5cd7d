"""Brokers and the producing client of the simulation."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from kraft.config import NodeConfig
from kraft.controller.controller import Controller
from kraft.log.manager import LogManager
from kraft.log.records import build_simple_batch
from kraft.metadata.image import MetadataImage
from kraft.net.broker.broker import ISR_WAKE_COALESCE_S, Broker
from kraft.net.broker.handlers.fetch import fetch_params, fetch_response
from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import AppendOrigin, AppendResults
from kraft.net.broker.replication import (
    RETRY_BACKOFF_S,
    ReplicaFetcher,
    ReplicaFetcherManager,
    apply_fetch_response,
    build_fetch_request,
)
from kraft.net.protocol import (
    AlterPartitionResponse,
    ErrorCode,
    FetchRequest,
    FetchResponse,
    decode_message,
    decode_metadata_record,
    encode_message,
)
from tests.net.replication_sim.model import (
    ALTER_PARTITION_VERSION,
    BROKERS,
    CLIENT,
    CONTROLLER,
    FETCH_VERSION,
    INDEX,
    KEY,
    LOG_CONFIG,
    TOPIC,
)
from tests.sim.kernel import Timer

if TYPE_CHECKING:
    from tests.net.replication_sim.world import Sim


class _Event:
    """Stands in for the asyncio.Event the broker's ISR task waits on."""

    def __init__(self, on_set: Callable[[], None]) -> None:
        self.on_set = on_set

    def set(self) -> None:
        self.on_set()


def _abandon(log_manager: LogManager) -> None:
    """A killed process: file descriptors and maps go, nothing is flushed or trimmed."""
    for log in log_manager.all_logs().values():
        for segment in log.segments:
            segment._unmap()
            if segment._fd >= 0:
                os.close(segment._fd)
                segment._fd = -1


class SimFetcher(ReplicaFetcher):
    """ReplicaFetcher's loop on the simulated network: build the request, send it to the
    source broker, apply the answer, back off after errors."""

    def __init__(self, host: SimBroker, source: int) -> None:
        super().__init__(host.id, source, lambda: None, host.tag)
        self.host = host
        self.busy = False
        self.started = False

    def start(self) -> None:
        self.started = True
        self._kick()

    async def stop(self) -> None:
        self.started = False

    def add(self, partition: Partition) -> None:
        super().add(partition)
        self._kick()

    def _kick(self) -> None:
        if self.started and not self.busy:
            self.busy = True
            self.host.later(0, f"fetch {self.host.id}<-{self.source_id}", self._fetch_once_sim)

    def _fetch_once_sim(self) -> None:
        if not self.partitions:
            self.busy = False  # idle until `add`
            return
        sim = self.host.sim
        wanted = dict(self.partitions)
        request = build_fetch_request(self.broker_id, wanted, FETCH_VERSION)
        data = bytes(encode_message(request, FETCH_VERSION))
        source = sim.brokers[self.source_id]
        backoff = int(RETRY_BACKOFF_S * 1000)
        if not source.alive:
            # Connection refused: the fetcher resets and retries after its backoff.
            self.host.later(
                backoff, f"fetch {self.host.id}<-{self.source_id}", self._fetch_once_sim
            )
            return

        def on_reply(answer: bytes) -> None:
            response = decode_message(FetchResponse, answer, FETCH_VERSION)
            failed = apply_fetch_response(response, wanted, self.partitions, self.tag)
            self.host.later(
                backoff if failed else 0,
                f"fetch {self.host.id}<-{self.source_id}",
                self._fetch_once_sim,
            )

        def on_timeout() -> None:
            self.host.later(
                backoff, f"fetch {self.host.id}<-{self.source_id}", self._fetch_once_sim
            )

        sim.rpc(
            self.host.id,
            self.source_id,
            f"fetch {self.host.id}->{self.source_id}",
            lambda respond: source.serve_fetch(data, respond),
            on_reply,
            sim.timing.fetch_timeout_ms,
            on_timeout,
        )


class SimBroker:
    def __init__(self, sim: Sim, node_id: int) -> None:
        self.sim = sim
        self.id = node_id
        self.directory = os.path.join(sim.root, f"broker-{node_id}")
        self.tag = f"[broker {node_id}] "
        self.life = 0
        self.alive = False
        self.epoch = -1
        # PreviousBrokerEpoch of the next registration (as BrokerLifecycle): the epoch a clean
        # shutdown wrote in its marker, or the current one when re-registering; -1 after a
        # crash, which makes the controller take the broker out of every ELR.
        self.previous_epoch = -1
        self.fenced = True
        self.incarnation = uuid.UUID(int=0)
        self.image = MetadataImage()
        self.log_manager: LogManager | None = None
        self.broker: Broker | None = None
        self.isr_woken = False
        self.isr_timer: Timer | None = None
        self.shutting_down = False
        self.restart_after_ms = 0
        self.heartbeat_timer: Timer | None = None

    # ----------------------------------------------------------- lifecycle

    def later(self, delay_ms: int, label: str, fn: Callable[[], None]) -> Timer:
        """Run `fn` after `delay_ms` if this process is still the one running then."""
        life = self.life

        def run() -> None:
            if self.alive and self.life == life:
                fn()

        return self.sim.after(delay_ms, label, run)

    def start(self) -> None:
        self.life += 1
        self.alive = True
        self.heartbeat_timer = None
        self.epoch = -1
        self.fenced = True
        self.log_manager = LogManager([self.directory], LOG_CONFIG, clock=self.sim.clock)
        self.log_manager.startup()
        self.previous_epoch = self.log_manager.previous_broker_epoch
        self.image = MetadataImage()
        config = NodeConfig(
            node_id=self.id,
            process_roles=("broker",),
            listeners=(),
            advertised_listeners=(),
            log_dirs=(self.directory,),
            replica_lag_time_max_ms=self.sim.timing.lag_ms,
            log_config=LOG_CONFIG,
        )
        broker = Broker(
            config,
            self.image,
            self.log_manager,
            cast(Controller, None),
            "sim",
            lambda: self.epoch,
            clock=self.sim.clock,
        )
        broker.replica_manager.fetchers = ReplicaFetcherManager(
            self.id, broker.endpoint_of, broker.tag, lambda source: SimFetcher(self, source)
        )
        broker.replica_manager.wake_at = self._expire_at
        broker.replica_manager.defer = lambda fn: self.later(0, f"purgatory {self.id}", fn)
        self.broker = broker
        self._register()
        self.later(0, f"metadata {self.id}", self._fetch_metadata)
        self.isr_woken = False
        self.isr_timer = None
        # Partitions created from here on wake the ISR task through the broker's event.
        broker._isr_wake = cast(asyncio.Event, _Event(self._isr_wake))
        self._isr_wait()
        self.later(self.sim.timing.checkpoint_ms, f"checkpoint {self.id}", self._checkpoint)

    def shut_down(self, restart_after_ms: int) -> None:
        """A clean restart (Node.stop): controlled shutdown through heartbeats, then the logs
        are flushed and closed, and the process starts again later."""
        self.shutting_down = True
        self.restart_after_ms = restart_after_ms
        if self.heartbeat_timer is not None and not self.heartbeat_timer.cancelled:
            self.heartbeat_timer.cancel()
            self._heartbeat()  # at once, as BrokerLifecycle does

    def stop(self) -> None:
        assert self.log_manager is not None
        self.log_manager.shutdown(self.epoch)
        self.log_manager = None
        self.crash()
        self.sim.after(self.restart_after_ms, f"restart {self.id}", self.restart_if_down)

    def crash(self) -> None:
        self.alive = False
        self.shutting_down = False
        if self.log_manager is not None:
            _abandon(self.log_manager)
        self.log_manager = None
        self.broker = None
        self.sim.checker.forget(self.id)

    def restart_if_down(self) -> None:
        if not self.alive:
            self.start()

    @property
    def partition(self) -> Partition | None:
        return self.broker.partitions.get(KEY) if self.broker is not None else None

    def _register(self) -> None:
        """A new incarnation registers (retried as it is until answered)."""
        self.fenced = True
        self.incarnation = uuid.UUID(int=self.sim.rng.getrandbits(128))
        self._send_registration()

    def _send_registration(self) -> None:
        incarnation, previous = self.incarnation, self.previous_epoch
        controller = self.sim.controller
        self.sim.rpc(
            self.id,
            CONTROLLER,
            f"register {self.id}",
            lambda respond: respond(controller.register(self.id, incarnation, previous)),
            self._registered,
            self.sim.timing.request_timeout_ms,
            self._register_again,
        )

    def _register_again(self) -> None:
        delay = self.sim.timing.fenced_heartbeat_ms
        self.later(delay, f"register {self.id}", self._send_registration)

    def _registered(self, epoch: int) -> None:
        self.epoch = epoch
        self._heartbeat()

    def _heartbeat(self) -> None:
        self.heartbeat_timer = None
        controller = self.sim.controller
        epoch, applied = self.epoch, max(self.image.last_offset, 0)
        shut_down = self.shutting_down
        timeout = self.sim.timing.request_timeout_ms

        def no_answer() -> None:
            if shut_down:
                self.stop()  # nobody to approve it: BrokerLifecycle stops anyway
            else:
                self._next_heartbeat()

        self.sim.rpc(
            self.id,
            CONTROLLER,
            f"heartbeat {self.id}",
            lambda respond: respond(controller.heartbeat(self.id, epoch, applied, shut_down)),
            self._on_heartbeat,
            timeout,
            no_answer,
        )

    def _on_heartbeat(self, answer: tuple[int, bool, bool]) -> None:
        code, fenced, may_stop = answer
        if code in (ErrorCode.STALE_BROKER_EPOCH, ErrorCode.BROKER_ID_NOT_REGISTERED):
            # As BrokerLifecycle: a new incarnation, a new epoch, the old one its clean
            # predecessor (same process, logs intact).
            self.previous_epoch = self.epoch
            self._register()
            return
        if code == 0 and self.shutting_down and may_stop:
            self.stop()
            return
        if code == 0:
            self.fenced = fenced
            assert self.broker is not None
            if not fenced and not self.broker.metadata_ready:
                # As Node: unfenced means caught up to its registration; act on the image.
                self.broker.metadata_ready = True
                self.broker.on_metadata_change()
        self._next_heartbeat()

    def _next_heartbeat(self) -> None:
        timing = self.sim.timing
        fast = self.fenced or self.shutting_down
        delay = timing.fenced_heartbeat_ms if fast else timing.heartbeat_ms
        self.heartbeat_timer = self.later(delay, f"heartbeat {self.id}", self._heartbeat)

    def _fetch_metadata(self) -> None:
        controller = self.sim.controller
        offset = self.image.last_offset
        self.sim.rpc(
            self.id,
            CONTROLLER,
            f"metadata {self.id}",
            lambda respond: respond(controller.records_after(offset)),
            self._apply_metadata,
            self.sim.timing.request_timeout_ms,
            self._next_metadata_fetch,
        )

    def _apply_metadata(self, records: list[tuple[int, bytes]]) -> None:
        applied = False
        for offset, data in records:
            if offset == self.image.last_offset + 1:
                self.image.apply(decode_metadata_record(data), offset)
                applied = True
        if applied:
            assert self.broker is not None
            self.broker.on_metadata_change()
        self._next_metadata_fetch()

    def _next_metadata_fetch(self) -> None:
        interval = self.sim.metadata_interval_ms
        delay = interval + self.sim.rng.randint(0, interval)
        self.later(delay, f"metadata {self.id}", self._fetch_metadata)

    # Broker.maintain_isr: wait lag/2, or until a follower catching up wakes it (then
    # coalesce ISR_WAKE_COALESCE_S); ask for the ISR changes wanted; wait for the answer (or
    # the timeout) and hand it to the broker; wait again.

    def _isr_wait(self) -> None:
        if self.isr_woken:
            delay = int(ISR_WAKE_COALESCE_S * 1000)
        else:
            delay = self.sim.timing.lag_ms // 2
        self.isr_timer = self.later(delay, f"isr {self.id}", self._maintain_isr)

    def _isr_wake(self) -> None:
        if self.isr_woken:
            return
        self.isr_woken = True
        if self.isr_timer is not None and not self.isr_timer.cancelled:
            self.isr_timer.cancel()  # waiting, not asking: the wait ends now
            self._isr_wait()

    def _maintain_isr(self) -> None:
        assert self.broker is not None
        self.isr_timer = None
        self.isr_woken = False
        request = self.broker.isr_changes(self.sim.now)
        if request is None:
            self._isr_wait()
            return
        data = bytes(encode_message(request, ALTER_PARTITION_VERSION))
        controller = self.sim.controller

        def answered(answer: bytes) -> None:
            response = decode_message(AlterPartitionResponse, answer, ALTER_PARTITION_VERSION)
            assert self.broker is not None
            self.broker.isr_changes_answered(request, response)
            self._isr_wait()

        self.sim.rpc(
            self.id,
            CONTROLLER,
            f"alter partition {self.id}",
            lambda respond: respond(controller.alter_partition(data)),
            answered,
            self.sim.timing.alter_partition_timeout_ms,
            self._isr_wait,
        )

    def _checkpoint(self) -> None:
        assert self.log_manager is not None
        self.log_manager.checkpoint()
        self.later(self.sim.timing.checkpoint_ms, f"checkpoint {self.id}", self._checkpoint)

    # ------------------------------------------------------ serving requests

    def serve_fetch(self, data: bytes, respond: Callable[[Any], None]) -> None:
        """handle_fetch: the replica manager answers at once or from its fetch purgatory."""
        assert self.broker is not None
        request = decode_message(FetchRequest, data, FETCH_VERSION)
        params, infos = fetch_params(self.broker.image, request, FETCH_VERSION)

        def answer(partitions: list[FetchResponse.PartitionData]) -> None:
            response = fetch_response(request, partitions, FETCH_VERSION)
            respond(bytes(encode_message(response, FETCH_VERSION)))

        self.broker.replica_manager.fetch_messages(params, infos, answer)

    def serve_produce(self, records: bytes, respond: Callable[[Any], None]) -> None:
        """handle_produce with acks=all: the replica manager answers at once or from its
        produce purgatory."""
        assert self.broker is not None

        def answer(results: AppendResults) -> None:
            result = results[KEY]
            if result.error_code == 0:
                self.sim.checker.acknowledged(self.id, result.base_offset, records)
            respond((result.error_code, result.base_offset))

        self.broker.replica_manager.append_records(
            {KEY: records}, -1, self.sim.timing.produce_timeout_ms, AppendOrigin.CLIENT, answer
        )

    def _expire_at(self, deadline_ms: int) -> None:
        """The replica manager's purgatory timer, on the simulated clock."""
        assert self.broker is not None
        manager = self.broker.replica_manager
        self.later(deadline_ms - self.sim.now, f"purgatory {self.id}", manager.expire_delayed)


# ------------------------------------------------------------------------- client


class SimClient:
    """A producer with acks=all: sends to the leader its metadata names, refreshes the
    metadata from a random broker on errors and every now and then."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.leader = -1
        self.sent = 0
        self.stop_at = 0

    def start(self, stop_at: int) -> None:
        self.stop_at = stop_at
        self.sim.after(0, "refresh metadata", self._refresh)
        self.sim.after(0, "produce", self._produce)

    def _refresh(self) -> None:
        self._ask_for_leader()
        if self.sim.now < self.stop_at:
            self.sim.after(self.sim.rng.randint(200, 600), "refresh metadata", self._refresh)

    def _ask_for_leader(self) -> None:
        sim = self.sim
        target = sim.brokers[sim.rng.choice(BROKERS)]

        def answer(respond: Callable[[Any], None]) -> None:
            state = target.image.partition(TOPIC, INDEX)
            respond(state.leader if state is not None else -1)

        def on_reply(leader: int) -> None:
            self.leader = leader

        sim.rpc(CLIENT, target.id, "client metadata", answer, on_reply, 1000, lambda: None)

    def _produce(self) -> None:
        sim = self.sim
        if sim.now >= self.stop_at:
            return
        sim.after(sim.rng.randint(5, 60), "produce", self._produce)
        if self.leader not in sim.brokers:
            return
        self.sent += 1
        values = [
            f"s{sim.seed}-m{self.sent}-{i}-".encode() + bytes(sim.rng.randint(0, 60))
            for i in range(sim.rng.randint(1, 3))
        ]
        batch = build_simple_batch(values, timestamp=sim.now)
        target = sim.brokers[self.leader]

        def on_reply(answer: tuple[int, int]) -> None:
            if answer[0] in (
                ErrorCode.NOT_LEADER_OR_FOLLOWER,
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            ):
                self._ask_for_leader()

        sim.rpc(
            CLIENT,
            target.id,
            f"produce ->{target.id}",
            lambda respond: target.serve_produce(batch, respond),
            on_reply,
            sim.timing.produce_timeout_ms + 1000,
            self._ask_for_leader,
        )
