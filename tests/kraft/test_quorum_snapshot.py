"""Raft log compaction with snapshots: files, journal log start, crash safety, transfer, restart.

The state machine of these tests is the list of every committed (index, entry); its snapshot
is that list, codec-encoded, so "state intact" means "every committed entry, at its index".
Figures (snapshot size and time, restart time) are printed, never asserted: run with `-s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from kraft.metadata.image import MetadataImage
from kraft.metadata.publisher import MetadataPublisher
from kraft.metadata.quorum_log import QuorumMetadataLog, decode_quorum_snapshot
from kraft.metadata.record_log import encode_entry
from kraft.net.protocol import _generated as m
from kraft.quorum import Quorum, QuorumError, codec
from kraft.quorum.journal import LOG_FILE, DurableJournal, JournalError
from kraft.quorum.snapshot_transfer import parse_ack as _parse_ack
from kraft.quorum.snapshot_transfer import parse_chunk as _parse_chunk
from kraft.quorum.snapshots import SnapshotId, SnapshotStore, install, recover, retain
from kraft.quorum.transport import ProtocolError
from tests.kraft.test_quorum_processes import (
    SNAPSHOT_ENV,
    Child,
    run_with_children,
    wait_for_leader,
)
from tests.wait import wait_until_async

SECRET = b"snapshot test secret"
REGULAR = b"\x00"
NO_OP = b"\x01"

State = list[tuple[int, bytes]]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- files and journal --------------------------------------------------------------------------


def test_snapshot_files_round_trip_and_corruption_is_detected(tmp_path: Any) -> None:
    (tmp_path / f"{SnapshotId(3, 1).file_name}.tmp").write_bytes(b"torn")
    store = SnapshotStore(str(tmp_path))
    assert os.listdir(tmp_path) == []  # a write that never reached its rename is gone
    a = store.write(10, 2, b"state at 10")
    b = store.write(20, 3, b"")
    assert store.list() == [a, b] and store.newest() == b
    assert store.read(a) == b"state at 10" and store.read(b) == b""

    path = tmp_path / a.file_name
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    assert store.read(a) is None
    assert store.list() == [b]
    assert (tmp_path / (a.file_name + ".corrupt")).exists()
    # A file whose content is another snapshot's is corrupt too.
    os.replace(tmp_path / b.file_name, tmp_path / SnapshotId(21, 3).file_name)
    assert store.read(SnapshotId(21, 3)) is None


def test_journal_log_start_survives_reopen(tmp_path: Any) -> None:
    journal = DurableJournal(str(tmp_path))
    journal.add(NO_OP, 1, 0)
    for i in range(2, 11):
        journal.add(REGULAR + b"e%d" % i, i, 1 if i < 6 else 2)
    journal.setRaftCommitIndex(8)
    journal.compact_to(5)
    assert journal.first_index == 5 and journal[0] == (NO_OP, 5, 1)
    journal.add(REGULAR + b"e11", 11, 2)
    journal._destroy()

    reopened = DurableJournal(str(tmp_path))
    assert [(e[1], e[2]) for e in reopened[:]] == [(i, 1 if i < 6 else 2) for i in range(5, 12)]
    assert reopened.entry(7) == (REGULAR + b"e7", 7, 2) and reopened.entry(4) is None
    with pytest.raises(JournalError):
        reopened.compact_to(3)  # before the log start
    reopened.reset_to(40, 3)
    assert reopened.getRaftCommitIndex() == 40  # a snapshot's index is committed
    reopened._destroy()
    again = DurableJournal(str(tmp_path))
    assert again[:] == [(NO_OP, 40, 3)] and again.first_index == again.last_index == 40
    again._destroy()


# -- crash at every step ------------------------------------------------------------------------


class Crash(BaseException):
    """The process died here (BaseException: no `except Exception` swallows it)."""


@contextlib.contextmanager
def crash_at(monkeypatch: pytest.MonkeyPatch, step: int | None) -> Iterator[list[str]]:
    """Count filesystem mutations; die at mutation number `step` (a write is torn: half of it
    reaches the file). Yields the list of mutations done."""
    done: list[str] = []
    with monkeypatch.context() as patch:
        for name in ("write", "pwrite", "fsync", "fdatasync", "replace", "unlink", "ftruncate"):
            real = getattr(os, name)

            def wrapper(*args: Any, _real: Any = real, _name: str = name) -> Any:
                done.append(_name)
                if len(done) == step:
                    if _name in ("write", "pwrite"):
                        data = args[1]
                        _real(args[0], data[: len(data) // 2], *args[2:])
                    raise Crash(f"crashed at {_name} (step {step})")
                return _real(*args)

            patch.setattr(os, name, wrapper)
        yield done


def abandon(journal: DurableJournal) -> None:
    """What kill -9 does to an open journal: its descriptor closes, nothing else happens."""
    with contextlib.suppress(OSError):
        os.close(journal._fd)


def rebuild(directory: str) -> tuple[State, DurableJournal, SnapshotId | None]:
    """Restart: load the snapshot `recover` picks, replay the committed entries after it."""
    journal = DurableJournal(directory)
    loaded = recover(SnapshotStore(directory), journal)
    state: State = [tuple(e) for e in codec.decode(loaded[1])] if loaded else []
    after = loaded[0].index if loaded else journal.first_index
    commit = journal.getRaftCommitIndex()
    for command, index, _ in journal[:]:
        if after < index <= commit and command[:1] == REGULAR:
            state.append((index, command[1:]))
    return state, journal, loaded[0] if loaded else None


def write_log(directory: str, entries: list[tuple[bytes, int, int]], commit: int) -> None:
    journal = DurableJournal(directory)
    for entry in entries:
        journal.add(*entry)
    journal.setRaftCommitIndex(commit)
    journal._destroy()


def committed(entries: list[tuple[bytes, int, int]], upto: int) -> State:
    return [(i, c[1:]) for c, i, _ in entries if i <= upto and c[:1] == REGULAR]


def test_a_crash_at_any_step_of_compaction_loses_nothing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two compactions (the second deletes a snapshot and drops a journal prefix), killed at
    every filesystem mutation in turn: a restart always rebuilds every committed entry."""
    entries = [(NO_OP, 1, 0)] + [(REGULAR + b"e%d" % i, i, 1) for i in range(2, 121)]
    expected = committed(entries, 120)

    def prepare(directory: str) -> None:
        write_log(directory, entries, 120)
        store = SnapshotStore(directory)
        store.write(40, 1, codec.encode(committed(entries, 40)))
        journal = DurableJournal(directory)
        retain(store, journal, keep=2)
        assert journal.first_index == 1  # one snapshot: the journal stays whole
        journal._destroy()

    def compact_twice(directory: str) -> None:
        store = SnapshotStore(directory)
        journal = DurableJournal(directory)
        try:
            for index in (80, 110):
                store.write(index, 1, codec.encode(committed(entries, index)))
                retain(store, journal, keep=2)
        finally:
            abandon(journal)

    clean = str(tmp_path / "clean")
    prepare(clean)
    with crash_at(monkeypatch, None) as steps:
        compact_twice(clean)
    state, journal, loaded = rebuild(clean)
    assert state == expected and loaded == SnapshotId(110, 1)
    assert journal.first_index == 80 and len(journal) == 41  # 80 (start) .. 120
    assert SnapshotStore(clean).list() == [SnapshotId(80, 1), SnapshotId(110, 1)]
    journal._destroy()

    # write + fsync + rename + fsync of the directory: 2 snapshots, 2 journal rewrites; 1 unlink
    assert steps.count("replace") == 4 and steps.count("unlink") == 1, steps
    for step in range(1, len(steps) + 1):
        directory = str(tmp_path / f"crash-{step}")
        prepare(directory)
        with crash_at(monkeypatch, step), pytest.raises(Crash):
            compact_twice(directory)
        state, journal, _ = rebuild(directory)
        assert state == expected, f"crash at step {step} ({steps[step - 1]})"
        # And the member carries on: the next compaction works from whatever was left.
        store = SnapshotStore(directory)
        store.write(120, 1, codec.encode(expected))
        retain(store, journal, keep=2)
        journal._destroy()
        assert rebuild(directory)[0] == expected


def test_a_crash_at_any_step_of_an_install_recovers_one_state_or_the_other(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower whose log diverged installs the leader's snapshot, killed at every step: it
    restarts with its own committed state or the snapshot's, never a mix, and a journal that
    continues from what it loaded."""
    ours = [(NO_OP, 1, 0)] + [(REGULAR + b"e%d" % i, i, 1) for i in range(2, 31)]
    ours += [(REGULAR + b"stale%d" % i, i, 2) for i in range(31, 41)]  # never committed
    leaders = [(NO_OP, 1, 0)] + [(REGULAR + b"e%d" % i, i, 1) for i in range(2, 31)]
    leaders += [(REGULAR + b"new%d" % i, i, 3) for i in range(31, 61)]
    snapshot = SnapshotId(60, 3)
    before, after = committed(ours, 30), committed(leaders, 60)

    def prepare(directory: str) -> None:
        write_log(directory, ours, 30)
        SnapshotStore(directory).write(20, 1, codec.encode(committed(ours, 20)))

    def run_install(directory: str) -> bool:
        journal = DurableJournal(directory)
        try:
            return install(SnapshotStore(directory), journal, snapshot, codec.encode(after))
        finally:
            abandon(journal)

    clean = str(tmp_path / "clean")
    prepare(clean)
    with crash_at(monkeypatch, None) as steps:
        assert run_install(clean) is False  # diverged at 60: the journal is reset
    state, journal, loaded = rebuild(clean)
    assert state == after and loaded == snapshot and journal[:] == [(NO_OP, 60, 3)]
    assert SnapshotStore(clean).list() == [snapshot]
    journal._destroy()

    outcomes = set()
    for step in range(1, len(steps) + 1):
        directory = str(tmp_path / f"crash-{step}")
        prepare(directory)
        with crash_at(monkeypatch, step), pytest.raises(Crash):
            run_install(directory)
        state, journal, loaded = rebuild(directory)
        assert state in (before, after), f"crash at step {step} ({steps[step - 1]})"
        if state == after:
            assert journal.first_index == 60 and journal.last_index == 60
        else:
            assert journal.last_index == 40  # its own log, untouched
        outcomes.add(state == after)
        journal._destroy()
    assert outcomes == {False, True}

    # A follower whose log holds the snapshot's last entry keeps what follows it.
    matching = str(tmp_path / "matching")
    write_log(matching, leaders + [(REGULAR + b"next", 61, 3)], 61)
    journal = DurableJournal(matching)
    assert install(SnapshotStore(matching), journal, snapshot, codec.encode(after)) is True
    assert journal.first_index == 60 and journal.entry(61) == (REGULAR + b"next", 61, 3)
    journal._destroy()


def test_recover_refuses_a_journal_without_its_beginning(tmp_path: Any) -> None:
    write_log(str(tmp_path), [(NO_OP, 1, 0)] + [(REGULAR + b"x", i, 1) for i in range(2, 9)], 8)
    journal = DurableJournal(str(tmp_path))
    journal.compact_to(5)  # as after a compaction whose snapshot was then lost
    with pytest.raises(JournalError):
        recover(SnapshotStore(str(tmp_path)), journal)
    journal._destroy()


def test_transfer_messages_are_checked() -> None:
    assert _parse_chunk((5, 2, 10, 7, 4, b"abc")) == (SnapshotId(5, 2), 10, 7, 4, b"abc")
    assert _parse_ack((5, 2, 10, True)) == (SnapshotId(5, 2), 10, True)
    for bad in (
        [5, 2, 10, 7, 4, b"abc"],  # a list, not a tuple
        (5, 2, 10, 7, 9, b"abc"),  # past the announced size
        (0, 2, 10, 7, 0, b""),
        (5, 2, 10, 2**32, 0, b""),
        (5, 2, 10, 7, 0, "abc"),
        (5, 2, True, 7, 0, b""),
        (5, 2, 10, 7, 0),
    ):
        with pytest.raises(ProtocolError):
            _parse_chunk(bad)
    for bad_ack in ((5, 2, -1, True), (5, 2, 10, 1), (5, 2, 10)):
        with pytest.raises(ProtocolError):
            _parse_ack(bad_ack)


# -- quorums with a state machine ---------------------------------------------------------------


class Replica:
    """A voter whose state machine is the list of committed (index, entry)."""

    def __init__(self, node_id: int, group: Group, **overrides: Any) -> None:
        self.node_id = node_id
        self.data_dir = str(group.root / f"node-{node_id}")
        self.state: State = []
        self.commits = 0  # on_commit calls in this incarnation
        self.loaded: list[int] = []  # snapshots loaded in this incarnation
        self.started = False
        options: dict[str, Any] = dict(group.options)
        options.update(overrides)
        self.quorum = Quorum(
            node_id,
            group.voters,
            self.data_dir,
            SECRET,
            on_commit=self.on_commit,
            snapshot_provider=lambda: (self.state[-1][0] if self.state else 0, self.dump()),
            on_snapshot=self.on_snapshot,
            **options,
        )

    def dump(self) -> bytes:
        return codec.encode(self.state)

    def on_commit(self, index: int, entry: bytes) -> None:
        assert not self.state or index > self.state[-1][0]
        self.state.append((index, entry))
        self.commits += 1

    def on_snapshot(self, index: int, data: bytes) -> None:
        self.state = [tuple(e) for e in codec.decode(data)]
        assert self.state[-1][0] == index
        self.loaded.append(index)

    @property
    def entries(self) -> list[bytes]:
        return [entry for _, entry in self.state]


class Group:
    def __init__(self, root: Any, size: int, **options: Any) -> None:
        self.root = root
        self.voters = {i: ("127.0.0.1", free_port()) for i in range(1, size + 1)}
        self.options = options
        self.members: dict[int, Replica] = {}

    async def start(self, *ids: int, **overrides: Any) -> None:
        for node_id in ids or tuple(self.voters):
            replica = Replica(node_id, self, **overrides)
            self.members[node_id] = replica
            await replica.quorum.start()

    async def stop(self, *ids: int) -> None:
        for node_id in ids or tuple(self.members):
            await self.members.pop(node_id).quorum.stop()

    async def leader(self, within: float = 10.0) -> Replica:
        def found() -> bool:
            leaders = [r for r in self.members.values() if r.quorum.is_leader]
            return len(leaders) == 1 and all(
                r.quorum.leader_id == leaders[0].node_id for r in self.members.values()
            )

        await wait_until_async(found, "one leader all members agree on", within)
        return next(r for r in self.members.values() if r.quorum.is_leader)


@pytest.fixture
async def group(tmp_path: Any) -> AsyncIterator[Callable[..., Group]]:
    made: list[Group] = []

    def make(size: int = 3, **options: Any) -> Group:
        made.append(Group(tmp_path / f"g{len(made)}", size, **options))
        return made[-1]

    yield make
    for g in made:
        await g.stop()


def file_size(*path: str) -> int:
    return os.path.getsize(os.path.join(*path))


def journal_entries(replica: Replica) -> int:
    status = replica.quorum.status()
    return status.last_index - status.first_index + 1


async def test_compaction_bounds_the_journal_and_restarts_replay_only_the_tail(
    group: Callable[..., Group],
) -> None:
    g = group(max_entries_between_snapshots=40)
    await g.start()
    leader = await g.leader()
    expected = [b"entry-%d" % i for i in range(300)]
    for entry in expected:
        await leader.quorum.append(entry)
    await wait_until_async(
        lambda: all(r.entries == expected for r in g.members.values()),
        "all(r.entries == expected for r in g.members.values())",
    )
    last = leader.quorum.applied_index
    await wait_until_async(
        lambda: all(r.quorum.status().applied_index >= last for r in g.members.values()),
        "all(r.quorum.status().applied_index >= last for r in g.members.values())",
    )
    for r in g.members.values():
        status = r.quorum.status()
        assert status.snapshot_index > status.first_index > 200
        assert journal_entries(r) <= 2 * 40 + 10  # back to the previous snapshot, no further
        snapshots = SnapshotStore(r.data_dir).list()
        assert len(snapshots) == 2 and snapshots[0].index == status.first_index
    log_bytes = file_size(leader.data_dir, LOG_FILE)
    state = [(i, e) for i, e in leader.state]
    await g.stop()

    started = time.perf_counter()
    await g.start()
    restarted = time.perf_counter() - started
    for r in g.members.values():
        assert r.loaded and r.state[: len(r.state)] == state[: len(r.state)]
    await wait_until_async(
        lambda: all(r.state == state for r in g.members.values()),
        "all(r.state == state for r in g.members.values())",
    )
    assert all(r.commits <= 2 * 40 for r in g.members.values())  # only the tail replayed
    leader = await g.leader()
    await leader.quorum.append(b"after restart")
    await wait_until_async(
        lambda: all(r.entries == [*expected, b"after restart"] for r in g.members.values()),
        "every member to apply the entry appended after the restart",
    )
    print(
        f"\n300 entries, a snapshot every 40: journal {log_bytes} bytes on disk, "
        f"3 voters restarted in {restarted * 1000:.0f} ms"
    )


async def test_a_follower_behind_the_log_start_catches_up_by_snapshot(
    group: Callable[..., Group],
) -> None:
    g = group(max_entries_between_snapshots=30, snapshots_kept=1)
    await g.start()
    leader = await g.leader()
    for i in range(10):
        await leader.quorum.append(b"early-%d" % i)
    lagging = next(r for r in g.members.values() if r is not leader)
    await wait_until_async(lambda: len(lagging.state) == 10, "len(lagging.state) == 10")
    await g.stop(lagging.node_id)

    payload = bytes(100)
    for i in range(150):
        await leader.quorum.append(payload + b"%d" % i)
    expected = [e for _, e in leader.state]
    await wait_until_async(
        lambda: leader.quorum.status().first_index > 20, "leader.quorum.status().first_index > 20"
    )
    assert leader.quorum._node is not None
    leader.quorum._node.snapshot_chunk_bytes = 1000  # a transfer of many chunks

    await g.start(lagging.node_id)
    lagging = g.members[lagging.node_id]
    await wait_until_async(lambda: lagging.entries == expected, "lagging.entries == expected")
    assert lagging.loaded and lagging.loaded[0] >= leader.quorum.status().first_index
    status = lagging.quorum.status()
    assert status.first_index == lagging.loaded[0] == status.snapshot_index
    assert SnapshotStore(lagging.data_dir).list()[-1].index == lagging.loaded[0]
    assert lagging.commits < 30  # the rest came in the snapshot

    await leader.quorum.append(b"after")
    await wait_until_async(
        lambda: lagging.entries == [*expected, b"after"], "lagging.entries == [*expected, b'after']"
    )
    # The installed snapshot is durable: a restart loads it.
    await g.stop(lagging.node_id)
    await g.start(lagging.node_id)
    again = g.members[lagging.node_id]
    assert again.loaded
    await wait_until_async(
        lambda: again.entries == [*expected, b"after"], "again.entries == [*expected, b'after']"
    )


async def test_a_corrupt_newest_snapshot_falls_back(group: Callable[..., Group]) -> None:
    g = group(size=1, election_timeout_ms=200, max_entries_between_snapshots=20)
    await g.start()
    member = await g.leader()
    for i in range(25):
        await member.quorum.append(b"e%d" % i)
    await wait_until_async(
        lambda: member.quorum.status().snapshot_index > 0,
        "member.quorum.status().snapshot_index > 0",
    )
    await g.stop()
    only = SnapshotStore(member.data_dir).list()
    assert len(only) == 1

    # One snapshot so far, the journal is whole: a corrupt snapshot means a full replay.
    corrupt(member.data_dir, only[0])
    await g.start()
    member = g.members[1]
    await wait_until_async(lambda: len(member.state) == 25, "len(member.state) == 25")
    assert member.loaded == [] and member.commits == 25
    member = await g.leader()
    for i in range(25, 70):
        await member.quorum.append(b"e%d" % i)
    expected = [b"e%d" % i for i in range(70)]
    await wait_until_async(
        lambda: len(SnapshotStore(member.data_dir).list()) == 2,
        "len(SnapshotStore(member.data_dir).list()) == 2",
    )
    await wait_until_async(
        lambda: member.quorum.status().first_index > 1, "member.quorum.status().first_index > 1"
    )
    await g.stop()

    # Two snapshots, the journal from the older one on: the older one stands in.
    older, newest = SnapshotStore(member.data_dir).list()
    corrupt(member.data_dir, newest)
    await g.start()
    member = g.members[1]
    assert member.loaded == [older.index]
    await wait_until_async(lambda: member.entries == expected, "member.entries == expected")
    assert file_size(member.data_dir, newest.file_name + ".corrupt") > 0
    await g.stop()

    # All lost: the journal alone cannot rebuild the state; the member refuses to start.
    for snapshot in SnapshotStore(member.data_dir).list():
        corrupt(member.data_dir, snapshot)
    with pytest.raises(JournalError):
        await g.start()
    g.members.clear()


def corrupt(directory: str, snapshot: SnapshotId) -> None:
    path = os.path.join(directory, snapshot.file_name)
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes((last[0] ^ 0xFF,)))


async def test_replay_floor_and_missing_loader(group: Callable[..., Group], tmp_path: Any) -> None:
    g = group(size=1, election_timeout_ms=200, max_entries_between_snapshots=10)
    await g.start()
    member = await g.leader()
    for i in range(15):
        await member.quorum.append(b"e%d" % i)
    await wait_until_async(
        lambda: member.quorum.status().snapshot_index > 0,
        "member.quorum.status().snapshot_index > 0",
    )
    snapshot_index = member.quorum.status().snapshot_index
    last = member.state[-1][0]
    await g.stop()

    # A caller that persisted its state past the snapshot needs neither it nor what it has.
    await g.start(applied_index=last)
    assert g.members[1].loaded == [] and g.members[1].commits == 0
    await g.stop()
    await g.start(applied_index=snapshot_index - 1)
    member = g.members[1]
    assert member.loaded == [snapshot_index]
    await wait_until_async(lambda: member.state[-1][0] == last, "member.state[-1][0] == last")
    await g.stop()

    # Snapshots on disk but nothing to load them: refuse to start rather than skip them.
    quorum = Quorum(1, g.voters, member.data_dir, SECRET, on_commit=lambda i, e: None)
    with pytest.raises(QuorumError):
        await quorum.start()


# -- the metadata image ---------------------------------------------------------------------------


async def test_metadata_quorum_log_snapshots_round_trip() -> None:
    source = QuorumMetadataLog(MetadataPublisher(MetadataImage()))
    records: list[Any] = []
    for n in range(200):
        topic_id = uuid.uuid4()
        batch: list[Any] = [m.TopicRecord(name=f"topic-{n}", topic_id=topic_id)]
        batch += [
            m.PartitionRecord(
                partition_id=p,
                topic_id=topic_id,
                replicas=[1, 2, 3],
                isr=[1, 2, 3],
                leader=1 + p % 3,
                leader_epoch=0,
                partition_epoch=0,
            )
            for p in range(10)
        ]
        records += batch
        source.on_commit(n + 2, encode_entry(batch))
    source.on_commit(
        300, encode_entry([m.ConfigRecord(resource_type=2, resource_name="t", name="a", value="b")])
    )

    started = time.perf_counter()
    index, data = source.snapshot()
    took = time.perf_counter() - started
    assert index == 300
    next_offset, decoded = decode_quorum_snapshot(data)
    assert next_offset == source.next_offset == len(records) + 1

    image = MetadataImage()
    target = QuorumMetadataLog(MetadataPublisher(image))
    heard: list[int] = []
    target.publisher.listeners.append(lambda: heard.append(1))
    started = time.perf_counter()
    target.load_snapshot(index, data)
    load = time.perf_counter() - started
    assert target.publisher.image is image  # replaced in place: every holder sees it
    assert heard == [1]
    assert target.next_offset == source.next_offset and target.applied_index == 300
    assert image.last_offset == source.publisher.image.last_offset
    assert set(image.topics) == set(source.publisher.image.topics)
    assert image.topic_config("t") == {"a": "b"}
    assert image.partition("topic-7", 4) == source.publisher.image.partition("topic-7", 4)
    with pytest.raises(ValueError):
        decode_quorum_snapshot(b"nope" + data[4:])
    print(
        f"\nmetadata snapshot of 200 topics x 10 partitions: {len(data)} bytes, "
        f"taken in {took * 1000:.1f} ms, loaded in {load * 1000:.1f} ms"
    )


# -- processes, kill -9 ---------------------------------------------------------------------------


@pytest.mark.process  # voter processes, killed -9
async def test_kill_9_with_snapshots_loses_nothing(tmp_path: Any) -> None:
    """Voters that snapshot every 50 entries, killed -9 at random moments (during snapshot
    writes, installs and journal rewrites too); one round keeps a voter down long enough to
    fall behind the others' log start. Every acknowledged entry survives at its index."""
    seed = int(os.environ.get("KRAFT_QUORUM_SEED", time.time_ns() % 10**9))
    print(f"\nseed {seed} (KRAFT_QUORUM_SEED)")
    rng = random.Random(seed)
    acked: dict[int, bytes] = {}
    counter = 0

    async def load(children: list[Child], seconds: float, kill_at: dict[int, float]) -> None:
        nonlocal counter
        started = time.monotonic()
        in_flight: set[asyncio.Future[int | None]] = set()

        def on_ack(payload: bytes, future: asyncio.Future[int | None]) -> None:
            in_flight.discard(future)
            index = future.result()
            if index is not None:
                assert acked.setdefault(index, payload) == payload

        while time.monotonic() - started < seconds:
            elapsed = time.monotonic() - started
            for child in children:
                if child.alive and elapsed >= kill_at.get(child.node_id, 1e9):
                    child.kill()
            leader = next((c for c in children if c.is_leader), None)
            if leader is not None and len(in_flight) < 4:
                counter += 1
                payload = b"entry-%d" % counter
                future = leader.append(str(counter), payload)
                in_flight.add(future)
                future.add_done_callback(functools.partial(on_ack, payload))
            else:
                await asyncio.sleep(0.002)

    async def body(children: list[Child]) -> None:
        for child in children:
            child.env = {SNAPSHOT_ENV: "50"}
        for round_ in range(6):
            down = children[round_ % 3] if round_ == 3 else None
            for child in children:
                if child is not down:
                    await child.start()
            run_for = rng.uniform(0.8, 1.6)
            kill_at = {c.node_id: run_for + rng.uniform(0, 0.3) for c in children}
            await load(children, run_for + 0.4, kill_at)
            for child in children:
                child.kill()
                await child.wait()

        # The voter that was down catches up by snapshot while the others keep going.
        for child in children:
            await child.start()
        leader = await wait_for_leader(children)
        lagging = next(c for c in children if c is not leader)
        lagging.kill()
        await lagging.wait()
        await load(children, 1.5, {})
        await lagging.start()
        leader = await wait_for_leader(children)
        final_index = await leader.append("final", b"final")
        assert final_index is not None
        await wait_until_async(
            lambda: all(c.commits and c.commits[-1][0] >= final_index for c in children),
            "every voter to apply the final entry",
            15,
        )
        assert any(after_ready for _, after_ready in lagging.snapshots_loaded), (
            "the lagging voter did not catch up by snapshot"
        )

        final = dict(leader.commits)
        assert all(dict(c.commits) == final for c in children)
        lost = {i: p for i, p in acked.items() if final.get(i) != p}
        assert not lost, f"acknowledged entries lost or changed: {sorted(lost.items())[:5]}"
        assert len(set(final.values())) == len(final), "an entry was committed twice"
        for child in children:
            for commits in child.incarnations:
                diverged = [(i, p) for i, p in commits if final.get(i) != p]
                assert not diverged, f"node {child.node_id} once applied {diverged[:3]}"
        for child in children:
            child.kill()
            await child.wait()
            journal = DurableJournal(child.data_dir)
            assert journal.first_index > 1 and len(journal) <= 2 * 50 + 200
            journal._destroy()
        loads = sum(len(c.snapshots_loaded) for c in children)
        print(
            f"{len(acked)} acknowledged appends, {len(final)} committed entries, "
            f"{loads} snapshots loaded, none lost"
        )

    await run_with_children(tmp_path, body)


def test_follower_side_of_a_transfer(tmp_path: Any) -> None:
    """Chunks in order, resent, with a gap, with a bad checksum, then late: what a follower
    answers and when it installs, driven message by message."""
    import zlib

    from kraft.quorum.raft import RaftNode, RaftTimeouts
    from kraft.quorum.snapshot_transfer import SNAPSHOT_ACK, SNAPSHOT_CHUNK

    journal = DurableJournal(str(tmp_path))
    store = SnapshotStore(str(tmp_path))
    node = RaftNode(
        1,
        {1: ("127.0.0.1", free_port()), 2: ("127.0.0.1", free_port())},
        journal,
        secret=SECRET,
        listen=("127.0.0.1", free_port()),
        timeouts=RaftTimeouts(),
        on_apply=lambda *a: None,
        max_entry_bytes=1024,
    )
    installed: list[tuple[SnapshotId, bytes]] = []
    node.attach_snapshots(store, lambda s, d: installed.append((s, d)))
    sent: list[dict[str, Any]] = []

    def send(peer: Any, message: dict[str, Any]) -> bool:
        sent.append(message)
        return True

    node._SyncObj__transport.send = send
    leader = next(iter(node.otherNodes))
    data = bytes(range(256)) * 10
    crc = zlib.crc32(data)

    def chunk(offset: int, size: int, index: int = 50, checksum: int = crc) -> list[Any]:
        message = {
            "type": "append_entries",
            "term": 4,
            "commit_index": 60,
            SNAPSHOT_CHUNK: (index, 3, len(data), checksum, offset, data[offset : offset + size]),
        }
        node._SyncObj__onMessageReceived(leader, message)
        reply = sent.pop()
        assert not sent
        return [reply["next_node_idx"], reply["reset"], reply["success"], reply.get(SNAPSHOT_ACK)]

    try:
        assert chunk(0, 1000) == [51, False, False, (50, 3, 1000, True)]
        assert node.raftCurrentTerm == 4 and node._getLeader() == leader
        assert chunk(500, 1000) == [51, False, False, (50, 3, 1500, True)]  # overlaps: the rest
        assert chunk(0, 1000) == [51, False, False, (50, 3, 1500, True)]  # a resend: skipped
        assert chunk(2000, 100) == [51, False, False, (50, 3, 1500, False)]  # a gap
        assert chunk(1500, 0) == [51, False, False, (50, 3, 1500, True)]  # a probe
        # Another checksum is another snapshot: it must start at 0.
        assert chunk(1500, 100, checksum=crc ^ 1) == [51, False, False, (50, 3, 0, False)]
        # Data that does not match its checksum once whole: start again.
        assert chunk(0, 2560, checksum=crc ^ 1) == [51, False, False, (50, 3, 0, False)]
        assert installed == [] and store.list() == []
        assert chunk(0, 2000) == [51, False, False, (50, 3, 2000, True)]
        assert chunk(2000, 560) == [51, False, True, (50, 3, 2560, True)]
        assert installed == [(SnapshotId(50, 3), data)]
        assert store.list() == [SnapshotId(50, 3)] and journal[:] == [(NO_OP, 50, 3)]
        assert node.raftLastApplied == node.raftCommitIndex == 50
        # A late chunk of a snapshot this node is past: where its log ends, to start from.
        assert chunk(0, 100) == [51, True, False, None]
        assert chunk(0, 100, index=20)[:3] == [51, True, False]
        # Not from the leader of the current term: ignored (pysyncobj ignores its term too).
        node._SyncObj__onMessageReceived(
            leader, {"type": "append_entries", "term": 2, SNAPSHOT_CHUNK: (90, 2, 1, 0, 0, b"")}
        )
        assert sent == []
        with pytest.raises(ProtocolError):
            node._SyncObj__onMessageReceived(
                leader, {"type": "append_entries", "term": 4, SNAPSHOT_CHUNK: (90, 2, 1, 0, 5, b"")}
            )
    finally:
        node.destroy()
