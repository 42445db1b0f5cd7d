"""Named chaos scenarios: which fault a run injects (built from the run's seed), the topic
layout and the clients that write and read during it.

`SCENARIOS` is the registry `kraft chaos list` prints and `kraft chaos run --scenario` looks up.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kraft.chaos.process_faults import KillAll, KillRestart, Pause, Site, Target

TOPIC = "chaos-ledger"
GROUP = "chaos-group"


class RunFault(Protocol):
    """A recoverable fault as the runner drives it."""

    name: str

    def inject(self, site: Site, rng: random.Random) -> str: ...

    def heal(self, site: Site) -> None: ...


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # Builds the run's fault from its seeded random source (None: no fault, the baseline).
    fault: Callable[[random.Random], RunFault | None]
    partitions: int = 3
    replication_factor: int = 3
    producers: tuple[str, ...] = ("confluent", "kafka-python")
    consumers: int = 2
    # Needs every link proxied (a ChaosCluster), not just processes to signal.
    network: bool = False


def _register(*scenarios: Scenario) -> dict[str, Scenario]:
    return {s.name: s for s in scenarios}


SCENARIOS: dict[str, Scenario] = _register(
    Scenario("none", "no fault: the baseline every rule must pass", lambda rng: None),
    Scenario(
        "kill-leader",
        "kill -9 the leader of partition 0, restart it after the impact phase",
        lambda rng: KillRestart(Target.partition_leader(TOPIC, 0)),
    ),
    Scenario(
        "kill-controller",
        "kill -9 the active controller, restart it after the impact phase",
        lambda rng: KillRestart(Target.active_controller()),
    ),
    Scenario(
        "kill-any",
        "kill -9 a node the seed picks, restart it after the impact phase",
        lambda rng: KillRestart(Target.any_node()),
    ),
    Scenario(
        "pause-leader",
        "SIGSTOP the leader of partition 0 for the impact phase",
        lambda rng: Pause(Target.partition_leader(TOPIC, 0)),
    ),
    Scenario(
        "pause-controller",
        "SIGSTOP the active controller for the impact phase",
        lambda rng: Pause(Target.active_controller()),
    ),
    Scenario(
        "kill-all",
        "kill -9 every node at once, restart them all after the impact phase",
        lambda rng: KillAll(),
    ),
)


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
