"""kraft.quorum: the journal, the codec, the transport, and 3-voter clusters in one process.

Figures (commit latency, failover time) are printed, never asserted: run with `-s` to see
them. Process-level crash tests are in test_quorum_processes.py, pysyncobj pins in
test_quorum_pins.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import random
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kraft.quorum import (
    CommitTimeout,
    NotLeader,
    Quorum,
    QuorumError,
    QuorumStopped,
    codec,
    transport,
)
from kraft.quorum.journal import (
    LOG_FILE,
    STATE_FILE,
    DurableJournal,
    JournalError,
    encode_record,
)
from tests.wait import wait_until_async

SECRET = b"test cluster secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# -- journal ------------------------------------------------------------------------------------


def test_journal_round_trip_and_state_file(tmp_path: Any) -> None:
    journal = DurableJournal(str(tmp_path))
    entries = [(b"\x01", 1, 0), (b"\x00abc", 2, 3), (b"\x00" + bytes(1000), 3, 3)]
    for entry in entries:
        journal.add(*entry)
    journal.setCurrentTerm(3, "2")
    journal.setRaftCommitIndex(3)
    journal._destroy()

    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state == {"current_term": 3, "voted_for": 2, "commit_index": 3}
    reopened = DurableJournal(str(tmp_path))
    assert list(reopened[:]) == entries
    assert reopened.entry(2) == entries[1] and reopened.entry(4) is None
    assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) == (3, "2")
    assert reopened.getRaftCommitIndex() == 3
    reopened._destroy()


def test_journal_drops_a_torn_or_corrupt_tail(tmp_path: Any) -> None:
    journal = DurableJournal(str(tmp_path))
    for i in range(1, 6):
        journal.add(b"\x00entry%d" % i, i, 1)
    journal._destroy()
    path = tmp_path / LOG_FILE
    full = path.read_bytes()

    path.write_bytes(full[:-3])  # torn last record
    reopened = DurableJournal(str(tmp_path))
    assert [e[1] for e in reopened[:]] == [1, 2, 3, 4]
    reopened.add(b"\x00again", 5, 2)  # appends right after the last good record
    reopened._destroy()
    assert [e[0] for e in DurableJournal(str(tmp_path))[:]][-1] == b"\x00again"

    corrupt = bytearray(full)
    corrupt[-1] ^= 0xFF
    path.write_bytes(bytes(corrupt) + b"garbage")
    reopened = DurableJournal(str(tmp_path))
    assert [e[1] for e in reopened[:]] == [1, 2, 3, 4]
    assert os.path.getsize(path) < len(full)
    reopened._destroy()


def test_journal_truncation_and_prefix_drop_survive_reopen(tmp_path: Any) -> None:
    journal = DurableJournal(str(tmp_path))
    for i in range(1, 11):
        journal.add(b"\x00%d" % i, i, 1)
    journal.deleteEntriesFrom(6)  # list positions: keeps indexes 1..6
    journal.add(b"\x00new7", 7, 2)
    journal.deleteEntriesTo(2)  # drops indexes 1, 2
    journal._destroy()
    reopened = DurableJournal(str(tmp_path))
    assert [(e[1], e[2]) for e in reopened[:]] == [(3, 1), (4, 1), (5, 1), (6, 1), (7, 2)]
    with pytest.raises(JournalError):
        reopened.add(b"\x00gap", 9, 2)
    reopened._destroy()


def test_journal_syncs_only_when_dirty(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    journal = DurableJournal(str(tmp_path))
    journal.sync()
    assert calls == []
    journal.add(b"\x00a", 1, 1)
    journal.add(b"\x00b", 2, 1)
    journal.sync()
    journal.sync()
    assert len(calls) == 1
    journal._destroy()


def test_journal_refuses_a_corrupt_state_file(tmp_path: Any) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(JournalError):
        DurableJournal(str(tmp_path))


# -- codec --------------------------------------------------------------------------------------


def test_codec_round_trips_raft_messages() -> None:
    messages = [
        {
            "type": "append_entries",
            "term": 7,
            "commit_index": 41,
            "entries": [(b"\x00rec", 42, 7), (b"\x01", 43, 7)],
            "prevLogIdx": 41,
            "prevLogTerm": 6,
        },
        {"type": "next_node_idx", "next_node_idx": 44, "reset": False, "success": True},
        {"type": "request_vote", "term": 8, "last_log_index": 43, "last_log_term": 7},
        {"type": "response_vote", "term": 8},
        {"x": None, "neg": -(2**63), "s": "ü", "nested": [[(), {}]]},
    ]
    for message in messages:
        assert codec.decode(codec.encode(message)) == message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x09",
        b"\x03\x00",
        b"\x04\xff\xff\xff\xff",
        b"\x06\x7f\xff\xff\xff\x00",
        b"\x00\x00",
        b"\x05\x00\x00\x00\x02\xff\xfe",
        b"\x08\x00\x00\x00\x01\x06\x00\x00\x00\x00\x00",
        b"\x06\x00\x00\x00\x01" * 20 + b"\x00",
        pickle.dumps({"type": "append_entries"}),
    ],
)
def test_codec_rejects_malformed_input(data: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_codec_rejects_fuzz() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(1, 40))
        try:
            codec.decode(data)
        except codec.CodecError:
            pass


def test_codec_encodes_only_plain_values() -> None:
    with pytest.raises(codec.CodecError):
        codec.encode({"x": object()})


# -- clusters -----------------------------------------------------------------------------------


class Member:
    """One voter, with everything its callbacks reported."""

    def __init__(self, node_id: int, cluster: Cluster, **overrides: Any) -> None:
        self.node_id = node_id
        self.commits: list[tuple[int, bytes]] = []
        self.leader_changes: list[tuple[int | None, int]] = []
        kw: dict[str, Any] = dict(cluster.options)
        kw.update(overrides)
        secret = kw.pop("secret", SECRET)
        self.quorum = Quorum(
            node_id,
            cluster.voters,
            str(cluster.root / f"node-{node_id}"),
            secret,
            on_commit=self.on_commit,
            on_leader_change=lambda leader, term: self.leader_changes.append((leader, term)),
            **kw,
        )

    def on_commit(self, index: int, entry: bytes) -> None:
        assert not self.commits or index > self.commits[-1][0], "out of order"
        self.commits.append((index, entry))

    @property
    def entries(self) -> list[bytes]:
        return [entry for _, entry in self.commits]


class Cluster:
    def __init__(self, root: Any, size: int = 3, **options: Any) -> None:
        self.root = root
        self.voters = {i: ("127.0.0.1", free_port()) for i in range(1, size + 1)}
        self.options = options
        self.members: dict[int, Member] = {}

    async def start(self, *ids: int, **overrides: Any) -> None:
        for node_id in ids or tuple(self.voters):
            member = Member(node_id, self, **overrides)
            self.members[node_id] = member
            await member.quorum.start()

    async def stop(self, *ids: int) -> None:
        for node_id in ids or tuple(self.members):
            member = self.members.pop(node_id)
            await member.quorum.stop()

    def running(self) -> list[Member]:
        return list(self.members.values())

    async def leader(self, within: float = 10.0) -> Member:
        def found() -> bool:
            leaders = [m for m in self.running() if m.quorum.is_leader]
            return len(leaders) == 1 and all(
                m.quorum.leader_id == leaders[0].node_id for m in self.running()
            )

        await wait_until_async(found, "one leader all members agree on", within)
        return next(m for m in self.running() if m.quorum.is_leader)


@pytest.fixture
async def cluster(tmp_path: Any) -> AsyncIterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(size: int = 3, **options: Any) -> Cluster:
        made.append(Cluster(tmp_path / f"c{len(made)}", size, **options))
        return made[-1]

    yield make
    for c in made:
        await c.stop()


async def test_three_voters_elect_commit_everywhere_in_order(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster()
    await c.start()
    leader = await c.leader()
    followers = [m for m in c.running() if m is not leader]

    latencies = []
    for i in range(300):
        started = time.perf_counter()
        await leader.quorum.append(b"seq-%d" % i)
        latencies.append(time.perf_counter() - started)
    concurrent = await asyncio.gather(*(leader.quorum.append(b"par-%d" % i) for i in range(100)))
    assert concurrent == sorted(concurrent)

    expected = [b"seq-%d" % i for i in range(300)] + [b"par-%d" % i for i in range(100)]
    assert leader.entries == expected  # applied locally before append returned
    await wait_until_async(
        lambda: all(m.entries == expected for m in followers),
        "all(m.entries == expected for m in followers)",
    )
    assert all(m.commits == leader.commits for m in followers)
    print(
        f"\ncommit latency, 3 voters in one process, {len(latencies)} sequential appends: "
        f"p50 {percentile(latencies, 0.5) * 1000:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms, "
        f"max {max(latencies) * 1000:.2f} ms"
    )

    with pytest.raises(NotLeader) as refused:
        await followers[0].quorum.append(b"not here")
    assert refused.value.leader_id == leader.node_id
    with pytest.raises(NotLeader):
        await leader.quorum.append(b"stale", expected_term=leader.quorum.term - 1)

    status = leader.quorum.status()
    assert status.is_leader and status.leader_id == leader.node_id
    assert [v.node_id for v in status.voters] == [1, 2, 3]
    await wait_until_async(
        lambda: all(v.lag == 0 for v in leader.quorum.status().voters),
        "all(v.lag == 0 for v in leader.quorum.status().voters)",
    )
    follower_view = followers[0].quorum.status()
    assert all(
        v.match_index is None for v in follower_view.voters if v.node_id != followers[0].node_id
    )
    for m in c.running():
        assert m.leader_changes[-1] == (leader.node_id, leader.quorum.term)


async def test_leader_failover_and_catch_up(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    await c.start()
    leader = await c.leader()
    for i in range(20):
        await leader.quorum.append(b"before-%d" % i)
    old_id, old_term = leader.node_id, leader.quorum.term

    stopped_at = time.monotonic()
    await c.stop(old_id)
    new_leader = await c.leader()
    failover = time.monotonic() - stopped_at
    assert new_leader.node_id != old_id and new_leader.quorum.term > old_term
    for i in range(20):
        await new_leader.quorum.append(b"after-%d" % i)
    print(f"\nfailover (leader stopped -> new active leader): {failover * 1000:.0f} ms")

    await c.start(old_id)  # rejoins, replays its own log, then catches up
    expected = [b"before-%d" % i for i in range(20)] + [b"after-%d" % i for i in range(20)]
    await wait_until_async(
        lambda: all(m.entries == expected for m in c.running()),
        "all(m.entries == expected for m in c.running())",
    )
    assert c.members[old_id].quorum.leader_id == new_leader.node_id


async def test_minority_cannot_commit_and_the_leader_steps_down(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster(fetch_timeout_ms=1000)
    await c.start()
    leader = await c.leader()
    await leader.quorum.append(b"committed")
    others = [m.node_id for m in c.running() if m is not leader]
    await c.stop(*others)

    cut_off_at = time.monotonic()
    with pytest.raises((CommitTimeout, NotLeader)):
        await leader.quorum.append(b"no majority", timeout_ms=500)
    await wait_until_async(lambda: not leader.quorum.is_leader, "not leader.quorum.is_leader", 10)
    stepped_down = time.monotonic() - cut_off_at
    with pytest.raises(NotLeader):
        await leader.quorum.append(b"still no majority", timeout_ms=500)
    assert leader.entries == [b"committed"]
    print(f"\nleader without a majority stepped down after {stepped_down * 1000:.0f} ms")


async def test_whole_cluster_restart_replays_every_committed_entry(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster()
    await c.start()
    leader = await c.leader()
    expected = [b"entry-%d" % i for i in range(50)]
    for entry in expected:
        await leader.quorum.append(entry)
    await wait_until_async(
        lambda: all(m.entries == expected for m in c.running()),
        "all(m.entries == expected for m in c.running())",
    )
    before = {m.node_id: list(m.commits) for m in c.running()}
    await c.stop()

    await c.start()
    leader = await c.leader()
    await leader.quorum.append(b"after restart")
    await wait_until_async(
        lambda: all(len(m.commits) == 51 for m in c.running()),
        "all(len(m.commits) == 51 for m in c.running())",
    )
    for m in c.running():
        assert m.commits[:50] == before[m.node_id]  # same entries at the same indexes
        assert m.entries[50] == b"after restart"

    # A caller that persisted its state up to some index gets only what follows it.
    floor = before[1][29][0]
    await c.stop(1)
    await c.start(1, applied_index=floor)
    await wait_until_async(
        lambda: len(c.members[1].commits) == 21, "len(c.members[1].commits) == 21"
    )
    assert c.members[1].entries == expected[30:] + [b"after restart"]


async def test_term_and_vote_are_persisted(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    await c.start()
    leader = await c.leader()
    term = leader.quorum.term
    states = {
        m.node_id: json.loads((c.root / f"node-{m.node_id}" / STATE_FILE).read_text())
        for m in c.running()
    }
    assert all(s["current_term"] == term for s in states.values())
    assert states[leader.node_id]["voted_for"] == leader.node_id
    # A majority voted for the leader in its term (or a voter skipped the election).
    assert sum(s["voted_for"] == leader.node_id for s in states.values()) >= 2


async def test_binds_only_the_configured_address(cluster: Callable[..., Cluster]) -> None:
    c = cluster(size=1)
    await c.start()
    quorum = c.members[1].quorum
    host, port = c.voters[1]
    assert quorum.listen_address == (host, port)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=1).close()


async def test_single_voter_and_fail_stop_on_callback_error(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster(size=1, election_timeout_ms=200)
    await c.start()
    member = await c.leader()
    assert await member.quorum.append(b"one") > 0

    def broken(index: int, entry: bytes) -> None:
        raise RuntimeError("state machine bug")

    member.quorum._on_commit = broken
    with pytest.raises(QuorumStopped):
        await member.quorum.append(b"two")
    with pytest.raises(QuorumStopped):
        await member.quorum.append(b"three")


async def test_start_fails_when_the_port_is_taken(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        quorum = Quorum(1, {1: ("127.0.0.1", port)}, str(tmp_path), SECRET, on_commit=print)
        with pytest.raises(OSError):
            await quorum.start()


class PowerLossDisk:
    """What would survive a power failure right now: each file's content as of its last
    fdatasync/fsync (slowed down, so that anything sent before a sync completes is caught)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
        self.images: dict[str, bytes] = {}
        real_fdatasync, real_fsync = os.fdatasync, os.fsync

        def capture(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if os.path.isdir(path):  # a rename in it is now durable
                for name in os.listdir(path):
                    if name == STATE_FILE:
                        with open(os.path.join(path, name), "rb") as f:
                            self.images[os.path.join(path, name)] = f.read()
            elif not path.endswith(".tmp"):
                self.images[path] = os.pread(fd, os.fstat(fd).st_size, 0)

        def fdatasync(fd: int) -> None:
            time.sleep(delay)
            real_fdatasync(fd)
            capture(fd)

        def fsync(fd: int) -> None:
            time.sleep(delay)
            real_fsync(fd)
            capture(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "fsync", fsync)

    def holds(self, path: Any, record: bytes) -> bool:
        return record in self.images.get(str(path), b"")


async def test_entries_and_votes_are_durable_on_a_majority_before_they_count(
    cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power loss, simulated: an entry acknowledged to the caller must already be on disk
    (fsynced) on a majority, and the term and vote that elected the leader too."""
    disk = PowerLossDisk(monkeypatch, delay=0.005)
    c = cluster()
    await c.start()
    leader = await c.leader()
    term = leader.quorum.term
    states = [
        json.loads(disk.images.get(str(c.root / f"node-{i}" / STATE_FILE), b"{}")) for i in c.voters
    ]
    assert sum(s.get("current_term") == term for s in states) >= 2
    assert states[leader.node_id - 1]["voted_for"] == leader.node_id

    logs = [c.root / f"node-{i}" / LOG_FILE for i in c.voters]
    for i in range(60):
        payload = b"durable-%d" % i
        index = await leader.quorum.append(payload)
        record = encode_record(b"\x00" + payload, index, term)
        copies = sum(disk.holds(log, record) for log in logs)
        assert copies >= 2, f"entry {index} acknowledged with {copies} durable copies"


# -- hostile peers ------------------------------------------------------------------------------


def expect_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection; returns what it sent first."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def handshake(port: int, secret: bytes, from_id: int, to_id: int) -> tuple[socket.socket, bytes]:
    """Dial like a voter; returns the socket and the session key."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    nonce = os.urandom(16)
    hello = transport._HELLO.pack(transport.MAGIC, from_id, to_id, nonce)
    sock.sendall(hello)
    challenge = b""
    while len(challenge) < transport._CHALLENGE_HEAD.size + 32:
        challenge += sock.recv(4096)
    transcript = hello + challenge[: transport._CHALLENGE_HEAD.size]
    sock.sendall(transport._mac(secret, b"kraft-quorum dial\0", transcript))
    return sock, transport._mac(secret, b"kraft-quorum session\0", transcript)


def frame(key: bytes, seq: int, payload: bytes) -> bytes:
    mac = transport.hmac.digest(key, transport._SEQ.pack(0, seq) + payload, "sha256")[:16]
    return transport._FRAME_HEAD.pack(len(payload), mac) + payload


EXECUTED: list[str] = []


def record_execution(what: str) -> None:
    EXECUTED.append(what)


class Probe:
    def __reduce__(self) -> tuple[Any, ...]:
        return record_execution, ("unpickled",)


async def test_hostile_connections_change_nothing(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    await c.start()
    leader = await c.leader()
    await leader.quorum.append(b"before")
    await wait_until_async(
        lambda: all(m.entries == [b"before"] for m in c.running()),
        "all(m.entries == [b'before'] for m in c.running())",
    )
    before = {
        m.node_id: (m.quorum.term, m.quorum.leader_id, m.quorum.status().last_index)
        for m in c.running()
    }
    follower = next(m for m in c.running() if m is not leader)
    EXECUTED.clear()

    def attacks(port: int, node_id: int) -> list[bytes]:
        answers = []
        pickled = zlib.compress(pickle.dumps(Probe()), 3)
        raw_pickle = pickle.dumps({"type": "request_vote", "term": 10**6, "probe": Probe()})
        for data in (
            os.urandom(4096),  # garbage
            struct.pack("i", len(pickled)) + pickled,  # pysyncobj's own wire format
            raw_pickle,
            b"\xff\xff\xff\xff" + os.urandom(64),  # a huge frame announced up front
            transport._HELLO.pack(transport.MAGIC, 99, node_id, os.urandom(16)),  # unknown voter
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(data)
                answers.append(expect_closed(sock))
        # The handshake as a voter, but without the secret.
        sock, key = handshake(port, b"wrong secret", 1 if node_id != 1 else 2, node_id)
        sock.sendall(frame(key, 0, b"\x00" + codec.encode({"type": "response_vote", "term": 9})))
        answers.append(expect_closed(sock))
        sock.close()
        # With the secret, but frames that are not allowed or not authentic.
        peer = 1 if node_id != 1 else 2
        for payload, seq in (
            (b"\x00" + codec.encode({"type": "apply_command", "command": b"\x00x"}), 0),
            (b"\x00" + codec.encode({"type": "append_entries", "serialized": b"x", "term": 99}), 0),
            (b"\x00" + codec.encode({"type": "response_vote", "term": 1}), 5),  # replayed seq
            (b"\x00" + pickle.dumps(Probe()), 0),
            (None, 0),  # a frame announced over the size limit
        ):
            sock, key = handshake(port, SECRET, peer, node_id)
            if payload is None:
                sock.sendall(transport._FRAME_HEAD.pack(2**31, bytes(16)) + bytes(1000))
            else:
                sock.sendall(frame(key, seq, payload))
            expect_closed(sock)
            sock.close()
        return answers

    for m in (leader, follower):
        answers = await asyncio.to_thread(attacks, c.voters[m.node_id][1], m.node_id)
        assert answers[:5] == [b""] * 5  # nothing said to a stranger before it authenticates

    assert EXECUTED == []
    assert {m.node_id: (m.quorum.term, m.quorum.leader_id) for m in c.running()} == {
        k: v[:2] for k, v in before.items()
    }
    assert all(m.entries == [b"before"] for m in c.running())
    await leader.quorum.append(b"after")
    await wait_until_async(
        lambda: all(m.entries == [b"before", b"after"] for m in c.running()),
        "all(m.entries == [b'before', b'after'] for m in c.running())",
    )


async def test_a_voter_without_the_secret_cannot_join(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    await c.start(1, 2)
    await c.start(3, secret=b"not the cluster secret")
    await wait_until_async(
        lambda: any(c.members[i].quorum.is_leader for i in (1, 2)),
        "any(c.members[i].quorum.is_leader for i in (1, 2))",
    )
    leader = next(c.members[i] for i in (1, 2) if c.members[i].quorum.is_leader)
    await leader.quorum.append(b"x")
    # By the time the other voter has the entry, the stranger would have it too if admitted.
    other = c.members[1 if leader.node_id == 2 else 2]
    await wait_until_async(lambda: other.entries == [b"x"], "the other voter to apply the entry")
    assert c.members[3].commits == [] and c.members[3].quorum.leader_id is None
    status = leader.quorum.status()
    assert next(v for v in status.voters if v.node_id == 3).connected is False
    with pytest.raises(QuorumError):
        await c.members[3].quorum.append(b"y")
