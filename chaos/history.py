"""The operation log of a chaos run, Jepsen-style: every client operation is an `invoke`
followed by its completion — `ok` (it happened), `fail` (it definitely did not) or `info` (it
may or may not have: a timeout, a lost connection) — and observations of the cluster are `info`
operations of their own.

Operation functions (`f`):

- `send`: a producer writes `value` to `topic`/`partition`; the `ok` carries the acknowledged
  `offset` from the delivery report;
- `poll`: a group consumer received `value` at `offset` (an `ok` only: a poll has no doubt);
- `commit`: a group consumer committed `offset` (the next offset to read) for a partition;
- `read`: the final read-back saw `value` at `offset` (an `ok` only);
- `leader`: node `node` saw `value` (a broker id) lead `topic`/`partition` in `epoch`;
- `controller`: node `node` saw `value` (a node id) as the quorum leader in term `epoch`;
- `fault`: the runner injected (`value` "inject") or healed (`value` "heal") fault `process`.

Times are seconds on the monotonic clock since the history began, so a report's axis starts at
zero and no wall-clock step can reorder anything.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["invoke", "ok", "fail", "info"]
KINDS: tuple[Kind, ...] = ("invoke", "ok", "fail", "info")


@dataclass(frozen=True, slots=True)
class Op:
    index: int
    process: str
    kind: Kind
    f: str
    time: float
    value: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    # The observing node and the leader epoch / quorum term, for `leader` and `controller`.
    node: int | None = None
    epoch: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Op:
        return Op(**data)


@dataclass
class History:
    """A thread-safe, append-only list of operations (clients call it from their callback
    threads)."""

    ops: list[Op] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.monotonic() - self.started

    def append(
        self, process: str, kind: Kind, f: str, *, at: float | None = None, **fields: Any
    ) -> Op:
        with self._lock:
            op = Op(
                index=len(self.ops),
                process=process,
                kind=kind,
                f=f,
                time=round(self.now() if at is None else at, 6),
                **fields,
            )
            self.ops.append(op)
        return op

    def invoke(self, process: str, f: str, **fields: Any) -> Op:
        return self.append(process, "invoke", f, **fields)

    def ok(self, process: str, f: str, **fields: Any) -> Op:
        return self.append(process, "ok", f, **fields)

    def fail(self, process: str, f: str, **fields: Any) -> Op:
        return self.append(process, "fail", f, **fields)

    def info(self, process: str, f: str, **fields: Any) -> Op:
        return self.append(process, "info", f, **fields)

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self.ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.snapshot())

    def count(self, f: str, kind: Kind) -> int:
        return sum(1 for op in self.snapshot() if op.f == f and op.kind == kind)

    def dump(self, path: str | Path) -> None:
        """One JSON object per line, in append order."""
        with open(path, "w") as out:
            for op in self.snapshot():
                out.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")

    @staticmethod
    def load(path: str | Path) -> History:
        with open(path) as lines:
            return History.of(Op.from_json(json.loads(line)) for line in lines if line.strip())

    @staticmethod
    def of(ops: Iterable[Op]) -> History:
        history = History()
        history.ops = list(ops)
        return history
