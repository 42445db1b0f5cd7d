"""The checker can fail (issue 13, must-show 4): a real run on a healthy cluster, sabotaged once
by a producer that records an acknowledgement it never got, and once by a read-back that leaves
out a record. Both verdicts are invalid, naming the record, and the run keeps the node logs."""

from __future__ import annotations

import json
from pathlib import Path

from kraft.chaos.runner import Sabotage, run
from kraft.chaos.scenarios import SCENARIOS

DURATION_S = 5.0


def test_a_false_acknowledgement_is_caught(tmp_path: Path) -> None:
    result = run(SCENARIOS["none"], 1, DURATION_S, tmp_path, sabotage=Sabotage(false_ack=True))
    verdict = result.verdict
    assert not verdict.valid
    lost = next(f for f in verdict.failures if f.kind == "lost")
    assert lost.count == 1
    (record,) = lost.records
    assert record["value"] == "p0-false-ack-never-sent"
    # The offset it claims holds the real write that was acknowledged there.
    assert record["read"].startswith("p0-false-ack-")
    conflict = next(f for f in verdict.failures if f.kind == "conflict")
    assert "p0-false-ack-never-sent" in conflict.records[0]["values"]
    assert lost.window[0] <= lost.window[1]
    assert json.loads((tmp_path / "verdict.json").read_text())["valid"] is False
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "node-1.log",
        "node-2.log",
        "node-3.log",
    ]


def test_a_record_dropped_from_the_read_back_is_caught(tmp_path: Path) -> None:
    result = run(SCENARIOS["none"], 1, DURATION_S, tmp_path, sabotage=Sabotage(drop_read=True))
    verdict = result.verdict
    assert not verdict.valid
    lost = next(f for f in verdict.failures if f.kind == "lost")
    assert lost.count == 1
    (record,) = lost.records
    assert record["partition"] == 0 and record["read"] is None
    # The group saw and committed past that record: the checker does not blame the consumers.
    assert verdict.counts["skipped"] == 0
    assert {f.kind for f in verdict.failures} == {"lost"}
    assert (tmp_path / "logs" / "node-1.log").exists()
