"""One chaos run: `run(scenario, seed, duration, out)`.

Phases (their times go to the report): warm-up (cluster up, topic created, every client
acknowledged or polling) → steady → inject → impact → heal → recovery → final read (producers
flushed, the group's commits caught up with the log end, then every partition read from its
start on the nodes' direct addresses). The seed picks the fault's target and the phase lengths:
the same seed replays the same choices. `duration` is steady + impact + recovery.

The report directory gets `verdict.json`, `history.jsonl`, `index.html` (+ plots) and, when the
verdict is invalid or the run broke, the nodes' logs under `logs/`.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kraft.chaos.checker import Failure, Verdict, check
from kraft.chaos.faults import Fault
from kraft.chaos.history import History
from kraft.chaos.observer import Observer
from kraft.chaos.scenarios import GROUP, TOPIC, AnyFault, Scenario
from kraft.chaos.topology import ChaosCluster
from kraft.chaos.workloads import (
    PRODUCERS,
    GroupConsumer,
    Producer,
    high_watermarks,
    read_back,
    wait_drained,
)
from kraft.launcher import LaunchError

log = logging.getLogger(__name__)

# Fast failure detection, so a run sees a failover within its impact phase; min.insync.replicas
# 2 of RF 3, so an acknowledged write is on two replicas and survives losing any one node.
CLUSTER_CONFIG = {
    "broker.session.timeout.ms": "2000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "1500",
    "min.insync.replicas": "2",
    "group.initial.rebalance.delay.ms": "0",
}
WARM_UP_TIMEOUT_S = 60.0
START_ATTEMPTS = 3
PRODUCER_RATE = 40.0  # writes per second per producer: enough to see gaps, light on 2 cores


@dataclass
class RunResult:
    scenario: str
    seed: int
    verdict: Verdict
    out: Path
    phases: list[tuple[str, float, float]]
    faults: list[tuple[str, float, float]]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.verdict.valid


@dataclass
class Sabotage:
    """Deliberate mistakes, so tests can show the checker catches them."""

    false_ack: bool = False  # one producer records an acknowledgement it never got
    drop_read: bool = False  # the read-back leaves out one record


def chaos_cluster(root: Path) -> ChaosCluster:
    """Three combined nodes, every link through its own proxy (toxiproxy at $TOXIPROXY_URL,
    or ours in this process)."""
    return ChaosCluster(root, 3, extra=CLUSTER_CONFIG)


def create_topic(bootstrap: str, scenario: Scenario) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(
        TOPIC,
        num_partitions=scenario.partitions,
        replication_factor=scenario.replication_factor,
        config={"min.insync.replicas": "2"},
    )
    admin.create_topics([topic], operation_timeout=20)[TOPIC].result(30)


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # polling the condition


def _started(site_factory: Callable[[Path], ChaosCluster], root: Path) -> ChaosCluster:
    """A started cluster. The nodes' ports are chosen free before the proxies listen on ports
    the kernel picks, so a proxy can take a node's port (EADDRINUSE at the node's start, about
    1 run in 30): that start is retried on new ports, nothing of the run having begun."""
    for attempt in range(START_ATTEMPTS):
        site = site_factory(root / f"cluster-{attempt}")
        try:
            site.start()
            return site
        except LaunchError as e:
            site.stop()
            if "address already in use" not in str(e) or attempt == START_ATTEMPTS - 1:
                raise
            log.warning("chaos: a node's port was taken, starting on new ports: %s", e)
    raise AssertionError("unreachable")


def _keep_logs(site: ChaosCluster, out: Path) -> None:
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for node_id, node in site.cluster.nodes.items():
        if node.log_path.exists():
            shutil.copyfile(node.log_path, logs / f"node-{node_id}.log")


def run(
    scenario: Scenario,
    seed: int,
    duration: float,
    out: str | Path,
    *,
    site_factory: Callable[[Path], ChaosCluster] = chaos_cluster,
    sabotage: Sabotage | None = None,
) -> RunResult:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sabotage = sabotage or Sabotage()
    rng = random.Random(f"{scenario.name}:{seed}")
    steady_s = duration * rng.uniform(0.15, 0.25)
    impact_s = duration * rng.uniform(0.3, 0.4)
    recovery_s = max(0.0, duration - steady_s - impact_s)
    fault = scenario.fault(rng)
    history = History()
    phases: list[tuple[str, float, float]] = []
    faults: list[tuple[str, float, float]] = []
    keep_logs = True
    with tempfile.TemporaryDirectory(prefix="kraft-chaos-") as root:
        begin = history.now()
        site = _started(site_factory, Path(root))
        producers: list[Producer] = []
        consumers: list[GroupConsumer] = []
        observer: Observer | None = None
        try:
            bootstrap = site.bootstrap_servers
            create_topic(bootstrap, scenario)
            for i, kind in enumerate(scenario.producers):
                if sabotage.false_ack and i == 0:
                    kind = "false-ack"
                producers.append(
                    PRODUCERS[kind](
                        history,
                        bootstrap,
                        TOPIC,
                        f"p{i}-{kind}",
                        scenario.partitions,
                        PRODUCER_RATE,
                    )
                )
            consumers = [
                GroupConsumer(history, bootstrap, TOPIC, GROUP, m)
                for m in range(scenario.consumers)
            ]
            nodes = site.cluster.nodes
            observer = Observer(
                history,
                site.admin_urls,
                [TOPIC],
                lambda n: nodes[n].alive and not nodes[n].paused,
            )
            observer.start()
            for workload in [*producers, *consumers]:
                workload.start()
            _wait(
                "the first acknowledged writes",
                lambda: history.count("send", "ok") >= 2 * len(producers),
                WARM_UP_TIMEOUT_S,
            )
            phases.append(("warm-up", begin, history.now()))

            start = history.now()
            time.sleep(steady_s)  # the phase's length is what the run measures
            phases.append(("steady", start, history.now()))

            start = history.now()
            if fault is not None:
                _inject(fault, site, history)
                phases.append(("inject", start, history.now()))
                if not isinstance(fault, Fault):  # one-off: over once executed
                    faults.append((fault.name, start, history.now()))
            impact = history.now()
            time.sleep(max(0.0, impact_s - (impact - start)))
            phases.append(("impact", impact, history.now()))
            if isinstance(fault, Fault):
                healing = history.now()
                fault.heal(site)
                history.info(fault.name, "fault", value="heal")
                phases.append(("heal", healing, history.now()))
                faults.append((fault.name, start, history.now()))
            site.heal_all()

            start = history.now()
            time.sleep(recovery_s)
            phases.append(("recovery", start, history.now()))

            start = history.now()
            for producer in producers:
                producer.stop()
            # After heal_all: the brokers advertise their client proxies, which pass everything.
            direct = site.direct_bootstrap_servers
            ends = high_watermarks(direct, TOPIC, scenario.partitions)
            drained = wait_drained(consumers, ends)
            for consumer in consumers:
                consumer.stop()
            observer.stop()
            drop = None
            if sabotage.drop_read:
                drop = {0: max(0, ends.get(0, 1) // 2)}
            found = read_back(history, direct, TOPIC, scenario.partitions, drop=drop)
            phases.append(("final read", start, history.now()))
            verdict = check(history, found)
            errors = [f"{w.process}: {w.error!r}" for w in [*producers, *consumers] if w.error]
            _incomplete(verdict, errors, drained, ends, history.now())
            figures = _figures(history, phases, drained, errors)
            keep_logs = not verdict.valid or bool(errors) or not drained
        finally:
            if observer is not None:
                observer.stop()
            for workload in [*producers, *consumers]:
                try:
                    workload.stop(timeout=5)
                except RuntimeError as e:
                    log.warning("%s", e)
            try:
                site.heal_all()
            finally:
                if keep_logs:
                    _keep_logs(site, out)
                site.stop()
                history.dump(out / "history.jsonl")
    result = RunResult(scenario.name, seed, verdict, out, phases, faults, figures)
    verdict.write(
        out / "verdict.json",
        scenario=scenario.name,
        seed=seed,
        duration=duration,
        phases=[list(p) for p in phases],
        faults=[list(f) for f in faults],
        figures=figures,
    )
    from kraft.chaos.report import write_report

    write_report(result, history)
    return result


def _inject(fault: AnyFault, site: ChaosCluster, history: History) -> None:
    """Inject a recoverable fault, or execute a one-off one (kill -9 and restart), recording
    when; a one-off fault's name says what it did once it is done."""
    if isinstance(fault, Fault):
        fault.inject(site)
    else:
        history.info(fault.name, "fault", value="execute")
        fault.execute(site)
    history.info(fault.name, "fault", value="inject" if isinstance(fault, Fault) else "done")
    log.info("chaos: %s", fault.name)


def _incomplete(
    verdict: Verdict, errors: list[str], drained: bool, ends: Mapping[int, int], now: float
) -> None:
    """A run whose clients broke, or whose group never caught up, proves nothing: invalid."""
    records: list[dict[str, Any]] = [{"workload_error": e} for e in errors]
    if not drained:
        records.append({"group_not_drained": GROUP, "log_ends": dict(ends)})
    verdict.counts["incomplete"] = len(records)
    if records:
        verdict.failures.append(Failure("incomplete", len(records), records, (now, now)))
        verdict.valid = False


def _figures(
    history: History, phases: list[tuple[str, float, float]], drained: bool, errors: list[str]
) -> dict[str, Any]:
    """Throughput, and the unavailability window: the longest time any one partition went
    without an acknowledged write, between the end of the warm-up and the end of the
    recovery phase."""
    ops = history.snapshot()
    begin = phases[0][2]
    end = next(p[2] for p in phases if p[0] == "recovery")
    acks: dict[int, list[float]] = {}
    for op in ops:
        if op.f == "send" and op.kind == "ok" and op.partition is not None:
            if begin <= op.time <= end:
                acks.setdefault(op.partition, []).append(op.time)
    gap = 0.0
    worst: int | None = None
    for partition, times in acks.items():
        window = [begin, *sorted(times), end]
        longest = max(b - a for a, b in zip(window, window[1:], strict=False))
        if longest > gap:
            gap, worst = longest, partition
    total = sum(len(t) for t in acks.values())
    return {
        "unavailable_s": round(gap, 3),
        "unavailable_partition": worst,
        "acks_per_s": round(total / max(end - begin, 1e-9), 1),
        "consumers_drained": drained,
        "workload_errors": errors,
        "run_s": round(history.now(), 1),
    }


def summary_line(result: RunResult) -> str:
    c = result.verdict.counts
    return json.dumps(
        {
            "scenario": result.scenario,
            "seed": result.seed,
            "valid": result.valid,
            "acknowledged": c["acknowledged"],
            "lost": c["lost"],
            "duplicated": c["duplicated"],
            "reordered": c["reordered"],
            "skipped": c["skipped"],
            "unavailable_s": result.figures.get("unavailable_s"),
        }
    )
