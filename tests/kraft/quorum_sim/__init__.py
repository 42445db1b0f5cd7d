"""A seeded, in-process simulation of the Raft metadata quorum (the harness; tests in
test_quorum_sim.py), on the shared simulation kernel (`tests.sim`: clock, event heap, links).

Modules: `config` (network profiles, configuration, report), `world` (time, chance and fsync
patched for pysyncobj; the journal's crash model), `network` (pysyncobj's transport over the
kernel's links, with connections), `simulation` (voters, faults, checks, runs).

It drives the real `RaftNode` — pysyncobj's Raft core with our `DurableJournal` writing real
files in a temporary directory — and replaces only what lies outside it:

- the transport: `SimTransport` implements pysyncobj's `Transport` interface (injected through
  `RaftNode(transport_factory=...)`) and hands every message, encoded with
  `kraft.quorum.codec` (so nodes never share an object), to a `SimNetwork` over the kernel's
  directed links. Like the
  authenticated transport, it runs the journal barrier (`sync`) before any message other than
  append_entries leaves, and a peer counts as connected while the sender's simulated
  connection to it is up;
- time and chance: `simulated_world` points pysyncobj's `monotonicTime` and every
  `time.monotonic` of pysyncobj and kraft.quorum at the kernel's `Clock`, pysyncobj's election
  timeouts at a seeded `random.Random`, and makes fsync a no-op — durability is modelled here
  instead: `SimJournal` remembers what ``raft.log`` held at its last `sync()`, and a crash
  with power loss rolls the file back to that, plus a random (possibly torn) part of what
  was appended since. A crash without power loss (kill -9) keeps everything written. A
  crash drops the `RaftNode` without destroying it (its descriptors are closed) and the
  restart builds a new one on the same directory.

The network (the links' `LinkProfile`):

- ``tcp`` models what the authenticated transport can do: per connection, delivery in order
  without loss or duplicates after a seeded delay; a partition holds messages back (TCP
  retransmits) until the sender's connection breaks ``fetch`` seconds later, which loses
  what was still in flight; what a crashing voter had sent is still delivered, and its peers
  notice the closed connection at once; a reachable peer is redialled within ~0.1-0.2 s;
- ``chaos`` adds what TCP never does — independent delays (reordering, also across
  connections), random loss, duplicates and occasional very late messages — which Raft
  itself must tolerate.

A run: start all voters, warm up, then for `fault_seconds` inject seeded faults (crash a
voter, with or without power loss, at a random point of its loop pass: before the tick,
after it, or after handling messages but before the journal sync; partition the voters in
two; isolate one; block one direction of a link; heal) while every active leader appends
unique payloads (stale leaders too, as a deposed controller would); then heal everything,
restart every voter and require liveness. Half the crashes lose power. Everything happens
on the kernel's event heap: messages arrive (into the receiver's socket buffer) at their
own times, faults, heals and restarts are timers, and a step event every `step_seconds`
mirrors one pass of `Quorum._run` per live voter, in a seeded order: its appends +
`replicate()`, `doTick(0)`, the messages waiting for it (the tick's poll),
`journal.sync()`.

Checked after every loop pass (and every message it handles):

- election safety: at most one node is ever leader (`_isLeader()`) in a term;
- state-machine safety: one global map index -> (term, payload) of every entry any node
  counted committed (its commit index passed it) or applied (`on_apply`); a node that
  commits or applies something else at an index fails the run. So does an incarnation that
  applies indexes out of order or with a gap;
- after healing, within `recovery_seconds`: an active leader exists and a new append commits
  and is applied on every voter, and every voter then has applied every entry of the map.

Replay: a failure raises `InvariantViolation` whose message starts with the seed, the step
and the simulated time, then lists the last events; `run_simulation(seed, config, dir)` with
the same config replays the run exactly (each link draws from its own seeded generator and
a voter handles what arrived in (time, sender, send order), so even pysyncobj's hash-ordered
sets do not change the outcome).
"""

from tests.kraft.quorum_sim.config import (
    CHAOS,
    PROFILES,
    TCP,
    InvariantViolation,
    SimConfig,
    SimReport,
)
from tests.kraft.quorum_sim.simulation import Simulation, run_simulation
from tests.kraft.quorum_sim.world import close_pipe_notifier, simulated_world

__all__ = [
    "CHAOS",
    "PROFILES",
    "TCP",
    "InvariantViolation",
    "SimConfig",
    "SimReport",
    "Simulation",
    "close_pipe_notifier",
    "run_simulation",
    "simulated_world",
]
