"""What a quorum simulation runs: the network profiles, the configuration, the report."""

from __future__ import annotations

from dataclasses import dataclass

from kraft.quorum.raft import RaftTimeouts
from tests.sim.kernel import seconds
from tests.sim.links import LinkProfile

SECRET = b"simulated"
MAX_ENTRY_BYTES = 1 << 16
# Crash points within a voter's loop pass.
BEFORE_TICK, AFTER_TICK, BEFORE_SYNC = "before tick", "after tick", "after messages, before sync"
CRASH_POINTS = (BEFORE_TICK, AFTER_TICK, BEFORE_SYNC)


class InvariantViolation(AssertionError):
    """A safety or liveness check failed; the message says how to replay the run."""


# -- configuration --------------------------------------------------------------------------------

# What the authenticated transport can do: per connection, in order, no loss or duplicates;
# a partition holds messages back (TCP retransmits) until the connection breaks.
TCP = LinkProfile("tcp", delay=(seconds(0.0005), seconds(0.01)), fifo=True, hold_when_blocked=True)
# What TCP never does, and Raft itself must tolerate: independent delays (reordering, also
# across connections), loss, duplicates and occasional very late messages.
CHAOS = LinkProfile(
    "chaos",
    delay=(seconds(0.0005), seconds(0.05)),
    fifo=False,
    drop=0.05,
    duplicate=0.03,
    late=0.02,
    late_delay=(seconds(0.1), seconds(1.5)),
)
PROFILES = {p.name: p for p in (TCP, CHAOS)}


@dataclass(frozen=True)
class SimConfig:
    voters: int = 3
    network: LinkProfile = TCP
    warmup_seconds: float = 2.0
    fault_seconds: float = 120.0
    recovery_seconds: float = 20.0
    step_seconds: float = 0.02
    append_every: tuple[float, float] = (0.05, 0.5)
    fault_every: tuple[float, float] = (0.3, 3.0)
    down_for: tuple[float, float] = (0.3, 6.0)  # a crashed voter restarts after this
    partition_for: tuple[float, float] = (0.5, 8.0)
    power_loss: float = 0.5  # share of crashes that also lose unsynced writes
    timeouts: RaftTimeouts = RaftTimeouts(election=1.0, fetch=2.0)
    # Deliberately broken variants, to show that the checks can fail:
    #   "skip_barrier": acknowledgements and votes leave before the journal is synced;
    #   "forget_vote": a restarted voter has forgotten whom it voted for in its term.
    broken: str | None = None

    def describe(self) -> str:
        text = f"{self.voters} voters, {self.network.name} network"
        return text + (f", broken: {self.broken}" if self.broken else "")


@dataclass
class SimReport:
    seed: int
    config: SimConfig
    steps: int = 0
    simulated_seconds: float = 0.0
    wall_seconds: float = 0.0
    terms_with_leader: int = 0
    max_term: int = 0
    appended: int = 0
    committed_payloads: int = 0
    crashes: int = 0
    power_losses: int = 0
    partitions: int = 0
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    recovered_after: float = 0.0  # simulated seconds from healing to the final commit
    digest: str = ""

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.simulated_seconds:.0f} s simulated in {self.steps} steps "
            f"({self.wall_seconds:.2f} s), {self.terms_with_leader} terms with a leader, "
            f"{self.committed_payloads}/{self.appended} payloads committed, {self.crashes} "
            f"crashes ({self.power_losses} power losses), {self.partitions} partitions, "
            f"{self.delivered}/{self.sent} messages delivered ({self.lost} lost, "
            f"{self.duplicated} duplicated), recovered {self.recovered_after:.2f} s after healing"
        )
