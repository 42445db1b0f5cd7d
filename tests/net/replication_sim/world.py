"""The world of one run: the kernel, the network between the nodes, the faults and the run
itself (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.net.replication_sim.brokers import SimBroker, SimClient
from tests.net.replication_sim.checker import Checker
from tests.net.replication_sim.controller import SimController
from tests.net.replication_sim.model import (
    BROKERS,
    CLIENT,
    CONTROLLER,
    INDEX,
    TOPIC,
    Plan,
    SimulationFailure,
    Timing,
)
from tests.sim.kernel import Kernel, Timer, ms, stream
from tests.sim.links import LinkProfile, Network

# Every link: 1-4 ms, in order (one TCP connection per direction); faults add to this.
LINKS = LinkProfile("tcp", delay=(ms(1), ms(4)))


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
        self.rng = stream(seed, "world")
        self.kernel = Kernel()
        self.clock = self.kernel.clock.ms  # what the brokers and the controller read
        # One connection per directed link: what is sent first arrives first (TCP); a cut
        # link loses what arrives on it.
        self.network: Network[Callable[[], bool]] = Network(
            self.kernel, seed, LINKS, lambda message: message.payload()
        )
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
        self.kernel.after_event = self.checker.check
        self.faults_injected = 0

    # -------------------------------------------------------------- events

    @property
    def now(self) -> int:
        """Simulated milliseconds since the start."""
        return self.kernel.clock.ms()

    @property
    def step(self) -> int:
        return self.kernel.step

    def after(self, delay_ms: int, label: str, fn: Callable[[], None]) -> Timer:
        return self.kernel.after_ms(delay_ms, label, fn)

    def failure(self, message: str) -> SimulationFailure:
        recent = self.kernel.recent()
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
            f"  faults: {self.network.faulty()}",
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
        if not self.up(src):
            return
        life = self.life(dst)

        def deliver() -> bool:
            if self.up(dst) and self.life(dst) == life:
                fn()
                return True
            return False

        self.network.send(src, dst, deliver, label)

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
        network = self.network
        if kind in ("isolate", "cut", "stale"):
            fresh = network.block(links)
            self.after(duration, label, lambda: network.unblock(fresh))
        elif kind == "loss":
            network.set_loss(links, rng.uniform(0.1, 0.6))
            self.after(duration, label, lambda: network.set_loss(links, 0.0))
        else:
            network.set_slow(links, ms(rng.randint(100, 2500)))
            self.after(duration, label, lambda: network.set_slow(links, 0))

    def heal_all(self) -> None:
        self.network.heal()
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
        self.kernel.run_until_ms(heal_at)
        self.heal_all()
        self.after(0, "healed", lambda: None)
        deadline = heal_at + plan.recovery_ms
        converged_since: int | None = None
        while self.now < deadline:
            self.kernel.run_until_ms(self.now + 250)
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
