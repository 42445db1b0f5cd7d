"""The consistency checker: Jepsen's and Redpanda's rules for a Kafka log, applied to a run's
history and its final read-back of every partition.

Rules (each broken one is a `Failure` naming its records and the time window they span):

- `lost`: an acknowledged write is not read back at its acknowledged offset (missing, or
  another value is there); one acknowledged without an offset is not read back at all;
- `conflict`: one offset holds two different acknowledged values;
- `reordered`: the read-back's offsets do not increase in read order, or a producer's write
  acknowledged before it sent another one (real-time order) got the later offset;
- `unknown`: a value no producer attempted appears in the read-back or a consumer's poll;
- `duplicated`: with idempotence, an attempted value appears at two offsets;
- `divergent`: a group consumer saw a value at an offset that the read-back has another value at;
- `skipped`: a record below a group's committed offset that no consumer of the group saw
  (consumers catch up to the log end before the run stops, so this is also "every record is
  seen at least once");
- `split-leader`: two brokers seen leading one partition in the same leader epoch;
- `split-controller`: two nodes seen as the quorum leader in the same term.

Writes completed with `info` (a timeout, an unknown outcome) may or may not be in the log; they
are never lost, and they count as attempted.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kraft.chaos.history import History, Op

TopicPartition = tuple[str, int]
# (topic, partition) → [(offset, value)] in the order the read-back saw them.
ReadBack = Mapping[TopicPartition, Sequence[tuple[int, str]]]
# Records listed per failure kind (the counts say how many there were in all).
MAX_RECORDS = 50
RULES = (
    "lost",
    "conflict",
    "reordered",
    "unknown",
    "duplicated",
    "divergent",
    "skipped",
    "split-leader",
    "split-controller",
)


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str
    count: int
    records: list[dict[str, Any]]
    window: tuple[float, float]  # history times (s) of the operations involved

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "window": list(self.window),
            "records": self.records,
        }


@dataclass
class Verdict:
    valid: bool
    counts: dict[str, int]
    failures: list[Failure] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "counts": self.counts,
            "failures": [f.to_json() for f in self.failures],
        }

    def write(self, path: str | Path, **extra: Any) -> None:
        Path(path).write_text(json.dumps({**self.to_json(), **extra}, indent=2) + "\n")

    def describe(self) -> str:
        lines = [f"valid: {self.valid}", "counts: " + json.dumps(self.counts)]
        for failure in self.failures:
            lines.append(
                f"{failure.kind}: {failure.count} in t={failure.window[0]:.2f}..."
                f"{failure.window[1]:.2f} s, e.g. {json.dumps(failure.records[:3])}"
            )
        return "\n".join(lines)


class _Rule:
    """Collects one rule's violations: the records and the history times they involve."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.count = 0
        self.records: list[dict[str, Any]] = []
        self.times: list[float] = []

    def add(self, record: dict[str, Any], *times: float | None) -> None:
        self.count += 1
        if len(self.records) < MAX_RECORDS:
            self.records.append(record)
        self.times.extend(t for t in times if t is not None)

    def failure(self) -> Failure | None:
        if not self.count:
            return None
        window = (min(self.times), max(self.times)) if self.times else (0.0, 0.0)
        return Failure(self.kind, self.count, self.records, window)


def read_back_of(ops: Iterable[Op]) -> dict[TopicPartition, list[tuple[int, str]]]:
    """The read-back recorded in a history as `read` operations."""
    found: dict[TopicPartition, list[tuple[int, str]]] = defaultdict(list)
    for op in ops:
        if op.f == "read" and op.kind == "ok" and op.topic is not None:
            assert op.partition is not None and op.offset is not None and op.value is not None
            found[(op.topic, op.partition)].append((op.offset, op.value))
    return dict(found)


def check(
    history: History | Iterable[Op],
    read_back: ReadBack | None = None,
    *,
    idempotent: bool = True,
) -> Verdict:
    """Apply every rule; `read_back` defaults to the history's own `read` operations."""
    ops = history.snapshot() if isinstance(history, History) else list(history)
    if read_back is None:
        read_back = read_back_of(ops)
    rules = {kind: _Rule(kind) for kind in RULES}

    invoked: dict[str, Op] = {}  # value → its send invoke
    acked: dict[str, Op] = {}  # value → its send ok
    indeterminate = failed = 0
    for op in ops:
        if op.f != "send" or op.value is None:
            continue
        if op.kind == "invoke":
            invoked[op.value] = op
        elif op.kind == "ok":
            acked[op.value] = op
        elif op.kind == "info":
            indeterminate += 1
        else:
            failed += 1

    # Where the read-back put each value, and what each offset holds.
    at_offset: dict[TopicPartition, dict[int, str]] = {}
    read_time: dict[TopicPartition, float] = {}
    for op in ops:
        if op.f == "read" and op.topic is not None and op.partition is not None:
            read_time.setdefault((op.topic, op.partition), op.time)
    placed: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    records_read = 0
    for tp, records in read_back.items():
        last = -1
        at_offset[tp] = {}
        for offset, value in records:
            records_read += 1
            if offset <= last:
                rules["reordered"].add(
                    {"topic": tp[0], "partition": tp[1], "offset": offset, "after": last},
                    read_time.get(tp),
                )
            last = max(last, offset)
            at_offset[tp][offset] = value
            placed[value].append((tp[0], tp[1], offset))

    _check_acked(acked, invoked, at_offset, rules)
    _check_producer_order(ops, acked, invoked, rules)
    for value, places in placed.items():
        if value not in invoked:
            rules["unknown"].add({"value": value, "at": places}, read_time.get(places[0][:2]))
        if idempotent and len(places) > 1:
            sent = acked.get(value) or invoked.get(value)
            rules["duplicated"].add(
                {"value": value, "at": places}, sent.time if sent is not None else None
            )
    polls, commits = _check_consumers(ops, invoked, at_offset, read_back, rules)
    observations = _check_leaders(ops, rules)

    failures = [f for rule in rules.values() if (f := rule.failure()) is not None]
    counts = {
        "attempted": len(invoked),
        "acknowledged": len(acked),
        "acknowledged_without_offset": sum(1 for ok in acked.values() if ok.offset is None),
        "indeterminate": indeterminate,
        "failed": failed,
        "read": records_read,
        "polled": polls,
        "commits": commits,
        "observations": observations,
        **{kind: rule.count for kind, rule in rules.items()},
    }
    return Verdict(valid=not failures, counts=counts, failures=failures)


def _check_acked(
    acked: Mapping[str, Op],
    invoked: Mapping[str, Op],
    at_offset: Mapping[TopicPartition, Mapping[int, str]],
    rules: dict[str, _Rule],
) -> None:
    by_offset: dict[tuple[str, int, int], list[Op]] = defaultdict(list)
    for value, ok in acked.items():
        assert ok.topic is not None and ok.partition is not None
        tp = (ok.topic, ok.partition)
        sent = invoked.get(value)
        if ok.offset is None:
            # Acknowledged without an offset: librdkafka's implicit ack of an idempotent batch
            # whose own response was lost, once a later batch of the producer is acknowledged
            # (the sequence numbers prove it was written). It must be in the partition.
            if value not in at_offset.get(tp, {}).values():
                rules["lost"].add(
                    {"value": value, "topic": tp[0], "partition": tp[1], "acked_at": ok.time},
                    sent.time if sent else None,
                    ok.time,
                )
            continue
        by_offset[(tp[0], tp[1], ok.offset)].append(ok)
        there = at_offset.get(tp, {}).get(ok.offset)
        if there != value:
            rules["lost"].add(
                {
                    "value": value,
                    "topic": tp[0],
                    "partition": tp[1],
                    "offset": ok.offset,
                    "read": there,
                    "sent_at": sent.time if sent else None,
                    "acked_at": ok.time,
                },
                sent.time if sent else None,
                ok.time,
            )
    for (topic, partition, offset), oks in by_offset.items():
        if len({ok.value for ok in oks}) > 1:
            rules["conflict"].add(
                {
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "values": sorted(str(ok.value) for ok in oks),
                },
                *(ok.time for ok in oks),
            )


def _check_producer_order(
    ops: Sequence[Op],
    acked: Mapping[str, Op],
    invoked: Mapping[str, Op],
    rules: dict[str, _Rule],
) -> None:
    """Per producer and partition: a write acknowledged before another was sent has the lower
    offset (an idempotent producer's sequence numbers keep its log order)."""
    per: dict[tuple[str, str, int], list[Op]] = defaultdict(list)
    for ok in acked.values():
        if ok.offset is not None and ok.topic is not None and ok.partition is not None:
            per[(ok.process, ok.topic, ok.partition)].append(ok)
    for (process, topic, partition), oks in per.items():
        oks.sort(key=lambda o: _sent_time(o, invoked))
        # Walk in send order, remembering the highest offset acknowledged before each send.
        done = sorted(oks, key=lambda o: o.time)
        j = 0
        best: Op | None = None
        for op in oks:
            start = _sent_time(op, invoked)
            while j < len(done) and done[j].time < start:
                if best is None or (done[j].offset or 0) > (best.offset or 0):
                    best = done[j]
                j += 1
            if best is not None and op.offset is not None and op.offset < (best.offset or 0):
                rules["reordered"].add(
                    {
                        "process": process,
                        "topic": topic,
                        "partition": partition,
                        "value": op.value,
                        "offset": op.offset,
                        "acked_before": {"value": best.value, "offset": best.offset},
                    },
                    best.time,
                    op.time,
                )


def _sent_time(ok: Op, invoked: Mapping[str, Op]) -> float:
    sent = invoked.get(ok.value or "")
    return sent.time if sent is not None else ok.time


def _check_consumers(
    ops: Sequence[Op],
    invoked: Mapping[str, Op],
    at_offset: Mapping[TopicPartition, Mapping[int, str]],
    read_back: ReadBack,
    rules: dict[str, _Rule],
) -> tuple[int, int]:
    # Group consumers are named "<group>/<member>": what a group saw is the union of its members.
    seen: dict[tuple[str, str, int], set[int]] = defaultdict(set)
    committed: dict[tuple[str, str, int], tuple[int, float]] = {}
    polls = commits = 0
    for op in ops:
        if op.kind != "ok" or op.topic is None or op.partition is None or op.offset is None:
            continue
        group = op.process.split("/", 1)[0]
        key = (group, op.topic, op.partition)
        if op.f == "poll":
            polls += 1
            seen[key].add(op.offset)
            value = op.value or ""
            if value not in invoked:
                rules["unknown"].add(
                    {"value": value, "consumer": op.process, "offset": op.offset}, op.time
                )
            there = at_offset.get((op.topic, op.partition), {}).get(op.offset)
            if there is not None and there != value:
                rules["divergent"].add(
                    {
                        "consumer": op.process,
                        "topic": op.topic,
                        "partition": op.partition,
                        "offset": op.offset,
                        "polled": value,
                        "read": there,
                    },
                    op.time,
                )
        elif op.f == "commit":
            commits += 1
            if key not in committed or op.offset >= committed[key][0]:
                committed[key] = (op.offset, op.time)
    for (group, topic, partition), (offset, when) in committed.items():
        saw = seen.get((group, topic, partition), set())
        for record_offset, value in read_back.get((topic, partition), ()):
            if record_offset < offset and record_offset not in saw:
                rules["skipped"].add(
                    {
                        "group": group,
                        "topic": topic,
                        "partition": partition,
                        "offset": record_offset,
                        "value": value,
                        "committed": offset,
                    },
                    when,
                )
    return polls, commits


def _observers(by_leader: Mapping[str, list[Op]]) -> dict[str, list[int]]:
    """Leader → the nodes that saw it."""
    return {v: sorted({o.node for o in s if o.node is not None}) for v, s in by_leader.items()}


def _check_leaders(ops: Sequence[Op], rules: dict[str, _Rule]) -> int:
    leaders: dict[tuple[str, int, int], dict[str, list[Op]]] = defaultdict(
        lambda: defaultdict(list)
    )
    controllers: dict[int, dict[str, list[Op]]] = defaultdict(lambda: defaultdict(list))
    observations = 0
    for op in ops:
        if op.value is None or op.epoch is None or op.value in ("-1", "None"):
            continue
        if op.f == "leader" and op.topic is not None and op.partition is not None:
            observations += 1
            leaders[(op.topic, op.partition, op.epoch)][op.value].append(op)
        elif op.f == "controller":
            observations += 1
            controllers[op.epoch][op.value].append(op)
    for (topic, partition, epoch), by_leader in leaders.items():
        if len(by_leader) > 1:
            rules["split-leader"].add(
                {
                    "topic": topic,
                    "partition": partition,
                    "epoch": epoch,
                    "leaders": _observers(by_leader),
                },
                *(o.time for s in by_leader.values() for o in s),
            )
    for term, by_leader in controllers.items():
        if len(by_leader) > 1:
            rules["split-controller"].add(
                {
                    "term": term,
                    "leaders": _observers(by_leader),
                },
                *(o.time for s in by_leader.values() for o in s),
            )
    return observations
