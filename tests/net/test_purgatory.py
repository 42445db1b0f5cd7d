"""The delayed-operation purgatory on a fake clock: completion by key, expiry by deadline,
exactly-once completion, and the order operations complete in."""

from __future__ import annotations

from kraft.net.broker.purgatory import PURGE_THRESHOLD, DelayedOperation, DelayedOperationPurgatory


class Clock:
    def __init__(self) -> None:
        self.now = 1000

    def __call__(self) -> int:
        return self.now


class Waiting(DelayedOperation):
    """Completes once `ready` holds; records what happened to it in `log`."""

    def __init__(self, name: str, delay_ms: int, log: list[str], ready: list[bool]) -> None:
        super().__init__(delay_ms)
        self.name = name
        self.log = log
        self.ready = ready
        self.tries = 0

    def try_complete(self) -> bool:
        self.tries += 1
        return self.ready[0] and self.force_complete()

    def on_expiration(self) -> None:
        self.log.append(f"{self.name} expired")

    def on_complete(self) -> None:
        self.log.append(f"{self.name} completed")


def test_an_operation_that_can_complete_at_once_is_not_watched() -> None:
    purgatory = DelayedOperationPurgatory("test", Clock())
    log: list[str] = []
    op = Waiting("a", 100, log, [True])
    assert purgatory.try_complete_else_watch(op, ["k"])
    assert log == ["a completed"]
    assert purgatory.watched() == 0 and purgatory.next_deadline() is None


def test_a_change_of_a_watched_key_completes_the_operation() -> None:
    clock = Clock()
    purgatory = DelayedOperationPurgatory("test", clock)
    log: list[str] = []
    ready = [False]
    op = Waiting("a", 100, log, ready)
    assert not purgatory.try_complete_else_watch(op, ["k1", "k2"])
    assert purgatory.next_deadline() == 1100
    assert purgatory.check_and_complete("k1") == 0  # tried, not ready
    assert purgatory.check_and_complete("other") == 0
    assert op.tries == 2
    ready[0] = True
    assert purgatory.check_and_complete("k2") == 1
    assert log == ["a completed"]
    # Completed once: neither the other key nor its deadline touches it again.
    assert purgatory.check_and_complete("k1") == 0
    clock.now = 5000
    assert purgatory.expire() == 0
    assert log == ["a completed"]
    assert purgatory.next_deadline() is None


def test_expiry_runs_on_expiration_then_on_complete_at_the_deadline_only() -> None:
    clock = Clock()
    purgatory = DelayedOperationPurgatory("test", clock)
    log: list[str] = []
    purgatory.try_complete_else_watch(Waiting("a", 100, log, [False]), ["k"])
    purgatory.try_complete_else_watch(Waiting("b", 300, log, [False]), ["k"])
    assert purgatory.expire(1099) == 0
    assert purgatory.expire(1100) == 1
    assert log == ["a expired", "a completed"]
    assert purgatory.next_deadline() == 1300
    clock.now = 1300
    assert purgatory.expire() == 1
    assert log[2:] == ["b expired", "b completed"]
    assert purgatory.watched() == 0


def test_operations_complete_and_expire_in_arrival_order() -> None:
    clock = Clock()
    purgatory = DelayedOperationPurgatory("test", clock)
    log: list[str] = []
    ready = [False]
    for name in "abc":
        purgatory.try_complete_else_watch(Waiting(name, 50, log, ready), ["k"])
    ready[0] = True
    purgatory.check_and_complete("k")
    assert log == ["a completed", "b completed", "c completed"]

    log.clear()
    ready[0] = False
    for name in "xyz":
        purgatory.try_complete_else_watch(Waiting(name, 50, log, ready), ["k"])
    purgatory.expire(clock.now + 50)
    assert log == [f"{n} {what}" for n in "xyz" for what in ("expired", "completed")]


def test_an_operation_completed_while_completing_another_is_not_completed_twice() -> None:
    """on_complete may change state that completes other operations on the same key."""
    purgatory = DelayedOperationPurgatory("test", Clock())
    log: list[str] = []
    ready = [False]
    second = Waiting("b", 100, log, ready)

    class Chained(Waiting):
        def on_complete(self) -> None:
            super().on_complete()
            purgatory.check_and_complete("k")  # reentrant

    purgatory.try_complete_else_watch(Chained("a", 100, log, ready), ["k"])
    purgatory.try_complete_else_watch(second, ["k"])
    ready[0] = True
    purgatory.check_and_complete("k")
    assert sorted(log) == ["a completed", "b completed"]


def test_completed_operations_do_not_accumulate() -> None:
    clock = Clock()
    purgatory = DelayedOperationPurgatory("test", clock)
    log: list[str] = []
    ready = [False]
    for i in range(3 * PURGE_THRESHOLD):
        # Each watched under its own key and a shared one; completed through its own.
        purgatory.try_complete_else_watch(Waiting(str(i), 10_000, log, ready), [i, "shared"])
        ready[0] = True
        purgatory.check_and_complete(i)
        ready[0] = False
    assert len(log) == 3 * PURGE_THRESHOLD
    assert len(purgatory._deadlines) <= PURGE_THRESHOLD + 1
    assert len(purgatory._watchers.get("shared", [])) <= PURGE_THRESHOLD + 1
    assert purgatory.watched() == 0 and purgatory.next_deadline() is None
