"""Pins on pysyncobj 0.3.17: the internals kraft.quorum relies on, and the gaps it closes.

Two kinds of test. "Relied on" tests drive pysyncobj's Raft core directly and check the exact
behaviour the wrapper builds on (where the journal comes from, when the term is written,
how committed entries are applied). "Gap" tests show the unsafe behaviour of pysyncobj as it
comes; if one of them fails after an upgrade, pysyncobj changed: re-read kraft/quorum/raft.py
and the package docstring, and decide whether the wrapper's fix is still needed and right.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import socket
import struct
import time
import zlib
from typing import Any

import pysyncobj.syncobj
import pysyncobj.syncobj as syncobj_module
import pytest
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.journal import FileJournal, ResizableFile
from pysyncobj.node import Node
from pysyncobj.transport import Transport
from pysyncobj.version import VERSION

from kraft.quorum.journal import DurableJournal
from kraft.quorum.raft import NO_OP, REGULAR, RaftNode, RaftTimeouts, _NoSerializer, make_conf
from tests.wait import wait_until

# Sources of the pysyncobj methods whose behaviour kraft/quorum/raft.py depends on. Any change
# is a reason to re-review the wrapper, so a change fails here first.
PINNED_SOURCES = {
    "__init__": "09df12cd7fd7d727",
    "_onTick": "cc9eb08232d005ba",
    "_SyncObj__applyLogEntries": "073db677773b5a2d",
    "_SyncObj__onMessageReceived": "ddfe34b6c0282179",
    "_SyncObj__sendAppendEntries": "9cb9073128c392fa",
    "_SyncObj__onBecomeLeader": "5a3fd97bc17dc1cf",
    "_SyncObj__setCurrentTerm": "0ad5bf456ac06bd3",
    "_SyncObj__tryLogCompaction": "c2f8a0ec14cc7312",
    # Snapshots: the log start is raftLog[0]; RaftNode replaces __sendAppendEntries whole.
    "_SyncObj__getEntries": "e29c4b33293b2101",
    "_SyncObj__getPrevLogIndexTerm": "6766914806ae2311",
    "_SyncObj__deleteEntriesFrom": "3b23c411bb903d36",
    "_SyncObj__getCurrentLogIndex": "e5af22ca246686bd",
}


def test_pysyncobj_version_and_sources_are_the_reviewed_ones() -> None:
    assert VERSION == "0.3.17"
    changed = {
        name: digest
        for name, digest in PINNED_SOURCES.items()
        if hashlib.sha256(inspect.getsource(getattr(SyncObj, name)).encode()).hexdigest()[:16]
        != digest
    }
    assert not changed, f"pysyncobj changed {sorted(changed)}: re-review kraft/quorum/raft.py"
    assert (REGULAR, NO_OP) == (0, 1)


# -- a pysyncobj core driven by hand ------------------------------------------------------------


class RecordingTransport(Transport):
    """Sends nothing; records what pysyncobj sends, in order, into a shared event list."""

    def __init__(self, events: list[tuple[Any, ...]]) -> None:
        super().__init__(None, None, [])
        self.events = events

    def send(self, node: Any, message: Any) -> bool:
        self.events.append(("send", message["type"], message))
        return True


class RecordingJournal(DurableJournal):
    def __init__(self, directory: str, events: list[tuple[Any, ...]]) -> None:
        super().__init__(directory)
        self.events = events

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803
        super().setCurrentTerm(term, votedForNodeId)
        self.events.append(("term", term, votedForNodeId))

    def add(self, command: bytes, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self.events.append(("add", idx, term))


def fast_conf(journal: Any, **overrides: Any) -> SyncObjConf:
    kw: dict[str, Any] = dict(
        autoTick=False,
        journalFile=journal,
        appendEntriesPeriod=0.001,
        raftMinTimeout=0.01,
        raftMaxTimeout=0.02,
        connectionTimeout=1.0,
        logCompactionMinEntries=2**62,
        logCompactionMinTime=2**62,
    )
    kw.update(overrides)
    return SyncObjConf(**kw)


def two_node_core(tmp_path: Any) -> tuple[SyncObj, RecordingJournal, list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    journal = RecordingJournal(str(tmp_path / "j"), events)
    transport = RecordingTransport(events)
    core = SyncObj("1", ["2"], fast_conf(journal), nodeClass=Node, transport=transport)
    return core, journal, events


def test_relied_on_journal_comes_from_create_journal_and_restores_term_vote_commit(
    tmp_path: Any,
) -> None:
    journal = DurableJournal(str(tmp_path))
    journal.add(bytes((NO_OP,)), 1, 0)
    journal.add(bytes((REGULAR,)) + b"x", 2, 4)
    journal.setCurrentTerm(5, "2")
    journal.setRaftCommitIndex(2)
    journal.onOneSecondTimer()
    journal._destroy()

    reopened = DurableJournal(str(tmp_path))
    core = SyncObj("1", ["2"], fast_conf(reopened), nodeClass=Node, transport=Transport(0, 0, 0))
    assert core._SyncObj__raftLog is reopened
    assert core.raftCurrentTerm == 5
    assert core._SyncObj__votedForNodeId == "2"
    assert core.raftCommitIndex == 2
    assert core.raftLastApplied == 1  # replay starts after the bootstrap no-op at index 1
    core._doDestroy()


def test_relied_on_term_and_vote_are_written_before_a_vote_request(tmp_path: Any) -> None:
    core, journal, events = two_node_core(tmp_path)
    core._SyncObj__transport._onNodeConnected(next(iter(core.otherNodes)))
    # pysyncobj starts an election once its randomized deadline passed (on its own clock,
    # CLOCK_MONOTONIC_RAW, not time.monotonic).
    wait_until(
        lambda: core._SyncObj__raftElectionDeadline < pysyncobj.syncobj.monotonicTime(),
        "the election deadline to pass",
        5,
    )
    core.doTick(0)
    kinds = [e[:2] for e in events]
    assert ("send", "request_vote") in kinds
    assert kinds.index(("term", 1)) < kinds.index(("send", "request_vote"))
    assert ("term", 1, "1") in events  # voted for itself
    core._doDestroy()


def test_relied_on_term_and_vote_are_written_before_a_vote_grant(tmp_path: Any) -> None:
    core, journal, events = two_node_core(tmp_path)
    peer = next(iter(core.otherNodes))
    core._SyncObj__transport._onMessageReceived(
        peer, {"type": "request_vote", "term": 7, "last_log_index": 1, "last_log_term": 0}
    )
    kinds = [e[:3] if e[0] == "term" else e[:2] for e in events if e[0] != "add"]
    assert kinds == [("term", 7, None), ("term", 7, "2"), ("send", "response_vote")]
    core._doDestroy()


def test_relied_on_entries_are_acknowledged_through_transport_send(tmp_path: Any) -> None:
    core, journal, events = two_node_core(tmp_path)
    peer = next(iter(core.otherNodes))
    entries = [(bytes((REGULAR,)) + b"a", 2, 3), (bytes((REGULAR,)) + b"b", 3, 3)]
    core._SyncObj__transport._onMessageReceived(
        peer,
        {
            "type": "append_entries",
            "term": 3,
            "commit_index": 1,
            "entries": entries,
            "prevLogIdx": 1,
            "prevLogTerm": 0,
        },
    )
    kinds = [e[:2] for e in events]
    ack = kinds.index(("send", "next_node_idx"))
    assert kinds.index(("add", 2)) < kinds.index(("add", 3)) < ack
    assert events[ack][2]["success"] is True and events[ack][2]["next_node_idx"] == 4
    core._doDestroy()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_relied_on_apply_hook_and_immediate_replication(tmp_path: Any) -> None:
    """On a single-voter RaftNode: every committed entry reaches `on_apply` once, in order,
    with pysyncobj's no-op entries as None; the leader's private helpers still exist."""
    applied: list[tuple[int, int, bytes | None]] = []
    journal = DurableJournal(str(tmp_path))
    node = RaftNode(
        1,
        {1: ("127.0.0.1", free_port())},
        journal,
        secret=b"k",
        listen=("127.0.0.1", free_port()),
        timeouts=RaftTimeouts(election=0.05, fetch=0.2),
        on_apply=lambda *a: applied.append(a),
        max_entry_bytes=1024,
    )
    try:
        deadline = time.monotonic() + 5
        while not node.is_active_leader and time.monotonic() < deadline:
            node.doTick(0.01)
        assert node.is_active_leader
        term = node.raftCurrentTerm
        indexes = [node.append(b"e%d" % i, term) or 0 for i in range(5)]
        assert node.append(b"wrong term", term + 1) is None
        node.replicate()  # _SyncObj__sendAppendEntries
        for _ in range(5):
            node.doTick(0)
        assert [a for a in applied if a[2] is not None] == [
            (index, term, b"e%d" % i) for i, index in enumerate(indexes)
        ]
        assert [a[0] for a in applied] == list(range(2, indexes[-1] + 1))
        assert applied[0][2] is None  # the leader's no-op
        assert isinstance(node._SyncObj__raftMatchIndex, dict)
    finally:
        node.destroy()


class Applier(SyncObj):
    """A bare pysyncobj core that records what it applies, through the hook RaftNode uses."""

    def __init__(self, journal: Any) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.applied: list[tuple[int, bytes]] = []
        super().__init__(
            "1",
            ["2"],
            fast_conf(journal),
            nodeClass=Node,
            transport=RecordingTransport(self.events),
        )

    def _SyncObj__doApplyCommand(self, command: bytes) -> None:  # noqa: N802
        self.applied.append((self.raftLastApplied + 1, command))


def test_relied_on_a_journal_that_starts_at_a_snapshot(tmp_path: Any) -> None:
    """A journal whose first record is a placeholder at index 10 (term 3): pysyncobj treats it
    as the previous entry of 11, never applies or returns it as an entry to send, and applies
    from `__raftLastApplied + 1` once it is set to the snapshot's index."""
    journal = DurableJournal(str(tmp_path))
    journal.reset_to(10, 3)
    journal.add(bytes((REGULAR,)) + b"a", 11, 3)
    core = Applier(journal)
    assert core.raftCommitIndex == 10  # getRaftCommitIndex: never before the log start
    core._SyncObj__raftLastApplied = 10
    assert core._SyncObj__getPrevLogIndexTerm(11) == (10, 3)
    assert core._SyncObj__getEntries(10) == [(bytes((NO_OP,)), 10, 3), (b"\x00a", 11, 3)]
    assert core._SyncObj__getEntries(9) == []
    assert core._SyncObj__getCurrentLogIndex() == 11
    peer = next(iter(core.otherNodes))
    receive = core._SyncObj__transport._onMessageReceived
    base = {"type": "append_entries", "term": 3, "commit_index": 12}
    receive(peer, {**base, "entries": [(b"\x00b", 12, 3)], "prevLogIdx": 11, "prevLogTerm": 3})
    ack = [e[2] for e in core.events if e[:2] == ("send", "next_node_idx")][-1]
    assert (ack["next_node_idx"], ack["success"]) == (13, True)
    core.doTick(0)
    assert core.applied == [(11, b"\x00a"), (12, b"\x00b")]
    # Before the log start: "reset" to the end of the log, nothing deleted.
    receive(peer, {**base, "entries": [], "prevLogIdx": 8, "prevLogTerm": 3})
    ack = [e[2] for e in core.events if e[:2] == ("send", "next_node_idx")][-1]
    assert (ack["next_node_idx"], ack["reset"], ack["success"]) == (13, True, False)
    assert journal.first_index == 10 and journal.last_index == 12
    core._doDestroy()


def test_relied_on_an_append_entries_without_prev_log_index_is_bookkeeping_only(
    tmp_path: Any,
) -> None:
    """How RaftNode hands a snapshot chunk's leader message to pysyncobj: term, leader and
    follower state change as for any append_entries; log, commit index and replies do not."""
    journal = DurableJournal(str(tmp_path))
    journal.add(bytes((NO_OP,)), 1, 0)
    journal.add(bytes((REGULAR,)) + b"stale", 2, 1)
    core = Applier(journal)
    peer = next(iter(core.otherNodes))
    core._SyncObj__raftElectionDeadline = 0.0
    received_at = syncobj_module.monotonicTime()  # pysyncobj's clock, not time.monotonic
    core._SyncObj__transport._onMessageReceived(
        peer, {"type": "append_entries", "term": 4, "commit_index": 0}
    )
    assert core.raftCurrentTerm == 4 and core._getLeader() == peer and not core._isLeader()
    assert core._SyncObj__raftElectionDeadline > received_at  # the election timer was reset
    assert core.raftCommitIndex == 1 and journal.last_index == 2
    assert [e for e in core.events if e[0] == "send"] == []
    core.doTick(0)
    assert core.applied == []
    core._doDestroy()


def test_relied_on_the_leader_s_handling_of_next_node_idx(tmp_path: Any) -> None:
    """Snapshot acknowledgements are next_node_idx messages: without reset or success they
    only count as a response; success moves match and next index; reset sets next index."""
    journal = DurableJournal(str(tmp_path))
    journal.add(bytes((NO_OP,)), 1, 0)
    core = Applier(journal)
    core._SyncObj__onBecomeLeader()
    peer = next(iter(core.otherNodes))
    receive = core._SyncObj__transport._onMessageReceived
    core._SyncObj__lastResponseTime[peer] = 0
    next_index = core._SyncObj__raftNextIndex[peer]
    receive(peer, {"type": "next_node_idx", "next_node_idx": 51, "reset": False, "success": False})
    assert core._SyncObj__lastResponseTime[peer] > 0
    assert core._SyncObj__raftMatchIndex[peer] == 0
    assert core._SyncObj__raftNextIndex[peer] == next_index
    receive(peer, {"type": "next_node_idx", "next_node_idx": 51, "reset": False, "success": True})
    assert core._SyncObj__raftMatchIndex[peer] == 50 and core._SyncObj__raftNextIndex[peer] == 51
    receive(peer, {"type": "next_node_idx", "next_node_idx": 7, "reset": True, "success": False})
    assert core._SyncObj__raftNextIndex[peer] == 7
    core._doDestroy()


def test_relied_on_private_state_used_by_the_snapshot_code(tmp_path: Any) -> None:
    core = Applier(DurableJournal(str(tmp_path)))
    for name, kind in (
        ("_SyncObj__conf", SyncObjConf),
        ("_SyncObj__otherNodes", set),
        ("_SyncObj__readonlyNodes", set),
        ("_SyncObj__connectedNodes", set),
        ("_SyncObj__raftNextIndex", dict),
        ("_SyncObj__transport", Transport),
        ("_SyncObj__newAppendEntriesTime", (int, float)),
        ("_SyncObj__raftLastApplied", int),
        ("_SyncObj__raftCommitIndex", int),
        ("_SyncObj__serializer", object),
    ):
        assert isinstance(getattr(core, name), kind), name
    # RaftNode sets __newAppendEntriesTime, which _onTick compares with this clock.
    assert "monotonicTime() > self.__newAppendEntriesTime" in inspect.getsource(SyncObj._onTick)
    assert callable(syncobj_module.monotonicTime)
    # The serializer is only asked whether a dump is in progress while compaction is off.
    core._SyncObj__serializer = _NoSerializer()
    tick(core, 5)
    core._doDestroy()


def test_relied_on_config_is_accepted() -> None:
    """pysyncobj validates timing relations; ours must pass them for the supported range."""
    for election, fetch in ((1.0, 2.0), (0.3, 0.5), (5.0, 10.0)):
        conf = make_conf(None, RaftTimeouts(election, fetch), 1 << 20)  # type: ignore[arg-type]
        conf.validate()
        assert conf.leaderFallbackTimeout == fetch
        assert conf.raftMaxTimeout == election


# -- the gaps of pysyncobj as it comes ----------------------------------------------------------


@pytest.fixture
def sync_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        calls.append("fdatasync")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return calls


def test_gap1_file_journal_writes_term_and_vote_without_fsync(
    tmp_path: Any, sync_calls: list[str]
) -> None:
    journal = FileJournal(str(tmp_path / "journal"))
    journal.setCurrentTerm(3, "127.0.0.1:1")
    assert sync_calls == []
    journal._destroy()
    ours = DurableJournal(str(tmp_path / "ours"))
    sync_calls.clear()
    ours.setCurrentTerm(3, "2")
    assert sync_calls == ["fsync", "fsync"]  # the temporary file, then the directory


def test_gap2_file_journal_never_flushes_appends(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, sync_calls: list[str]
) -> None:
    flushes: list[int] = []
    real_flush = ResizableFile.flush

    def flush(self: ResizableFile) -> None:
        flushes.append(1)
        real_flush(self)

    monkeypatch.setattr(ResizableFile, "flush", flush)
    journal = FileJournal(str(tmp_path / "journal"))
    for i in range(10):
        journal.add(b"\x00cmd", i + 1, 1)
    assert flushes == [] and sync_calls == []
    journal._destroy()


class Counter(SyncObj):
    def __init__(self, journal_file: str, **conf: Any) -> None:
        super().__init__(
            "1", [], fast_conf(journal_file, **conf), nodeClass=Node, transport=Transport(0, 0, 0)
        )
        self.values: list[int] = []

    @replicated
    def add(self, value: int) -> None:
        self.values.append(value)


def tick(core: SyncObj, times: int = 20) -> None:
    for _ in range(times):
        core.doTick(0.002)


def test_gap2_compaction_without_dump_file_loses_everything_on_restart(tmp_path: Any) -> None:
    """What the team measured: a journal file alone does not survive a whole-cluster restart.
    pysyncobj's compaction (every 5000 entries or 300 s by default) drops the journal prefix
    and keeps the snapshot in memory only; a restarted node then never applies anything."""
    path = str(tmp_path / "journal")
    core = Counter(path, logCompactionMinEntries=5)
    tick(core)
    for i in range(20):
        core.add(i)
        tick(core, 3)
    tick(core)
    assert core.values == list(range(20))
    assert len(core._SyncObj__raftLog) < 20  # compacted
    core._doDestroy()

    restarted = Counter(path)
    tick(restarted)
    restarted.add(99)
    tick(restarted, 40)
    assert restarted.values == []  # not even the new entry: applying is stuck for good
    assert restarted.raftLastApplied == 1 and restarted.raftCommitIndex > 20
    restarted._doDestroy()


def tcp_core(port: int, **conf: Any) -> SyncObj:
    return SyncObj(f"127.0.0.1:{port}", [], fast_conf(None, **conf))


def test_gap3_default_transport_binds_all_interfaces() -> None:
    core = tcp_core(free_port())
    try:
        server = core._SyncObj__transport._server._TcpServer__socket
        assert server.getsockname()[0] == "0.0.0.0"
    finally:
        core._doDestroy()


EXECUTED: list[str] = []


def record_execution(what: str) -> None:
    EXECUTED.append(what)


class Probe:
    def __reduce__(self) -> tuple[Any, ...]:
        return record_execution, ("unpickled from an unauthenticated peer",)


def test_gap4_default_transport_unpickles_anything_from_anyone() -> None:
    port = free_port()
    core = tcp_core(port)
    EXECUTED.clear()
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            data = zlib.compress(pickle.dumps(Probe()), 3)
            raw.sendall(struct.pack("i", len(data)) + data)
            deadline = time.monotonic() + 5
            while not EXECUTED and time.monotonic() < deadline:
                core.doTick(0.01)
    finally:
        core._doDestroy()
    assert EXECUTED == ["unpickled from an unauthenticated peer"]


def test_gaps_5_6_7_defaults() -> None:
    conf = SyncObjConf()
    assert conf.appendEntriesUseBatch is True  # 5: commands wait for the batch timer
    assert conf.appendEntriesPeriod == 0.1
    assert conf.leaderFallbackTimeout == 30.0  # 6: a cut-off leader believes in itself 30 s
    assert (conf.raftMinTimeout, conf.raftMaxTimeout) == (0.4, 1.4)  # 7
    assert conf.connectionRetryTime == 5.0  # 7: a restarted voter is redialled after 5 s
    assert conf.bindAddress is None  # 3
    assert conf.password is None  # 4
    assert syncobj_module.createJournal.kraft_hook is True
