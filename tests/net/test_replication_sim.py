"""Seeded runs of the replication simulation (tests/net/replication_sim.py): one partition on
three brokers, a controller and a faulty network, checked after every step.

`KRAFT_SIM_SEEDS=N` runs seeds 0..N-1 (default 40, about 15 s of CPU); `KRAFT_SIM_SEED=S`
runs seed S alone, to replay a failure (its message names the seed and the step).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kraft.log.partition_log import PartitionLog
from kraft.net.broker.partition import Partition
from kraft.net.broker.replica_manager import DelayedProduce
from tests.net.replication_sim import Plan, SimulationFailure, run_simulation

if "KRAFT_SIM_SEED" in os.environ:
    SEEDS = [int(os.environ["KRAFT_SIM_SEED"])]
else:
    SEEDS = list(range(int(os.environ.get("KRAFT_SIM_SEEDS", "40"))))


@pytest.mark.parametrize("seed", SEEDS)
def test_replication_keeps_every_committed_write_through_faults(seed: int, tmp_path: Path) -> None:
    outcome = run_simulation(seed, str(tmp_path))
    # The run did something worth checking: writes were committed and acknowledged.
    assert outcome.committed > 0 and outcome.acked > 0, outcome


def test_a_seed_replays_exactly(tmp_path: Path) -> None:
    first = run_simulation(7, str(tmp_path / "a"))
    second = run_simulation(7, str(tmp_path / "b"))
    assert first == second
    assert run_simulation(8, str(tmp_path / "c")) != first


# ------------------------------------------------------------ the checker can fail
#
# Each test breaks one replication rule on purpose and expects the simulation to catch it
# within a few seeds: the checks are not vacuous.


# What the checker says when committed data is lost or changed (as opposed to a cluster
# that does not converge).
SAFETY = (
    "two different batches",
    "no leader committed",
    "over the committed batch",
    "not in the final log",
    "is lost",
    "acknowledged",
    "differs from the leader's",
    "high watermark back",
)


def first_safety_failure(tmp_path: Path, seeds: range) -> SimulationFailure:
    short = Plan(chaos_ms=12000, recovery_ms=20000)
    for seed in seeds:
        try:
            run_simulation(seed, str(tmp_path / str(seed)), plan=short)
        except SimulationFailure as e:
            if any(phrase in str(e) for phrase in SAFETY):
                return e
    raise AssertionError(f"seeds {seeds.start}-{seeds.stop - 1} found no lost or changed data")


@contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(obj, name, value)
        yield


def test_checker_catches_a_leader_that_commits_without_its_followers(tmp_path: Path) -> None:
    def advance_alone(self: Partition) -> bool:
        if not self.is_leader or self.log.high_watermark >= self.log.log_end_offset:
            return False
        self.log.set_high_watermark(self.log.log_end_offset)
        return True

    with patched(Partition, "maybe_advance_high_watermark", advance_alone):
        assert first_safety_failure(tmp_path, range(10))


def test_checker_catches_a_leader_that_never_reports_divergence(tmp_path: Path) -> None:
    """Followers then keep the suffix an old leader wrote and append after it."""
    real: Callable[[PartitionLog, int], tuple[int, int]] = PartitionLog.end_offset_for_epoch

    def never_diverges(log: PartitionLog, epoch: int) -> tuple[int, int]:
        found = real(log, epoch)
        return (epoch, log.log_end_offset) if found[1] >= 0 else found

    with patched(PartitionLog, "end_offset_for_epoch", never_diverges):
        assert first_safety_failure(tmp_path, range(10))


def test_checker_catches_a_delayed_produce_that_does_not_wait_for_the_high_watermark(
    tmp_path: Path,
) -> None:
    """The simulation's produces wait in the replica manager's real purgatory: one that
    answers acks=all as soon as it is tried acknowledges writes a new leader then loses."""

    def answer_at_once(self: DelayedProduce) -> bool:
        return self.force_complete()

    with patched(DelayedProduce, "try_complete", answer_at_once):
        assert first_safety_failure(tmp_path, range(10))
