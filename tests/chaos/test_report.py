"""The report and the campaign table from a synthetic run: the page embeds its three plots
(no external resources), shows the verdict and the failures; the table sums the runs."""

from __future__ import annotations

from pathlib import Path

from kraft.chaos.campaign import Row, broken_run, table
from kraft.chaos.checker import check
from kraft.chaos.history import History
from kraft.chaos.report import write_report
from kraft.chaos.runner import RunResult


def synthetic(out: Path, lose: bool) -> tuple[RunResult, History]:
    history = History()
    for n in range(40):
        value = f"p-{n}"
        history.invoke("p", "send", value=value, topic="t", partition=0, at=n * 0.1)
        history.ok("p", "send", value=value, topic="t", partition=0, offset=n, at=n * 0.1 + 0.01)
    kept = [(n, f"p-{n}") for n in range(40) if not (lose and n == 7)]
    verdict = check(history, {("t", 0): kept})
    phases = [("warm-up", 0.0, 0.5), ("steady", 0.5, 1.0), ("recovery", 3.0, 4.0)]
    faults = [("isolate node 2", 1.0, 3.0)]
    figures = {"unavailable_s": 1.5, "unavailable_partition": 0, "acks_per_s": 10.0}
    return RunResult("isolate-leader", 3, verdict, out, phases, faults, figures), history


def test_the_page_embeds_its_plots_and_names_the_failure(tmp_path: Path) -> None:
    result, history = synthetic(tmp_path, lose=True)
    write_report(result, history)
    page = (tmp_path / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page  # no CDN
    assert "valid: false" in page
    assert "lost: 1" in page and "p-7" in page


def test_the_campaign_table_sums_its_runs(tmp_path: Path) -> None:
    good, _ = synthetic(tmp_path / "a", lose=False)
    bad, _ = synthetic(tmp_path / "b", lose=True)
    broken = broken_run("isolate-leader", 9, tmp_path / "c", TimeoutError("not ready"))
    text = table([Row("isolate-leader", [good, bad, broken])])
    header, _, row = text.splitlines()
    assert header.startswith("| scenario | runs | valid | acked | lost |")
    assert row == "| isolate-leader | 3 | 1 | 80 | 1 | 0 | 0 | 0 | 1.50 | 1.00 |"
    assert (tmp_path / "c" / "verdict.json").read_text().count('"valid": false') == 1
