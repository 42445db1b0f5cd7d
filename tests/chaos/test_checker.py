"""Each checker rule on synthetic histories: a clean history passes, and each kind of anomaly
is named with its records and time window."""

from __future__ import annotations

from pathlib import Path

from kraft.chaos.checker import check, read_back_of
from kraft.chaos.history import History

T = "t"


def ledger(writes: list[tuple[str, int, int]], process: str = "p") -> History:
    """A history of acknowledged writes (value, partition, offset), one after another."""
    history = History()
    for value, partition, offset in writes:
        history.invoke(process, "send", value=value, topic=T, partition=partition)
        history.ok(process, "send", value=value, topic=T, partition=partition, offset=offset)
    return history


def reads(*records: tuple[int, int, str]) -> dict[tuple[str, int], list[tuple[int, str]]]:
    found: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for partition, offset, value in records:
        found.setdefault((T, partition), []).append((offset, value))
    return found


CLEAN = [("a", 0, 0), ("b", 1, 0), ("c", 0, 1), ("d", 1, 1)]
CLEAN_READ = reads((0, 0, "a"), (0, 1, "c"), (1, 0, "b"), (1, 1, "d"))


def kinds(verdict: object) -> set[str]:
    return {f.kind for f in verdict.failures}  # type: ignore[attr-defined]


def test_a_clean_history_is_valid() -> None:
    verdict = check(ledger(CLEAN), CLEAN_READ)
    assert verdict.valid, verdict.describe()
    assert verdict.counts["acknowledged"] == 4
    assert verdict.counts["read"] == 4


def test_an_acknowledged_write_missing_from_the_read_back_is_lost() -> None:
    history = ledger(CLEAN)
    verdict = check(history, reads((0, 0, "a"), (1, 0, "b"), (1, 1, "d")))
    assert kinds(verdict) == {"lost"}
    (failure,) = verdict.failures
    assert failure.count == 1
    assert failure.records[0]["value"] == "c"
    assert failure.records[0]["offset"] == 1
    sent = next(op for op in history.ops if op.value == "c" and op.kind == "invoke")
    acked = next(op for op in history.ops if op.value == "c" and op.kind == "ok")
    assert failure.window == (sent.time, acked.time)


def test_an_acknowledged_write_at_another_offset_is_lost() -> None:
    verdict = check(ledger(CLEAN), reads((0, 0, "c"), (0, 1, "a"), (1, 0, "b"), (1, 1, "d")))
    assert "lost" in kinds(verdict)
    assert verdict.counts["lost"] == 2


def test_two_acknowledged_values_at_one_offset_conflict() -> None:
    history = ledger([("a", 0, 0), ("b", 0, 0)])
    verdict = check(history, reads((0, 0, "a")))
    assert kinds(verdict) == {"conflict", "lost"}
    conflict = next(f for f in verdict.failures if f.kind == "conflict")
    assert conflict.records[0]["values"] == ["a", "b"]


def test_offsets_read_out_of_order_are_reordered() -> None:
    verdict = check(ledger(CLEAN), reads((0, 1, "c"), (0, 0, "a"), (1, 0, "b"), (1, 1, "d")))
    assert kinds(verdict) == {"reordered"}


def test_a_write_acknowledged_before_another_was_sent_has_the_lower_offset() -> None:
    # The producer's second write got the lower offset although the first was acknowledged
    # before the second was sent.
    history = ledger([("a", 0, 1), ("b", 0, 0)])
    verdict = check(history, reads((0, 0, "b"), (0, 1, "a")))
    assert kinds(verdict) == {"reordered"}
    assert verdict.failures[0].records[0]["value"] == "b"


def test_concurrent_writes_may_land_in_either_order() -> None:
    history = History()
    for value in ("a", "b"):
        history.invoke("p", "send", value=value, topic=T, partition=0)
    history.ok("p", "send", value="a", topic=T, partition=0, offset=1)
    history.ok("p", "send", value="b", topic=T, partition=0, offset=0)
    assert check(history, reads((0, 0, "b"), (0, 1, "a"))).valid


def test_a_value_never_attempted_is_unknown() -> None:
    verdict = check(ledger(CLEAN), reads(*[(p, o, v) for (p, o), v in _flat()], (0, 2, "zz")))
    assert kinds(verdict) == {"unknown"}
    assert verdict.failures[0].records[0]["value"] == "zz"


def _flat() -> list[tuple[tuple[int, int], str]]:
    return [((tp[1], o), v) for tp, records in CLEAN_READ.items() for o, v in records]


def test_an_idempotent_write_read_twice_is_duplicated() -> None:
    read = reads((0, 0, "a"), (0, 1, "c"), (0, 2, "c"), (1, 0, "b"), (1, 1, "d"))
    verdict = check(ledger(CLEAN), read)
    assert kinds(verdict) == {"duplicated"}
    assert verdict.failures[0].records[0]["at"] == [(T, 0, 1), (T, 0, 2)]
    # Without idempotence a retried write may be written twice.
    assert check(ledger(CLEAN), read, idempotent=False).valid


def test_an_indeterminate_write_may_be_present_or_absent() -> None:
    history = ledger(CLEAN)
    history.invoke("p", "send", value="e", topic=T, partition=0)
    history.info("p", "send", value="e", topic=T, partition=0, error="timed out")
    assert check(history, CLEAN_READ).valid
    with_it = {**CLEAN_READ, (T, 0): [*CLEAN_READ[(T, 0)], (2, "e")]}
    verdict = check(history, with_it)
    assert verdict.valid
    assert verdict.counts["indeterminate"] == 1


def consumed(history: History, process: str, partition: int, offsets: list[int]) -> None:
    values = {o: v for o, v in CLEAN_READ[(T, partition)]}
    for offset in offsets:
        value = values[offset]
        history.ok(process, "poll", value=value, topic=T, partition=partition, offset=offset)


def test_a_group_that_saw_everything_below_its_commit_is_valid() -> None:
    history = ledger(CLEAN)
    consumed(history, "g/0", 0, [0, 1])
    consumed(history, "g/1", 1, [0, 1])
    history.ok("g/0", "commit", topic=T, partition=0, offset=2)
    history.ok("g/1", "commit", topic=T, partition=1, offset=2)
    verdict = check(history, CLEAN_READ)
    assert verdict.valid, verdict.describe()
    assert verdict.counts["polled"] == 4


def test_a_record_below_the_committed_offset_no_member_saw_is_skipped() -> None:
    history = ledger(CLEAN)
    consumed(history, "g/0", 0, [1])
    history.ok("g/0", "commit", topic=T, partition=0, offset=2)
    verdict = check(history, CLEAN_READ)
    assert kinds(verdict) == {"skipped"}
    assert verdict.failures[0].records[0] == {
        "group": "g",
        "topic": T,
        "partition": 0,
        "offset": 0,
        "value": "a",
        "committed": 2,
    }


def test_a_consumer_seeing_another_value_at_an_offset_diverges() -> None:
    history = ledger(CLEAN)
    history.ok("g/0", "poll", value="c", topic=T, partition=0, offset=0)
    assert kinds(check(history, CLEAN_READ)) == {"divergent"}


def test_two_leaders_in_one_partition_epoch_is_a_split_brain() -> None:
    history = ledger(CLEAN)
    history.info("observer", "leader", value="1", topic=T, partition=0, node=1, epoch=3)
    history.info("observer", "leader", value="1", topic=T, partition=0, node=2, epoch=3)
    history.info("observer", "leader", value="2", topic=T, partition=0, node=2, epoch=4)
    assert check(history, CLEAN_READ).valid
    history.info("observer", "leader", value="3", topic=T, partition=0, node=3, epoch=4)
    verdict = check(history, CLEAN_READ)
    assert kinds(verdict) == {"split-leader"}
    assert verdict.failures[0].records[0]["leaders"] == {"2": [2], "3": [3]}


def test_two_quorum_leaders_in_one_term_is_a_split_brain() -> None:
    history = ledger(CLEAN)
    history.info("observer", "controller", value="1", node=1, epoch=5)
    history.info("observer", "controller", value="2", node=2, epoch=6)
    assert check(history, CLEAN_READ).valid
    history.info("observer", "controller", value="3", node=3, epoch=6)
    assert kinds(check(history, CLEAN_READ)) == {"split-controller"}


def test_the_history_round_trips_through_json_lines(tmp_path: Path) -> None:
    history = ledger(CLEAN)
    for (topic, partition), records in CLEAN_READ.items():
        for offset, value in records:
            history.ok("read", "read", value=value, topic=topic, partition=partition, offset=offset)
    history.dump(tmp_path / "history.jsonl")
    loaded = History.load(tmp_path / "history.jsonl")
    assert loaded.ops == history.ops
    assert read_back_of(loaded.ops) == {k: list(v) for k, v in CLEAN_READ.items()}
    assert check(loaded).valid


def test_an_acknowledgement_without_an_offset_needs_the_value_somewhere_in_its_partition() -> None:
    # librdkafka acknowledges an idempotent batch whose response was lost once a later batch
    # is acknowledged: the delivery report has no offset.
    history = ledger(CLEAN)
    history.invoke("p", "send", value="e", topic=T, partition=0)
    history.ok("p", "send", value="e", topic=T, partition=0)
    with_it = {**CLEAN_READ, (T, 0): [*CLEAN_READ[(T, 0)], (2, "e")]}
    verdict = check(history, with_it)
    assert verdict.valid, verdict.describe()
    assert verdict.counts["acknowledged_without_offset"] == 1
    verdict = check(history, CLEAN_READ)
    assert kinds(verdict) == {"lost"}
    assert verdict.failures[0].records[0]["value"] == "e"
