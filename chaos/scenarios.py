"""Named chaos scenarios: which fault a run injects (built from the run's seed), the topic
layout and the clients that write and read during it.

A scenario's fault is a recoverable `Fault` (injected for the impact phase, healed after it) or
a `OneOffFault` (executed at the start of the impact phase: kill -9 and restart). Targets that
name a role ("the leader of partition 0") are resolved when the fault is injected; choices the
seed makes (which node, which direction, how much latency) are made when the run begins, so a
seed replays the same run.

`SCENARIOS` is the registry `kraft chaos list` prints and `kraft chaos run --scenario` looks up.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from kraft.chaos.faults import (
    Bandwidth,
    Bridge,
    CutClients,
    Fault,
    IsolateNode,
    Kill,
    KillAll,
    KillRestart,
    Latency,
    OneOffFault,
    OneWay,
    Pause,
    ResetPeers,
    SplitMajorityMinority,
    Target,
)

TOPIC = "chaos-ledger"
GROUP = "chaos-group"
NODES = (1, 2, 3)

AnyFault = Fault | OneOffFault


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # Builds the run's fault from its seeded random source (None: no fault, the baseline).
    fault: Callable[[random.Random], AnyFault | None]
    partitions: int = 3
    replication_factor: int = 3
    producers: tuple[str, ...] = ("confluent", "kafka-python")
    consumers: int = 2


LEADER = Target.partition_leader(TOPIC, 0)
FOLLOWER = Target.follower(TOPIC, 0)
CONTROLLER = Target.active_controller()
COORDINATOR = Target.coordinator(GROUP)


def _one_way(rng: random.Random) -> AnyFault:
    # Which side of partition 0 cannot reach the other: the leader its follower, or back.
    return OneWay(LEADER, FOLLOWER) if rng.random() < 0.5 else OneWay(FOLLOWER, LEADER)


def _latency(rng: random.Random) -> AnyFault:
    ms = rng.choice((50, 100, 200))
    return Latency(ms, ms // 2)


def _register(*scenarios: Scenario) -> dict[str, Scenario]:
    return {s.name: s for s in scenarios}


SCENARIOS: dict[str, Scenario] = _register(
    Scenario("none", "no fault: the baseline every rule must pass", lambda rng: None),
    Scenario(
        "isolate-leader",
        "cut the leader of partition 0 off from the other nodes (clients still reach it)",
        lambda rng: IsolateNode(LEADER),
    ),
    Scenario(
        "isolate-leader-clients",
        "cut the leader of partition 0 off from the other nodes and from clients",
        lambda rng: IsolateNode(LEADER, clients=True),
    ),
    Scenario(
        "isolate-follower",
        "cut an in-sync follower of partition 0 off from the other nodes",
        lambda rng: IsolateNode(FOLLOWER),
    ),
    Scenario(
        "isolate-controller",
        "cut the active controller off from the other nodes",
        lambda rng: IsolateNode(CONTROLLER),
    ),
    Scenario(
        "isolate-coordinator",
        "cut the consumer group's coordinator off from the other nodes",
        lambda rng: IsolateNode(COORDINATOR),
    ),
    Scenario(
        "split",
        "split the nodes into a minority holding the active controller and a majority",
        lambda rng: SplitMajorityMinority(reset=rng.random() < 0.5),
    ),
    Scenario(
        "one-way",
        "partition 0's leader cannot reach its follower, or the follower the leader (seeded)",
        _one_way,
    ),
    Scenario(
        "bridge",
        "two halves that reach each other only through one node",
        lambda rng: Bridge(rng.choice(NODES)),
    ),
    Scenario(
        "cut-clients",
        "clients reach no broker while the brokers reach each other (seeded: reset on heal)",
        lambda rng: CutClients(reset=rng.random() < 0.5),
    ),
    Scenario("latency", "50-200 ms latency with jitter on every link (seeded)", _latency),
    Scenario(
        "bandwidth",
        "every link limited to 32-128 KB/s (seeded)",
        lambda rng: Bandwidth(rng.choice((32, 64, 128))),
    ),
    Scenario(
        "resets",
        "every connection of a node the seed picks is reset soon after it carries data",
        lambda rng: ResetPeers(rng.choice(NODES), timeout_ms=rng.choice((0, 100, 500))),
    ),
    Scenario(
        "pause-leader",
        "SIGSTOP the leader of partition 0 for the impact phase",
        lambda rng: Pause(LEADER),
    ),
    Scenario(
        "pause-controller",
        "SIGSTOP the active controller for the impact phase",
        lambda rng: Pause(CONTROLLER),
    ),
    Scenario(
        "kill-leader",
        "kill -9 the leader of partition 0, start it again after the impact phase",
        lambda rng: Kill(LEADER),
    ),
    Scenario(
        "kill-controller",
        "kill -9 the active controller, start it again after the impact phase",
        lambda rng: Kill(CONTROLLER),
    ),
    Scenario(
        "kill-restart",
        "kill -9 a node the seed picks and start it again at once",
        lambda rng: KillRestart(rng.choice(NODES)),
    ),
    Scenario(
        "kill-all",
        "kill -9 every node at once, then start them all",
        lambda rng: KillAll(),
    ),
)


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
