"""A seeded, in-process simulation of one partition on three brokers, a controller and a
producer, linked by a faulty network.

What is real: each broker is a real `Broker` over a real `LogManager` in its own directory
(segments, indexes, checkpoints, leader-epoch cache; crash recovery when it restarts), so
becoming leader or follower (`Broker.on_metadata_change`), the high watermark and ISR rules
(`Partition`), the AlterPartition requests and their answers (`Broker.isr_changes`,
`isr_changes_answered`), the replica manager and its purgatories
(`ReplicaManager.append_records` for the producer's acks=all appends, `fetch_messages` for
followers' long polls, `DelayedProduce` and `DelayedFetch` completed by partition changes and
expired on the simulated clock) and the follower's fetch protocol (`ReplicaFetcherManager`,
`build_fetch_request`, `apply_fetch_response`: truncation by DivergingEpoch, append, high
watermark) are the broker's own code. The controller runs the
real commands — `Controller` and `ControllerService`'s command builders over
`kraft.controller.replication` (registration, fencing after the session timeout, unfencing,
controlled shutdown, elections, ELR, AlterPartition checks, preferred leaders) — on a real
`MetadataImage`; brokers build their own images from the encoded records they fetch.
Requests and responses cross the network encoded with the real codec.

What is simulated: time (one clock in milliseconds, injected everywhere), the event loop,
the network (per-link delay, loss and cuts, either direction; each link delivers in order,
like the TCP connection it stands for), the broker lifecycle (register, heartbeat, unfence
once caught up, controlled shutdown — `BrokerLifecycle` without sockets), the controller's
request plumbing (`ControllerService` without sockets; one controller that never fails) and
the purgatories' timer (`ReplicaManager.wake_at`, on the simulated clock). A crash drops a
broker's memory (its files stay as a killed process leaves them: written, not necessarily
flushed) and the restart recovers the logs from disk; a clean restart shuts the logs down
first.

A run: warm-up, then faults (crashes, clean restarts, isolated nodes, brokers that stop
hearing the controller, cut, lossy and slow links; each seed weighs them differently and
picks min.insync.replicas and how fast metadata spreads) under a steady acks=all workload,
then every fault healed and time to recover. After every event the checker asserts:
- the high watermark a leader exposes never goes back during its leadership;
- every batch below any leader's high watermark is committed: no offset ever holds two
  different committed batches, and every replica's log below its own high watermark holds
  exactly the committed batches (byte for byte, partitionLeaderEpoch included);
- every acks=all produce answered with success is committed at its offset.
After healing: the ISR is all three replicas again, every replica's log equals the leader's
byte for byte, all of it below the high watermark, and holds every committed batch and every
acknowledged produce.

Seeds: `KRAFT_SIM_SEEDS=N` runs N seeds instead of the default, `KRAFT_SIM_SEED=S` one (see
tests/net/test_replication_sim.py); a failure names the seed and the step, with the state
and the last events, and `run_simulation(seed, root)` replays it exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import os
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kraft.config import NodeConfig
from kraft.controller.controller import Controller, ControllerDefaults, Result, TopicSpec
from kraft.controller.replication import BrokerHeartbeats
from kraft.controller.service import (
    ControllerService,
    _alter_command,
    _leaderless_command,
    _preferred_command,
    alter_partition_data,
    stale_broker_epoch,
)
from kraft.log.batch import CRC_START, parse_header
from kraft.log.config import LogConfig
from kraft.log.manager import LogManager
from kraft.log.partition_log import PartitionLog
from kraft.log.records import build_simple_batch
from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataLog
from kraft.net.broker.broker import ISR_WAKE_COALESCE_S, Broker
from kraft.net.broker.handlers import supported_versions
from kraft.net.broker.handlers.fetch import fetch_params, fetch_response
from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import AppendOrigin, AppendResults
from kraft.net.broker.replication import (
    DEFAULT_FETCH_SETTINGS,
    RETRY_BACKOFF_S,
    ReplicaFetcher,
    ReplicaFetcherManager,
    apply_fetch_response,
    build_fetch_request,
)
from kraft.net.protocol import (
    AlterPartitionRequest,
    AlterPartitionResponse,
    ErrorCode,
    FetchRequest,
    FetchResponse,
    decode_message,
    decode_metadata_record,
    encode_message,
    encode_metadata_record,
)

TOPIC = "sim"
INDEX = 0
KEY = (TOPIC, INDEX)
BROKERS = (1, 2, 3)
CONTROLLER = 0
CLIENT = 9

FETCH_VERSION = supported_versions()[1][1]
PRODUCE_VERSION = supported_versions()[0][1]
ALTER_PARTITION_VERSION = 3
# Small segments: appends roll them and truncations cross them.
LOG_CONFIG = LogConfig(segment_bytes=4096, index_interval_bytes=256)


@dataclass(frozen=True, slots=True)
class Timing:
    """Kafka's timers, scaled down together (real defaults in comments)."""

    heartbeat_ms: int = 300  # broker.heartbeat.interval.ms 2000
    fenced_heartbeat_ms: int = 100  # as BrokerLifecycle
    session_timeout_ms: int = 1500  # broker.session.timeout.ms 9000
    session_check_ms: int = 250  # as ControllerService
    lag_ms: int = 2000  # replica.lag.time.max.ms 30000
    request_timeout_ms: int = 1000  # registration, heartbeats, metadata
    # The fetcher's max wait + 10 s.
    fetch_timeout_ms: int = DEFAULT_FETCH_SETTINGS.max_wait_ms + 2000
    alter_partition_timeout_ms: int = 3000  # FORWARD_TIMEOUT_S 30
    produce_timeout_ms: int = 3000  # request.timeout.ms 30000
    checkpoint_ms: int = 5000  # as Node
    preferred_leader_ms: int = 4000  # PREFERRED_LEADER_CHECK_S 30


@dataclass(frozen=True, slots=True)
class Plan:
    warmup_ms: int = 2000
    chaos_ms: int = 20000
    # Producing goes on this long into the recovery.
    produce_after_heal_ms: int = 1000
    recovery_ms: int = 40000
    quiet_ms: int = 3000  # a converged cluster must stay converged this long


class SimulationFailure(AssertionError):
    pass


@dataclass(slots=True)
class Timer:
    label: str
    fn: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class _Event:
    """Stands in for the asyncio.Event the broker's ISR task waits on."""

    def __init__(self, on_set: Callable[[], None]) -> None:
        self.on_set = on_set

    def set(self) -> None:
        self.on_set()


def batches(log: PartitionLog, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """(base offset, last offset, bytes) of the whole batches of `log` in [start, end)."""
    out: list[tuple[int, int, bytes]] = []
    offset = max(start, log.log_start_offset)
    while offset < end:
        got = log.read(offset, 1 << 20, end)
        view = got.records
        if not len(view):
            break
        pos = 0
        while pos < len(view):
            header = parse_header(view, pos)
            out.append(
                (header.base_offset, header.last_offset, bytes(view[pos : pos + header.size]))
            )
            pos += header.size
        offset = got.next_offset
    return out


def _abandon(log_manager: LogManager) -> None:
    """A killed process: file descriptors and maps go, nothing is flushed or trimmed."""
    for log in log_manager.all_logs().values():
        for segment in log.segments:
            segment._unmap()
            if segment._fd >= 0:
                os.close(segment._fd)
                segment._fd = -1


# ------------------------------------------------------------------------ the world


class Sim:
    def __init__(
        self,
        seed: int,
        root: str,
        timing: Timing | None = None,
        plan: Plan | None = None,
    ) -> None:
        self.seed = seed
        self.root = root
        self.timing = timing or Timing()
        self.plan = plan or Plan()
        self.rng = random.Random(seed)
        self.now = 0
        self.step = 0
        self._queue: list[tuple[int, int, Timer]] = []
        self._seq = 0
        self.trace: deque[tuple[int, int, str]] = deque(maxlen=40)
        # Network faults, per directed link (src, dst).
        self.cut: set[tuple[int, int]] = set()
        self.loss: dict[tuple[int, int], float] = {}
        self.slow: dict[tuple[int, int], int] = {}
        self.link_clock: dict[tuple[int, int], int] = {}
        # What this seed stresses: min ISR, how fast metadata spreads, the mix of faults.
        self.min_insync_replicas = self.rng.choice((1, 2, 2))
        self.metadata_interval_ms = self.rng.choice((20, 50, 150, 400))
        self.fault_weights = {
            kind: self.rng.randint(0, 4)
            for kind in ("crash", "restart", "isolate", "stale", "cut", "loss", "slow")
        }
        self.fault_weights["none"] = 1
        self.controller = SimController(self)
        self.brokers = {b: SimBroker(self, b) for b in BROKERS}
        self.client = SimClient(self)
        self.checker = Checker(self)
        self.faults_injected = 0

    # -------------------------------------------------------------- events

    def clock(self) -> int:
        return self.now

    def after(self, delay_ms: int, label: str, fn: Callable[[], None]) -> Timer:
        timer = Timer(label, fn)
        self._seq += 1
        heapq.heappush(self._queue, (self.now + max(delay_ms, 0), self._seq, timer))
        return timer

    def run_until(self, until_ms: int) -> None:
        while self._queue and self._queue[0][0] <= until_ms:
            when, _, timer = heapq.heappop(self._queue)
            if timer.cancelled:
                continue
            self.now = when
            self.step += 1
            self.trace.append((self.step, when, timer.label))
            timer.fn()
            self.checker.check()
        self.now = max(self.now, until_ms)

    def failure(self, message: str) -> SimulationFailure:
        recent = "\n".join(f"  step {s} t={t}: {label}" for s, t, label in self.trace)
        return SimulationFailure(
            f"seed {self.seed}, step {self.step} (t={self.now} ms; min.insync.replicas "
            f"{self.min_insync_replicas}, metadata every {self.metadata_interval_ms} ms, "
            f"faults {self.fault_weights}): {message}\n"
            f"state:\n{self.describe()}\n"
            f"recent events:\n{recent}"
        )

    def describe(self) -> str:
        state = self.controller.image.partition(TOPIC, INDEX)
        lines = [
            f"  controller: {state}" if state else "  controller: no partition yet",
            f"  faults: cut {sorted(self.cut)}, loss {sorted(self.loss)}, slow {sorted(self.slow)}",
        ]
        for b in self.brokers.values():
            p = b.partition
            if not b.alive or p is None:
                lines.append(f"  broker {b.id}: {'up' if b.alive else 'down'}, no partition")
                continue
            role = "leader" if p.is_leader else f"follower of {p.leader}"
            lines.append(
                f"  broker {b.id}: {role} at epoch {p.leader_epoch}/{p.partition_epoch}, "
                f"isr {p.isr} (+{sorted(p.pending_isr)}), log end {p.log.log_end_offset}, "
                f"hw {p.high_watermark}, epochs {p.log.leader_epoch_cache.entries()}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------- network

    def up(self, node: int) -> bool:
        return node not in self.brokers or self.brokers[node].alive

    def life(self, node: int) -> int:
        return self.brokers[node].life if node in self.brokers else 0

    def send(self, src: int, dst: int, label: str, fn: Callable[[], None]) -> None:
        """Deliver `fn` at `dst` after the link's delay, unless the link loses it or `dst`
        restarted meanwhile (its connections are gone)."""
        link = (src, dst)
        if link in self.cut or not self.up(src):
            return
        loss = self.loss.get(link, 0.0)
        if loss and self.rng.random() < loss:
            return
        delay = self.rng.randint(1, 4)
        if link in self.slow:
            delay += self.rng.randint(0, self.slow[link])
        # One connection per link: what is sent first arrives first (TCP).
        arrival = max(self.now + delay, self.link_clock.get(link, 0))
        self.link_clock[link] = arrival
        delay = arrival - self.now
        life = self.life(dst)

        def deliver() -> None:
            if self.up(dst) and self.life(dst) == life:
                fn()

        self.after(delay, label, deliver)

    def rpc(
        self,
        src: int,
        dst: int,
        label: str,
        handle: Callable[[Callable[[Any], None]], None],
        on_reply: Callable[[Any], None],
        timeout_ms: int,
        on_timeout: Callable[[], None],
    ) -> None:
        """A request from `src` answered by `handle(respond)` at `dst`; exactly one of
        `on_reply` and `on_timeout` runs at `src`, unless `src` restarted meanwhile."""
        life = self.life(src)
        settled = False

        def current() -> bool:
            return not settled and self.up(src) and self.life(src) == life

        def reply(value: Any) -> None:
            nonlocal settled
            if current():
                settled = True
                timer.cancel()
                on_reply(value)

        def timeout() -> None:
            nonlocal settled
            if current():
                settled = True
                on_timeout()

        def respond(value: Any) -> None:
            self.send(dst, src, label + " reply", lambda: reply(value))

        self.send(src, dst, label, lambda: handle(respond))
        timer = self.after(timeout_ms, label + " timeout", timeout)

    # -------------------------------------------------------------- faults

    def inject_fault(self) -> None:
        rng = self.rng
        nodes = [CONTROLLER, *BROKERS, CLIENT]
        kinds = list(self.fault_weights)
        kind = rng.choices(kinds, [self.fault_weights[k] for k in kinds])[0]
        duration = rng.randint(300, 6000)
        self.faults_injected += 1
        if kind == "crash":
            broker = self.brokers[rng.choice(BROKERS)]
            if broker.alive:
                broker.crash()
                self.after(duration, f"restart {broker.id}", broker.restart_if_down)
            return
        if kind == "restart":
            broker = self.brokers[rng.choice(BROKERS)]
            if broker.alive and not broker.shutting_down:
                broker.shut_down(restart_after_ms=rng.randint(100, 3000))
            return
        if kind == "none":
            return
        if kind == "isolate":
            node = rng.choice([CONTROLLER, *BROKERS])
            links = [(node, o) for o in nodes if o != node]
            links += [(o, node) for o in nodes if o != node]
        elif kind == "stale":
            # A broker that hears nothing from the controller: its metadata stops, its
            # heartbeats still arrive (so it stays unfenced).
            links = [(CONTROLLER, rng.choice(BROKERS))]
        else:
            a, b = rng.sample(nodes, 2)
            links = [(a, b)] if rng.random() < 0.4 else [(a, b), (b, a)]
        label = f"heal {kind} {links[0][0]}->{links[0][1]}"
        if kind in ("isolate", "cut", "stale"):
            fresh = [link for link in links if link not in self.cut]
            self.cut.update(fresh)
            self.after(duration, label, lambda: self.cut.difference_update(fresh))
        elif kind == "loss":
            p = rng.uniform(0.1, 0.6)
            for link in links:
                self.loss[link] = p
            self.after(duration, label, lambda: self._clear(self.loss, links))
        else:
            d = rng.randint(100, 2500)
            for link in links:
                self.slow[link] = d
            self.after(duration, label, lambda: self._clear(self.slow, links))

    @staticmethod
    def _clear(faults: dict[tuple[int, int], Any], links: list[tuple[int, int]]) -> None:
        for link in links:
            faults.pop(link, None)

    def heal_all(self) -> None:
        self.cut.clear()
        self.loss.clear()
        self.slow.clear()
        for broker in self.brokers.values():
            broker.restart_if_down()

    def _chaos(self, end: int) -> None:
        if self.now >= end:
            return
        self.inject_fault()
        self.after(self.rng.randint(100, 1500), "fault", lambda: self._chaos(end))

    # ----------------------------------------------------------------- run

    def run(self) -> None:
        plan = self.plan
        for broker in self.brokers.values():
            broker.start()
        self.controller.start()
        chaos_start = plan.warmup_ms
        heal_at = chaos_start + plan.chaos_ms
        self.client.start(stop_at=heal_at + plan.produce_after_heal_ms)
        self.after(chaos_start, "chaos starts", lambda: self._chaos(heal_at))
        self.run_until(heal_at)
        self.heal_all()
        self.after(0, "healed", lambda: None)
        deadline = heal_at + plan.recovery_ms
        converged_since: int | None = None
        while self.now < deadline:
            self.run_until(self.now + 250)
            if (
                self.now < heal_at + plan.produce_after_heal_ms
                or self.checker.converged() is not None
            ):
                converged_since = None
            elif converged_since is None:
                converged_since = self.now
            elif self.now - converged_since >= plan.quiet_ms:
                break
        problem = self.checker.converged()
        if problem is not None:
            raise self.failure(f"not converged {plan.recovery_ms} ms after healing: {problem}")
        self.checker.final_check()

    def close(self) -> None:
        for broker in self.brokers.values():
            if broker.alive:
                broker.crash()


# -------------------------------------------------------------------- controller


class SimController:
    """The active controller: ControllerService's request handling without sockets, running
    the real commands (`Controller`, the service's own command builders over
    `kraft.controller.replication`) and committing their records at once."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.image = MetadataImage()
        self.log: list[bytes] = []
        self.controller = Controller(
            self.image,
            cast(MetadataLog, None),  # records are committed by `run` below
            ControllerDefaults(num_partitions=1, default_replication_factor=len(BROKERS)),
            rng=random.Random(sim.seed),
        )
        config = NodeConfig(
            node_id=CONTROLLER,
            process_roles=("controller",),
            listeners=(),
            advertised_listeners=(),
            log_dirs=(sim.root,),
            broker_session_timeout_ms=sim.timing.session_timeout_ms,
        )
        self.service = ControllerService(
            config,
            "sim",
            self.image,
            self.controller,
            is_active=lambda: True,
            quorum_status=lambda: None,
            last_offset=lambda: self.image.last_offset,
        )
        self.heartbeats = BrokerHeartbeats(sim.clock)
        self.service.heartbeats = self.heartbeats
        self.replicas = sim.rng.sample(BROKERS, len(BROKERS))

    def start(self) -> None:
        timing = self.sim.timing
        self._every(timing.session_check_ms, "expire sessions", self._expire_sessions)
        self._every(timing.preferred_leader_ms, "rebalance leaders", self._rebalance_leaders)

    def _every(self, period: int, label: str, job: Callable[[], None]) -> None:
        def run() -> None:
            job()
            self.sim.after(period, label, run)

        self.sim.after(period, label, run)

    def run(self, command: Callable[[MetadataImage], Result[Any]]) -> Any:
        """Controller.run: the command sees the image, its records are committed (encoded, as
        in the metadata log) and applied before it answers."""
        result = command(self.image)
        for record in result.records:
            data = encode_metadata_record(record)
            offset = len(self.log)
            self.log.append(data)
            self.image.apply(decode_metadata_record(data), offset)
        return result.response

    # ---------------------------------------------------------- requests

    def register(self, broker_id: int, incarnation: uuid.UUID, previous_epoch: int) -> int:
        """ControllerService._register."""
        existing = self.image.brokers.get(broker_id)
        if existing is not None and existing.incarnation_id == incarnation:
            self.heartbeats.touch(broker_id)
            return existing.epoch
        unclean = existing is not None and previous_epoch != existing.epoch
        command = self.service._registration_command(
            broker_id, incarnation, [], None, unclean_shutdown=unclean
        )
        epoch: int = self.run(command)
        self.heartbeats.touch(broker_id)
        return epoch

    def heartbeat(
        self, broker_id: int, epoch: int, applied: int, shut_down: bool
    ) -> tuple[int, bool, bool]:
        """ControllerService._heartbeat: (error code, fenced, may shut down)."""
        broker = self.image.brokers.get(broker_id)
        if broker is None:
            return ErrorCode.BROKER_ID_NOT_REGISTERED, True, False
        if broker.epoch != epoch:
            return ErrorCode.STALE_BROKER_EPOCH, True, False
        self.heartbeats.touch(broker_id)
        if shut_down:
            # Controlled shutdown: leaderships move away first.
            self.run(self.service._shutdown_command(broker_id, epoch))
            state = self.image.partition(TOPIC, INDEX)
            return 0, True, state is None or state.leader != broker_id
        if broker.fenced and applied >= broker.epoch:
            self.run(self.controller.unfence_broker(broker_id, epoch))
            self._maybe_create_topic()
        current = self.image.brokers.get(broker_id)
        return 0, current is None or current.fenced, False

    def _maybe_create_topic(self) -> None:
        if TOPIC in self.image.topics or len(self.image.unfenced_brokers()) < len(BROKERS):
            return
        spec = TopicSpec(
            TOPIC,
            assignments={INDEX: self.replicas},
            configs={"min.insync.replicas": str(self.sim.min_insync_replicas)},
        )
        self.run(self.controller.create_topics([spec], False))

    def _expire_sessions(self) -> None:
        """ControllerService._expire_sessions."""
        for broker_id in self.heartbeats.expired(self.sim.timing.session_timeout_ms):
            self.heartbeats.forget(broker_id)
            broker = self.image.brokers.get(broker_id)
            if broker is None or broker.fenced:
                continue
            self.run(self.service._fence_command(broker_id))

    def _rebalance_leaders(self) -> None:
        """ControllerService._rebalance_leaders."""
        self.run(_leaderless_command(self.controller))
        self.run(_preferred_command(self.controller))

    def alter_partition(self, data: bytes) -> bytes:
        """ControllerService._alter_partition."""
        request = decode_message(AlterPartitionRequest, data, ALTER_PARTITION_VERSION)
        if stale_broker_epoch(self.image, request):
            response = AlterPartitionResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
            return bytes(encode_message(response, ALTER_PARTITION_VERSION))
        topics = []
        for t in request.topics:
            parts = []
            for p in t.partitions:
                isr = list(p.new_isr) or [b.broker_id for b in p.new_isr_with_epochs]
                code = self.run(
                    _alter_command(
                        self.controller,
                        request.broker_id,
                        t.topic_id,
                        p.partition_index,
                        p.leader_epoch,
                        p.partition_epoch,
                        isr,
                        p.leader_recovery_state,
                    )
                )
                parts.append(alter_partition_data(self.image, t.topic_id, p.partition_index, code))
            topics.append(
                AlterPartitionResponse.TopicData(
                    topic_name=t.topic_name, topic_id=t.topic_id, partitions=parts
                )
            )
        response = AlterPartitionResponse(topics=topics)
        return bytes(encode_message(response, ALTER_PARTITION_VERSION))

    def records_after(self, offset: int) -> list[tuple[int, bytes]]:
        start = offset + 1
        return [(start + i, r) for i, r in enumerate(self.log[start : start + 64])]


# ------------------------------------------------------------------------ brokers


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


# ------------------------------------------------------------------------ checker


@dataclass(slots=True)
class Verified:
    life: int
    offset: int  # every batch below this was checked against the committed ones
    log_end_offset: int


@dataclass(slots=True)
class Committed:
    last_offset: int
    data: bytes
    step: int


@dataclass(slots=True)
class Checker:
    sim: Sim
    committed: dict[int, Committed] = field(default_factory=dict)  # base offset → batch
    owner: dict[int, int] = field(default_factory=dict)  # offset → base of its batch
    leader_hw: dict[tuple[int, int, int], int] = field(default_factory=dict)
    verified: dict[int, Verified] = field(default_factory=dict)
    # (base offset, broker, the batch as the producer sent it)
    acked: list[tuple[int, int, bytes]] = field(default_factory=list)
    acks_checked: int = 0
    max_hw: int = 0
    final_digest: str = ""

    def forget(self, broker_id: int) -> None:
        self.verified.pop(broker_id, None)

    def acknowledged(self, broker_id: int, base_offset: int, records: bytes) -> None:
        self.acked.append((base_offset, broker_id, records))

    def check(self) -> None:
        sim = self.sim
        # Leaders first: their logs below the high watermark define the committed batches.
        live = [(b, b.partition) for b in sim.brokers.values() if b.alive]
        hosted = [(b, p) for b, p in live if p is not None]
        for broker, p in sorted(hosted, key=lambda bp: not bp[1].is_leader):
            hw = p.high_watermark
            if p.is_leader:
                key = (broker.id, broker.life, p.leader_epoch)
                before = self.leader_hw.get(key, -1)
                if hw < before:
                    raise sim.failure(
                        f"broker {broker.id}, leader at epoch {p.leader_epoch}, moved its high "
                        f"watermark back from {before} to {hw}"
                    )
                self.leader_hw[key] = hw
                self.max_hw = max(self.max_hw, hw)
            self._verify(broker, p, leader=p.is_leader)
        while self.acks_checked < len(self.acked):
            base, broker_id, sent = self.acked[self.acks_checked]
            self.acks_checked += 1
            known = self.committed.get(base)
            if known is None:
                raise sim.failure(
                    f"broker {broker_id} acknowledged the batch at {base}, which no leader's "
                    "high watermark covers"
                )
            if not same_batch(known.data, sent):
                raise sim.failure(
                    f"broker {broker_id} acknowledged a batch at {base}, but another batch is "
                    "committed there"
                )

    def _verify(self, broker: SimBroker, p: Partition, leader: bool) -> None:
        log = p.log
        leo = log.log_end_offset
        state = self.verified.get(broker.id)
        if state is None or state.life != broker.life:
            state = Verified(broker.life, log.log_start_offset, leo)
            self.verified[broker.id] = state
        if leo < state.log_end_offset:
            state.offset = min(state.offset, leo)  # truncated: what is left was checked
        state.offset = max(state.offset, log.log_start_offset)
        state.log_end_offset = leo
        hw = log.high_watermark
        if state.offset >= hw:
            return
        for base, last, data in batches(log, state.offset, hw):
            known = self.committed.get(base)
            if known is None:
                if not leader:
                    raise self.sim.failure(
                        f"broker {broker.id} holds a batch at {base}-{last} below its high "
                        f"watermark {hw} that no leader committed"
                    )
                for offset in range(base, last + 1):
                    other = self.owner.get(offset)
                    if other is not None:
                        raise self.sim.failure(
                            f"leader {broker.id} commits a batch at {base}-{last} over the "
                            f"committed batch at {other}"
                        )
                    self.owner[offset] = base
                self.committed[base] = Committed(last, data, self.sim.step)
            elif known.data != data or known.last_offset != last:
                raise self.sim.failure(
                    f"offset {base} holds two different batches: committed at step "
                    f"{known.step} ({known.last_offset - base + 1} records, "
                    f"{_describe(known.data)}) and now on broker {broker.id} "
                    f"({'leader' if leader else 'follower'}, hw {hw}: "
                    f"{last - base + 1} records, {_describe(data)})"
                )
            state.offset = last + 1

    # ---------------------------------------------------------------- end

    def converged(self) -> str | None:
        """None once the cluster is whole again, else what is still missing."""
        sim = self.sim
        state = sim.controller.image.partition(TOPIC, INDEX)
        if state is None:
            return "the topic was never created"
        if sorted(state.isr) != sorted(BROKERS):
            return f"the controller's ISR is {state.isr}"
        if state.leader not in sim.brokers:
            return "no leader"
        for b in sim.brokers.values():
            reg = sim.controller.image.brokers.get(b.id)
            if reg is None or reg.fenced:
                return f"broker {b.id} is fenced"
        leader = sim.brokers[state.leader].partition
        if leader is None or not leader.is_leader or leader.leader_epoch != state.leader_epoch:
            return f"broker {state.leader} does not lead epoch {state.leader_epoch} yet"
        if sorted(leader.isr) != sorted(BROKERS):
            return f"the leader's ISR is {leader.isr}"
        leo = leader.log.log_end_offset
        if leader.high_watermark != leo:
            return f"the leader's high watermark {leader.high_watermark} is below its end {leo}"
        for b in sim.brokers.values():
            p = b.partition
            if p is None or p.log.log_end_offset != leo:
                return f"broker {b.id} has not caught up to {leo}"
        return None

    def final_check(self) -> None:
        sim = self.sim
        state = sim.controller.image.partition(TOPIC, INDEX)
        assert state is not None
        leader = sim.brokers[state.leader].partition
        assert leader is not None
        hw = leader.high_watermark
        reference = batches(leader.log, leader.log.log_start_offset, hw)
        self.final_digest = hashlib.sha256(b"".join(data for _, _, data in reference)).hexdigest()
        by_base = {base: data for base, _, data in reference}
        for base, known in self.committed.items():
            if by_base.get(base) != known.data:
                raise sim.failure(f"the committed batch at {base} is not in the final log")
        for b in sim.brokers.values():
            p = b.partition
            assert p is not None
            mine = batches(p.log, p.log.log_start_offset, p.log.log_end_offset)
            if mine != reference:
                first = next(
                    (x[0] for x, y in zip(mine, reference, strict=False) if x != y),
                    min(len(mine), len(reference)),
                )
                raise sim.failure(
                    f"after healing broker {b.id}'s log differs from the leader's "
                    f"(broker {state.leader}) at or after offset {first}"
                )
        for base, broker_id, sent in self.acked:
            if not same_batch(by_base.get(base, b""), sent):
                raise sim.failure(f"the batch acknowledged by broker {broker_id} at {base} is lost")


def same_batch(stored: bytes, sent: bytes) -> bool:
    """Whether `stored` is the producer's batch `sent`: the leader rewrites only the base
    offset and partitionLeaderEpoch, which precede the CRC."""
    return len(stored) == len(sent) and stored[CRC_START - 4 :] == sent[CRC_START - 4 :]


def _describe(data: bytes) -> str:
    header = parse_header(data)
    return f"epoch {header.partition_leader_epoch}, crc {header.crc:#x}"


@dataclass(slots=True)
class Outcome:
    seed: int
    steps: int
    sim_ms: int
    committed: int
    acked: int
    produced: int
    faults: int
    epochs: int
    digest: str  # of the final log


def run_simulation(
    seed: int, root: str, timing: Timing | None = None, plan: Plan | None = None
) -> Outcome:
    """One seeded run; raises SimulationFailure naming the seed and step on a violation."""
    sim = Sim(seed, root, timing, plan)
    try:
        sim.run()
    finally:
        sim.close()
    state = sim.controller.image.partition(TOPIC, INDEX)
    return Outcome(
        seed=seed,
        steps=sim.step,
        sim_ms=sim.now,
        committed=len(sim.checker.committed),
        acked=len(sim.checker.acked),
        produced=sim.client.sent,
        faults=sim.faults_injected,
        epochs=state.leader_epoch if state is not None else -1,
        digest=sim.checker.final_digest,
    )
