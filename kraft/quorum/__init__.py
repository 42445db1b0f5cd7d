"""The Raft metadata quorum: KRaft controllers' replicated log, on pysyncobj.

Entries are opaque bytes (encoded metadata record batches); every voter applies the committed
ones in order through `Quorum(on_commit=...)`. Only this package imports pysyncobj.

Shape (why a subclass, a journal and a transport, rather than pysyncobj as it comes):

- `raft.RaftNode` subclasses `SyncObj` and replaces exactly one of its methods (applying a
  committed entry), so the log holds our bytes instead of pickled method calls; the leader
  appends straight into the journal, only while it is the active leader of the caller's term
  (pysyncobj's command queue would forward a deposed leader's command to the new leader).
  The tick runs on the quorum's own thread (`autoTick=False`), so the wrapper can fsync and
  replicate between pysyncobj's steps. See raft.py for each internal relied on; all are
  pinned by tests.
- `journal.DurableJournal` implements pysyncobj's `Journal` interface on files of our own.
- `snapshots` keeps the caller's snapshots on disk and the rules that tie them to the journal
  (compaction, install, recovery); `RaftNode` sends and installs them in chunks over the
  transport, with the same codec as every other message.
- `transport.AuthenticatedTransport` implements pysyncobj's `Transport` interface.
- `quorum.Quorum` is the asyncio API.

The gaps of pysyncobj 0.3.17 this closes (each has a test in tests/kraft/test_quorum*.py):

1. Term and vote. pysyncobj does store them before sending a vote request or grant, but its
   meta file is written without fsync (and pickled). `DurableJournal.setCurrentTerm` writes
   ``raft.state`` through temp file + fsync + rename + directory fsync before returning, and
   pysyncobj calls it before sending either message.
2. The log. pysyncobj's `FileJournal` writes through an mmap it never flushes, rewrites the
   whole file in place to drop a prefix, and has no checksums. Worse, its log compaction
   (every 5000 entries or 300 s by default) drops the journal prefix while the snapshot, with
   no `fullDumpFile`, stays in memory: after a whole-cluster restart every node starts with
   a log that begins past index 2, `__applyLogEntries` finds nothing to apply from index 2,
   and the state is gone for good (`raftLastApplied` stays 1 while commits go on). Here
   pysyncobj's compaction is off (the state machine is the caller's, so a pysyncobj snapshot
   would hold nothing), the journal checksums every record and truncates a torn tail, and it
   is fdatasync'ed before every acknowledgement or vote leaves the node (in the transport)
   and before every tick (the leader counts itself toward the commit index at the start of a
   tick). No full dump is ever written or loaded, and peers may not send one. Compaction is
   the quorum's own instead: the caller's snapshot is made durable (temp file, fsync, rename,
   directory fsync, checksummed) before the journal prefix it replaces is dropped, the
   journal's first record is a durable log start, and a restart loads the newest valid
   snapshot and replays only what follows it (snapshots.py has the crash rules).
3. Binding. pysyncobj binds 0.0.0.0 unless `bindAddress` is set; the transport binds the
   configured address only.
4. Authentication. Without a password pysyncobj unpickles whatever reaches its port (pinned:
   a pickle from a stranger runs code). Its `password` option (Fernet: AES-CBC + HMAC, key
   from PBKDF2 with a fixed salt) does authenticate before unpickling, and costs little CPU
   (measured: ~6 us to encrypt and ~8 us to decrypt a small message, 16 ms of PBKDF2 at
   start) — but it needs the `cryptography` package (~18 MB with cffi), still unpickles
   whatever an authenticated peer sends, buffers a frame of any announced length (up to
   2 GiB) before checking it, checks replays with `assert` (gone under `python -O`), and
   answers utility commands (status, add/remove node, leadership transfer) on the Raft port.
   The transport instead does an HMAC-SHA256 challenge-response with the cluster secret
   (stdlib only), MACs every frame with a per-connection key and sequence number, caps the
   frame size, decodes with a small pickle-free codec, and accepts only the four Raft
   message types. It authenticates, it does not encrypt.
5. Latency. pysyncobj appends a command on its next tick and batches append entries on a
   timer. Here the loop wakes the Raft thread through a pipe, the leader sends append entries
   at once, and applies as soon as the acknowledgements arrive.
6. A leader that has not heard from a majority for `fetch_timeout_ms` steps down
   (pysyncobj's `leaderFallbackTimeout`, 30 s by default).
7. Elections start after a random 0.5–1 × `election_timeout_ms` without a leader (pysyncobj:
   0.4–1.4 s), and the transport reconnects every 0.1 s (pysyncobj: 5 s).
8. Late append_entries. pysyncobj cuts the log after an append_entries' last entry even
   without a conflict, so a message overtaken by a newer one of the same leader drops
   acknowledged entries, possibly committed ones. `RaftNode` hands such a message to
   pysyncobj without its log part. Found by the seeded simulation
   (tests/kraft/test_quorum_sim.py), which drives `RaftNode` over a simulated network.
9. Duplicated vote grants. pysyncobj counts grants, not voters; `RaftNode` counts a voter's
   grant once per term (the transport never duplicates a message, the simulation's chaos
   network does: with 5 voters it elected two leaders in a term).
10. Catching up a divergent follower. On a term mismatch pysyncobj's follower answers with
    the previous index, so the leader walks back one entry per round trip, and any
    heartbeat sent meanwhile restarts the walk: with round trips near the heartbeat interval,
    a follower 50 entries off took 27 s to catch up in the simulation. `RaftNode` answers
    with the first index of the conflicting term, as most Raft implementations do.

Left out: membership changes, pre-vote (a voter that was cut off can bump the term when it
comes back).
"""

from kraft.quorum.quorum import (
    CommitTimeout,
    EntryDiscarded,
    NotLeader,
    Quorum,
    QuorumError,
    QuorumStatus,
    QuorumStopped,
    VoterStatus,
)

__all__ = [
    "CommitTimeout",
    "EntryDiscarded",
    "NotLeader",
    "Quorum",
    "QuorumError",
    "QuorumStatus",
    "QuorumStopped",
    "VoterStatus",
]
