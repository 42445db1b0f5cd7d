"""Metadata snapshots of the Raft quorum: their size and cost, and what they save on restart.

    python bench/snapshot_bench.py [--dir D] [--topics N,N,...] [--changes C]

Everything runs in a fresh temporary directory under D (default `.bench-tmp/` in the
repository: the real disk, where /tmp may be a tmpfs), removed at the end.

  snapshot    for each N: an image of N topics x 10 partitions x 3 replicas;
              QuorumMetadataLog.snapshot() (image -> records -> bytes), the durable write
              (SnapshotStore.write: temp file, fsync, rename, fsync of the directory) and
              load_snapshot() (bytes -> records -> a fresh image, replaced in place).
  compaction  `retain` on a journal of 2 x 20,000 entries: dropping the prefix up to the older
              snapshot (the kept records are copied through a temp file + fsync + rename).
  restart     a single-voter quorum whose journal holds the creation of the largest N topics
              then C ISR changes (one entry each): time from Quorum.start() until the image
              holds the last entry — first without a snapshot (the whole journal is replayed;
              with snapshots on, this replay takes them as it goes), then again with them (the
              newest snapshot, then at most 20,000 entries).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kraft.metadata.image import MetadataImage  # noqa: E402
from kraft.metadata.publisher import MetadataPublisher  # noqa: E402
from kraft.metadata.quorum_log import QuorumMetadataLog  # noqa: E402
from kraft.metadata.record_log import encode_entry  # noqa: E402
from kraft.net.protocol import Message  # noqa: E402
from kraft.net.protocol import _generated as m  # noqa: E402
from kraft.quorum import Quorum  # noqa: E402
from kraft.quorum.journal import DurableJournal  # noqa: E402
from kraft.quorum.snapshots import SnapshotStore, retain  # noqa: E402

PARTITIONS = 10
REGULAR = b"\x00"
NO_OP = b"\x01"


def topic_entries(topics: int) -> list[tuple[uuid.UUID, list[Message]]]:
    out = []
    for n in range(topics):
        topic_id = uuid.uuid4()
        records: list[Message] = [m.TopicRecord(name=f"topic-{n:06d}", topic_id=topic_id)]
        for p in range(PARTITIONS):
            replicas = [(n + p + r) % 5 + 1 for r in range(3)]
            records.append(
                m.PartitionRecord(
                    partition_id=p,
                    topic_id=topic_id,
                    replicas=replicas,
                    isr=replicas,
                    leader=replicas[0],
                    leader_epoch=0,
                    partition_epoch=0,
                )
            )
        out.append((topic_id, records))
    return out


def bench_snapshot(root: str, topics: int) -> dict[str, float]:
    source = QuorumMetadataLog(MetadataPublisher(MetadataImage()))
    for i, (_, records) in enumerate(topic_entries(topics)):
        source.on_commit(i + 2, encode_entry(records))
    started = time.perf_counter()
    index, data = source.snapshot()
    taken = time.perf_counter() - started
    store = SnapshotStore(os.path.join(root, f"snap-{topics}"))
    started = time.perf_counter()
    store.write(index, 1, data)
    written = time.perf_counter() - started
    target = QuorumMetadataLog(MetadataPublisher(MetadataImage()))
    started = time.perf_counter()
    target.load_snapshot(index, data)
    loaded = time.perf_counter() - started
    assert len(target.publisher.image.topics) == topics
    return {
        "topics": topics,
        "partitions": topics * PARTITIONS,
        "bytes": len(data),
        "take_ms": taken * 1000,
        "write_ms": written * 1000,
        "load_ms": loaded * 1000,
    }


def bench_compaction(root: str, entries: int = 20_000) -> dict[str, float]:
    directory = os.path.join(root, "compaction")
    journal = DurableJournal(directory)
    journal.add(NO_OP, 1, 0)
    change = encode_entry([m.PartitionChangeRecord(partition_id=1, topic_id=uuid.uuid4())])
    for index in range(2, 2 * entries + 2):
        journal.add(REGULAR + change, index, 1)
    journal.sync()
    store = SnapshotStore(directory)
    store.write(entries, 1, b"older")
    store.write(2 * entries, 1, b"newer")
    size = journal._end
    started = time.perf_counter()
    retain(store, journal, keep=2)
    took = time.perf_counter() - started
    kept = len(journal)
    journal._destroy()
    return {"journal_bytes": size, "kept_entries": kept, "compact_ms": took * 1000}


def build_history(directory: str, topics: int, changes: int) -> int:
    journal = DurableJournal(directory)
    journal.add(NO_OP, 1, 0)
    journal.add(NO_OP, 2, 1)
    index = 3
    created = topic_entries(topics)
    for _, records in created:
        journal.add(REGULAR + encode_entry(records), index, 1)
        index += 1
    for c in range(changes):
        topic_id, _ = created[c % topics]
        isr = [(c + r) % 5 + 1 for r in range(2 + c % 2)]
        record = m.PartitionChangeRecord(partition_id=c % PARTITIONS, topic_id=topic_id, isr=isr)
        journal.add(REGULAR + encode_entry([record]), index, 1)
        index += 1
    journal.setCurrentTerm(1, "1")
    journal.setRaftCommitIndex(index - 1)
    journal._destroy()
    return index - 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def restart(directory: str, last: int) -> tuple[float, int]:
    """Seconds from start() until the image holds entry `last`; entries replayed."""
    qlog = QuorumMetadataLog(MetadataPublisher(MetadataImage()))
    replayed = 0
    done = asyncio.Event()

    def on_commit(index: int, entry: bytes) -> None:
        nonlocal replayed
        replayed += 1
        qlog.on_commit(index, entry)
        if index >= last:
            done.set()

    def on_snapshot(index: int, data: bytes) -> None:
        qlog.load_snapshot(index, data)
        if index >= last:
            done.set()

    quorum = Quorum(
        1,
        {1: ("127.0.0.1", free_port())},
        directory,
        b"bench",
        on_commit=on_commit,
        snapshot_provider=qlog.snapshot,
        on_snapshot=on_snapshot,
        election_timeout_ms=200,
    )
    started = time.perf_counter()
    await quorum.start()
    await done.wait()
    took = time.perf_counter() - started
    await asyncio.sleep(0.5)  # the snapshots this replay asked for are written (stop waits too)
    await quorum.stop()
    return took, replayed


async def bench_restart(root: str, topics: int, changes: int) -> dict[str, float]:
    directory = os.path.join(root, "restart")
    last = build_history(directory, topics, changes)
    before, replayed_before = await restart(directory, last)
    after, replayed_after = await restart(directory, last)
    return {
        "topics": topics,
        "entries": last,
        "before_s": before,
        "replayed_before": replayed_before,
        "after_s": after,
        "replayed_after": replayed_after,
        "snapshots": len(SnapshotStore(directory).list()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".bench-tmp")
    parser.add_argument("--topics", default="100,1000,10000")
    parser.add_argument("--changes", type=int, default=100_000)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="snapshot-bench-", dir=args.dir)
    try:
        counts = [int(t) for t in args.topics.split(",")]
        snapshots = [bench_snapshot(root, n) for n in counts]
        for s in snapshots:
            print(
                f"snapshot  {s['topics']:>6} topics ({s['partitions']:>6} partitions): "
                f"{s['bytes'] / 1e6:7.2f} MB, take {s['take_ms']:7.1f} ms, "
                f"write {s['write_ms']:6.1f} ms, load {s['load_ms']:7.1f} ms"
            )
        compaction = bench_compaction(root)
        print(
            f"compaction journal of {compaction['journal_bytes'] / 1e6:.1f} MB -> "
            f"{compaction['kept_entries']} entries kept in {compaction['compact_ms']:.1f} ms"
        )
        restarted = asyncio.run(bench_restart(root, max(counts), args.changes))
        print(
            f"restart   {restarted['entries']} entries ({restarted['topics']} topics): "
            f"no snapshot {restarted['before_s']:.2f} s ({restarted['replayed_before']} "
            f"replayed), from a snapshot {restarted['after_s']:.2f} s "
            f"({restarted['replayed_after']} replayed)"
        )
        print(json.dumps({"snapshot": snapshots, "compaction": compaction, "restart": restarted}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
