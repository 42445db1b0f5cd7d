"""Short chaos runs in the default test command (issue 13, must-show 2): three scenarios (a
network partition through the proxies, a SIGSTOP, kill -9 of every node), one seed each, real
processes on a ChaosCluster and real clients (confluent-kafka and kafka-python acks=all idempotent
producers, a two-member consumer group), the checker over the whole history, and the report.

The three together stay under three minutes; `kraft chaos campaign` runs the long version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kraft.chaos.runner import run
from kraft.chaos.scenarios import SCENARIOS

DURATION_S = 20.0
# Each run: its duration plus cluster start, drain, read-back and stop.
RUN_BUDGET_S = DURATION_S + 40.0


@pytest.mark.parametrize("name", ["isolate-leader", "pause-controller", "kill-all"])
def test_a_short_chaos_run_is_valid(name: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(SCENARIOS[name], 1, DURATION_S, tmp_path / "report")
    took = time.monotonic() - started
    counts = result.verdict.counts
    assert result.valid, result.verdict.describe()
    # The run did what it claims: writes from both clients, the fault, consumers, observers.
    assert counts["acknowledged"] > 500
    assert counts["read"] >= counts["acknowledged"]
    assert counts["polled"] >= counts["acknowledged"]
    assert counts["commits"] > 0
    assert counts["observations"] > 0
    processes = {line.split('"process":"')[1].split('"')[0] for line in _lines(result.out)}
    assert {"p0-confluent", "p1-kafka-python", "chaos-group/0", "observer"} <= processes
    (fault,) = result.faults
    assert fault[1] < fault[2]  # injected, then healed
    verdict = json.loads((result.out / "verdict.json").read_text())
    assert verdict["valid"] is True
    assert verdict["counts"]["lost"] == 0
    page = (result.out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert not (result.out / "logs").exists()  # node logs are kept for failed runs only
    print(f"{name}: {took:.1f} s, figures {result.figures}, counts {counts}")
    assert took < RUN_BUDGET_S


def _lines(out: Path) -> list[str]:
    return (out / "history.jsonl").read_text().splitlines()
