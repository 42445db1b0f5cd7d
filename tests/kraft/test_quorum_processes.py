"""kraft.quorum with each voter in its own process: kill -9 at random moments, failover, latency.

The test drives children over stdin/stdout. A child (this file run as a script) is one voter::

    parent -> child   APPEND <token> <hex>   append as the leader
                      BENCH <n>              n sequential appends, report latency
    child -> parent   READY
                      LEADER <id or -> <term>
                      COMMIT <index> <hex>   on_commit, in order (replayed after a restart)
                      SNAPSHOT <index> <hex> on_snapshot: every (index, entry) it holds
                      ACK <token> <index>    the append is committed
                      ERR <token> <error>
                      BENCH <p50 ms> <p99 ms>

The crash test records every acknowledged append; at the end all voters must hold every one of
them at its acknowledged index, and every COMMIT any incarnation of any voter ever reported
must agree with the final log (nothing committed was lost, changed or reordered).

With SNAPSHOT_ENV set (entries between snapshots), a child keeps every committed entry as its
state machine and snapshots it (test_quorum_snapshot.py); a snapshot it loads counts as
having committed every entry in it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from kraft.quorum import Quorum, QuorumError, codec
from tests.wait import wait_until_async

REPO_ROOT = str(Path(__file__).resolve().parents[2])
SECRET_ENV = "KRAFT_QUORUM_TEST_SECRET"
SNAPSHOT_ENV = "KRAFT_QUORUM_TEST_SNAPSHOT_ENTRIES"
SECRET = "process test secret"


# -- the child ----------------------------------------------------------------------------------


async def child_main(node_id: int, voters: dict[int, tuple[str, int]], data_dir: str) -> None:
    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    state: list[tuple[int, bytes]] = []

    def on_commit(index: int, entry: bytes) -> None:
        state.append((index, entry))
        emit(f"COMMIT {index} {entry.hex()}")

    def on_snapshot(index: int, data: bytes) -> None:
        state[:] = codec.decode(data)
        emit(f"SNAPSHOT {index} {data.hex()}")

    snapshots: dict[str, Any] = {}
    if SNAPSHOT_ENV in os.environ:
        snapshots = dict(
            snapshot_provider=lambda: (state[-1][0] if state else 0, codec.encode(state)),
            on_snapshot=on_snapshot,
            max_entries_between_snapshots=int(os.environ[SNAPSHOT_ENV]),
        )
    quorum = Quorum(
        node_id,
        voters,
        data_dir,
        os.environ[SECRET_ENV],
        on_commit=on_commit,
        on_leader_change=lambda leader, term: emit(
            f"LEADER {'-' if leader is None else leader} {term}"
        ),
        **snapshots,
    )
    await quorum.start()
    emit("READY")

    async def append(token: str, payload: bytes) -> None:
        try:
            index = await quorum.append(payload, timeout_ms=3000)
        except QuorumError as e:
            emit(f"ERR {token} {type(e).__name__}")
        else:
            emit(f"ACK {token} {index}")

    async def bench(count: int) -> None:
        latencies = []
        for i in range(count):
            started = time.perf_counter()
            await quorum.append(b"bench-%d" % i)
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
        emit(f"BENCH {p50 * 1000:.3f} {p99 * 1000:.3f}")

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    while line := await reader.readline():
        words = line.decode().split()
        if words[0] == "APPEND":
            task = asyncio.create_task(append(words[1], bytes.fromhex(words[2])))
        else:
            task = asyncio.create_task(bench(int(words[1])))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await quorum.stop()


# -- the parent's view of a child ---------------------------------------------------------------


class Child:
    def __init__(self, node_id: int, voters: dict[int, tuple[str, int]], root: Any) -> None:
        self.node_id = node_id
        self.voters = voters
        self.data_dir = str(root / f"node-{node_id}")
        self.log_path = str(root / f"node-{node_id}.log")
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None
        self.incarnations: list[list[tuple[int, bytes]]] = []
        self.commits: list[tuple[int, bytes]] = []
        self.leader: int | None = None
        self.term = 0
        self.ready = asyncio.Event()
        self.acks: dict[str, asyncio.Future[int | None]] = {}
        self.bench: asyncio.Future[tuple[float, float]] | None = None
        self.env: dict[str, str] = {}
        self.snapshots_loaded: list[tuple[int, bool]] = []  # (index, after READY)

    async def start(self) -> None:
        env = dict(os.environ, **{SECRET_ENV: SECRET}, **self.env)
        # Run as a script, the child imports this repository's kraft and tests packages.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        voters = json.dumps({str(k): list(v) for k, v in self.voters.items()})
        with open_log(self.log_path) as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                str(self.node_id),
                voters,
                self.data_dir,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                limit=64 << 20,  # SNAPSHOT lines
            )
        self.commits = []
        self.incarnations.append(self.commits)
        self.leader, self.term = None, 0
        self.ready = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            words = line.decode().split()
            if words[0] == "COMMIT":
                index = int(words[1])
                assert not self.commits or index > self.commits[-1][0]
                self.commits.append((index, bytes.fromhex(words[2])))
            elif words[0] == "LEADER":
                self.leader = None if words[1] == "-" else int(words[1])
                self.term = int(words[2])
            elif words[0] == "SNAPSHOT":
                known = dict(self.commits)
                for index, entry in codec.decode(bytes.fromhex(words[2])):
                    assert known.setdefault(index, entry) == entry, f"snapshot changed {index}"
                self.commits[:] = sorted(known.items())
                self.snapshots_loaded.append((int(words[1]), self.ready.is_set()))
            elif words[0] == "READY":
                self.ready.set()
            elif words[0] in ("ACK", "ERR"):
                future = self.acks.pop(words[1], None)
                if future is not None and not future.done():
                    future.set_result(int(words[2]) if words[0] == "ACK" else None)
            elif words[0] == "BENCH" and self.bench is not None:
                self.bench.set_result((float(words[1]), float(words[2])))
        for future in self.acks.values():  # died: those outcomes are unknown
            if not future.done():
                future.set_result(None)
        self.acks.clear()
        self.leader = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def is_leader(self) -> bool:
        return self.alive and self.leader == self.node_id

    def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    def append(self, token: str, payload: bytes) -> asyncio.Future[int | None]:
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.acks[token] = future
        self.send(f"APPEND {token} {payload.hex()}")
        return future

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    async def wait(self) -> None:
        if self.proc is not None:
            await self.proc.wait()
        if self.reader is not None:
            await self.reader

    async def stop(self) -> None:
        if self.alive:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.kill()
        await self.wait()


def open_log(path: str) -> IO[bytes]:
    return open(path, "ab")


def log_tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_leader(children: list[Child], within: float = 15.0) -> Child:
    def agreed() -> Child | None:
        leaders = [c for c in children if c.is_leader]
        if len(leaders) == 1 and all(c.leader == leaders[0].node_id for c in children if c.alive):
            return leaders[0]
        return None

    await wait_until_async(
        lambda: agreed() is not None,
        "one leader every live voter follows",
        within,
        explain=lambda: (
            f"(node, leader, term): {[(c.node_id, c.leader, c.term) for c in children]}"
        ),
    )
    leader = agreed()
    assert leader is not None
    return leader


def make_children(tmp_path: Any) -> list[Child]:
    voters = {i: ("127.0.0.1", free_port()) for i in (1, 2, 3)}
    return [Child(i, voters, tmp_path) for i in voters]


async def run_with_children(tmp_path: Any, body: Any) -> None:
    children = make_children(tmp_path)
    try:
        await body(children)
    except BaseException:
        for child in children:
            print(f"--- node {child.node_id} log (tail) ---\n{log_tail(child.log_path)}")
        raise
    finally:
        for child in children:
            child.kill()
            await child.wait()


# -- tests --------------------------------------------------------------------------------------


async def test_kill_9_all_voters_at_random_moments_loses_nothing(tmp_path: Any) -> None:
    seed = int(os.environ.get("KRAFT_QUORUM_SEED", time.time_ns() % 10**9))
    print(f"\nseed {seed} (KRAFT_QUORUM_SEED)")
    rng = random.Random(seed)
    acked: dict[int, bytes] = {}
    counter = 0
    rounds = 20
    in_flight: set[asyncio.Future[int | None]] = set()

    def on_ack(payload: bytes, future: asyncio.Future[int | None]) -> None:
        in_flight.discard(future)
        index = future.result()
        if index is not None:
            assert index not in acked, f"index {index} acknowledged twice"
            acked[index] = payload

    async def body(children: list[Child]) -> None:
        nonlocal counter
        for _ in range(rounds):
            for child in children:
                await child.start()
            round_started = time.monotonic()
            run_for = rng.uniform(0.6, 2.0)  # sometimes before the election ends
            kill_at = {c.node_id: run_for + rng.uniform(0, 0.3) for c in children}
            in_flight.clear()
            while any(c.alive for c in children):
                elapsed = time.monotonic() - round_started
                for child in children:
                    if child.alive and elapsed >= kill_at[child.node_id]:
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
            for child in children:
                await child.wait()

        # Recovery: all three again, one more entry, everyone applies it.
        for child in children:
            await child.start()
        leader = await wait_for_leader(children)
        final_index = await leader.append("final", b"final")
        assert final_index is not None
        await wait_until_async(
            lambda: all(c.commits and c.commits[-1][0] >= final_index for c in children),
            "every voter to apply the final entry",
            15,
        )

        final = dict(leader.commits)
        assert all(dict(c.commits) == final for c in children)
        assert final[final_index] == b"final"
        lost = {index: p for index, p in acked.items() if final.get(index) != p}
        assert not lost, f"acknowledged entries lost or changed: {sorted(lost.items())[:5]}"
        assert len(set(final.values())) == len(final), "an entry was committed twice"
        for child in children:
            for commits in child.incarnations:
                assert [index for index, _ in commits] == sorted(index for index, _ in commits)
                diverged = [(i, p) for i, p in commits if final.get(i) != p]
                assert not diverged, f"node {child.node_id} once applied {diverged[:3]}"
        print(
            f"\n{rounds} rounds of kill -9 of all voters: {len(acked)} acknowledged appends, "
            f"{len(final)} committed entries, none lost"
        )

    await run_with_children(tmp_path, body)


async def test_leader_kill_9_failover_and_commit_latency(tmp_path: Any) -> None:
    async def body(children: list[Child]) -> None:
        for child in children:
            await child.start()
        leader = await wait_for_leader(children)
        leader.bench = asyncio.get_running_loop().create_future()
        leader.send("BENCH 300")
        p50, p99 = await asyncio.wait_for(leader.bench, 60)
        before = await leader.append("before", b"before-failover")
        assert before is not None

        killed_at = time.monotonic()
        leader.kill()
        await leader.wait()
        survivors = [c for c in children if c is not leader]
        new_leader = await wait_for_leader(survivors)
        failover = time.monotonic() - killed_at
        after = await new_leader.append("after", b"after-failover")
        assert after is not None and after > before
        for child in survivors:
            await wait_until_async(
                lambda child=child: bool(child.commits) and child.commits[-1][0] >= after,
                f"voter {child.node_id} to apply the entry written after the failover",
                10,
            )
            committed = dict(child.commits)
            assert committed[before] == b"before-failover"
            assert committed[after] == b"after-failover"
        print(
            f"\n3 voter processes: commit latency p50 {p50:.2f} ms, p99 {p99:.2f} ms "
            f"(300 sequential appends on the leader); kill -9 of the leader -> new active "
            f"leader in {failover * 1000:.0f} ms"
        )

    await run_with_children(tmp_path, body)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _voters = {int(k): (v[0], int(v[1])) for k, v in json.loads(sys.argv[2]).items()}
    asyncio.run(child_main(int(sys.argv[1]), _voters, sys.argv[3]))
