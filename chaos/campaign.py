"""Many seeded runs across scenarios, and their summary table: per scenario the runs, valid
runs, acknowledged writes, lost / duplicated / reordered writes, skipped committed records and
the unavailability window (the longest time without an acknowledged write; max over runs)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kraft.chaos.checker import RULES, Failure, Verdict
from kraft.chaos.runner import RunResult, run
from kraft.chaos.scenarios import Scenario

log = logging.getLogger(__name__)

COLUMNS = (
    "scenario",
    "runs",
    "valid",
    "acked",
    "lost",
    "duplicated",
    "reordered",
    "skipped",
    "unavailable max s",
    "unavailable mean s",
)


@dataclass
class Row:
    scenario: str
    results: list[RunResult] = field(default_factory=list)

    def cells(self) -> list[str]:
        counts = [r.verdict.counts for r in self.results]
        gaps = [float(r.figures.get("unavailable_s", 0.0)) for r in self.results]
        return [
            self.scenario,
            str(len(self.results)),
            str(sum(r.valid for r in self.results)),
            str(sum(c["acknowledged"] for c in counts)),
            str(sum(c["lost"] for c in counts)),
            str(sum(c["duplicated"] for c in counts)),
            str(sum(c["reordered"] for c in counts)),
            str(sum(c["skipped"] for c in counts)),
            f"{max(gaps, default=0.0):.2f}",
            f"{sum(gaps) / max(len(gaps), 1):.2f}",
        ]


def broken_run(scenario: str, seed: int, out: Path, error: BaseException) -> RunResult:
    """A run that did not finish (the cluster never became ready, a client call raised): an
    invalid result whose one failure is the error; its node logs are in out/logs."""
    counts = dict.fromkeys(("attempted", "acknowledged", "read", *RULES, "incomplete"), 0)
    counts["incomplete"] = 1
    failure = Failure("incomplete", 1, [{"error": repr(error)}], (0.0, 0.0))
    verdict = Verdict(False, counts, [failure])
    out.mkdir(parents=True, exist_ok=True)
    verdict.write(out / "verdict.json", scenario=scenario, seed=seed)
    return RunResult(scenario, seed, verdict, out, [], [], {"error": repr(error)})


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def campaign(
    scenarios: Sequence[Scenario],
    runs: int,
    duration: float,
    out: Path,
    *,
    first_seed: int = 1,
    progress: Callable[[RunResult], None] | None = None,
) -> list[Row]:
    """`runs` runs in all, round-robin over `scenarios`, seeds counting up from `first_seed`;
    each run's report in out/<scenario>-<seed>/, the table in out/summary.md and the per-run
    lines in out/summary.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {s.name: Row(s.name) for s in scenarios}
    with open(out / "summary.jsonl", "a") as lines:
        for i in range(runs):
            chosen = scenarios[i % len(scenarios)]
            seed = first_seed + i // len(scenarios)
            where = out / f"{chosen.name}-{seed}"
            try:
                result = run(chosen, seed, duration, where)
            except Exception as e:  # noqa: BLE001 — a broken run is a row, not the campaign's end
                log.exception("chaos campaign: %s seed %d broke", chosen.name, seed)
                result = broken_run(chosen.name, seed, where, e)
            rows[chosen.name].results.append(result)
            lines.write(
                json.dumps(
                    {
                        "scenario": chosen.name,
                        "seed": seed,
                        "valid": result.valid,
                        "counts": result.verdict.counts,
                        "figures": result.figures,
                    }
                )
                + "\n"
            )
            lines.flush()
            if progress is not None:
                progress(result)
    done = [row for row in rows.values() if row.results]
    (out / "summary.md").write_text(table(done) + "\n")
    return done
