"""A run's HTML report, like Jepsen's: the verdict with its counts and failures, the phases, and
plots rendered by matplotlib into PNGs embedded in the page (no CDN, no scripts) — throughput
and latency over time with the fault intervals shaded, availability per second, and
acknowledged vs lost / duplicated / indeterminate writes.

matplotlib is the optional extra `kraft[chaos]`; without it the page has the tables only.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from kraft.chaos.history import History

if TYPE_CHECKING:
    from kraft.chaos.runner import RunResult

BIN_S = 1.0


def _latencies(history: History) -> tuple[list[float], list[float], list[float]]:
    """Ack times, their latencies, and the times of indeterminate completions."""
    invoked: dict[str, float] = {}
    times: list[float] = []
    latencies: list[float] = []
    undecided: list[float] = []
    for op in history.snapshot():
        if op.f != "send" or op.value is None:
            continue
        if op.kind == "invoke":
            invoked[op.value] = op.time
        elif op.kind == "ok" and op.value in invoked:
            times.append(op.time)
            latencies.append((op.time - invoked[op.value]) * 1000)
        elif op.kind in ("info", "fail"):
            undecided.append(op.time)
    return times, latencies, undecided


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(result: RunResult, history: History) -> list[tuple[str, str]]:
    """(title, base64 PNG) per plot; empty without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    times, latencies, undecided = _latencies(history)
    end = max([history.now(), *times]) if times else history.now()
    bins = int(end / BIN_S) + 1
    per_bin = [0] * bins
    for t in times:
        per_bin[int(t / BIN_S)] += 1
    xs = [i * BIN_S for i in range(bins)]

    def shade(ax: Any) -> None:
        for name, start, stop in result.faults:
            ax.axvspan(start, stop, color="tab:red", alpha=0.15, label=f"fault: {name}")
        for name, start, _stop in result.phases:
            if name in ("steady", "recovery", "final read"):
                ax.axvline(start, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel("time (s)")

    out: list[tuple[str, str]] = []
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.step(xs, [n / BIN_S for n in per_bin], where="post", color="tab:blue")
    top.set_ylabel("acknowledged writes / s")
    shade(top)
    if result.faults:
        top.legend(loc="upper right", fontsize="small")
    bottom.scatter(times, latencies, s=3, color="tab:green", label="ok")
    if undecided:
        bottom.scatter(undecided, [0] * len(undecided), s=12, marker="x", color="tab:orange")
    bottom.set_yscale("log")
    bottom.set_ylabel("write latency (ms)")
    shade(bottom)
    out.append(("Throughput and latency", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 2.2))
    ax.fill_between(xs, [1 if n else 0 for n in per_bin], step="post", color="tab:blue")
    ax.set_yticks([0, 1], ["down", "up"])
    ax.set_ylabel("available")
    shade(ax)
    out.append(("Availability (any write acknowledged in the second)", _png(fig)))
    plt.close(fig)

    c = result.verdict.counts
    names = ["acknowledged", "indeterminate", "lost", "duplicated", "reordered", "skipped"]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    colours = ["tab:blue", "tab:orange", "tab:red", "tab:red", "tab:red", "tab:red"]
    bars = ax.bar(names, [c.get(n, 0) for n in names], color=colours)
    ax.bar_label(bars)
    ax.set_ylabel("writes / records")
    out.append(("Acknowledged vs lost", _png(fig)))
    plt.close(fig)
    return out


def write_report(result: RunResult, history: History) -> None:
    verdict = result.verdict
    colour = "#2a7" if verdict.valid else "#c33"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in verdict.counts.items()
    )
    phase_rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{a:.2f}</td><td>{b:.2f}</td></tr>"
        for n, a, b in result.phases
    )
    failures = "".join(
        f"<h3>{html.escape(f.kind)}: {f.count}, t = {f.window[0]:.2f} … {f.window[1]:.2f} s</h3>"
        f"<pre>{html.escape(json.dumps(f.records[:20], indent=1))}</pre>"
        for f in verdict.failures
    )
    images = (
        "".join(
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{png}'>"
            for title, png in plots(result, history)
        )
        or "<p>(plots need matplotlib: pip install 'kraft[chaos]')</p>"
    )
    faults = defaultdict(list)
    for op in history.snapshot():
        if op.f == "fault":
            faults[op.process].append(f"{op.value} at {op.time:.2f} s {op.error or ''}")
    fault_list = "".join(
        f"<li>{html.escape(name)}: {html.escape('; '.join(events))}</li>"
        for name, events in faults.items()
    )
    figures = result.figures
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kraft chaos: {html.escape(result.scenario)}
seed {result.seed}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
td,th{{padding:2px 10px;text-align:left}} pre{{background:#f4f4f4;padding:8px}}
.verdict{{color:{colour};font-size:1.6em}}</style></head><body>
<h1>kraft chaos: {html.escape(result.scenario)}, seed {result.seed}</h1>
<p class="verdict">valid: {str(verdict.valid).lower()}</p>
<p>Faults: <ul>{fault_list or "<li>none</li>"}</ul></p>
<p>Unavailability window (longest time one partition went without an acknowledged write):
{figures.get("unavailable_s")} s (partition {figures.get("unavailable_partition")});
throughput {figures.get("acks_per_s")} acknowledged writes/s.</p>
<table><tr><th>count</th><th></th></tr>{rows}</table>
{failures}
{images}
<h2>Phases</h2><table><tr><th>phase</th><th>from (s)</th><th>to (s)</th></tr>{phase_rows}</table>
<p>Files: <a href="verdict.json">verdict.json</a>, <a href="history.jsonl">history.jsonl</a>.</p>
</body></html>
"""
    (result.out / "index.html").write_text(page)
