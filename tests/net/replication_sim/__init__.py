"""A seeded, in-process simulation of one partition on three brokers, a controller and a
producer, linked by a faulty network.

What is real: each broker is a real `Broker` over a real `LogManager` in its own directory
(segments, indexes, checkpoints, leader-epoch cache; crash recovery when it restarts), so
becoming leader or follower (`Broker.on_metadata_change`), the high watermark and ISR rules
(`Partition`), the AlterPartition requests and their answers (`Broker.isr_changes`,
`isr_changes_answered`), the replica manager and its purgatories
(`ReplicaManager.append_records` for the producer's acks=all appends, `fetch_messages` for
followers' long polls, `DelayedProduce` and `DelayedFetch` completed by partition changes and
expired on the simulated clock) and the follower's fetch protocol (`ReplicaFetcherManager`,
`build_fetch_request`, `apply_fetch_response`: truncation by DivergingEpoch, append, high
watermark) are the broker's own code. The controller runs the
real commands — `Controller` and `ControllerService`'s command builders over
`kraft.controller.replication` (registration, fencing after the session timeout, unfencing,
controlled shutdown, elections, ELR, AlterPartition checks, preferred leaders) — on a real
`MetadataImage`; brokers build their own images from the encoded records they fetch.
Requests and responses cross the network encoded with the real codec.

What is simulated, on the shared simulation kernel (`tests.sim`): time (one clock, injected
everywhere in milliseconds), the event loop (the kernel's event heap), the network (the
kernel's directed links: per-link delay, loss, slowness and cuts, either direction; each
link delivers in order, like the TCP connection it stands for), the broker lifecycle
(register, heartbeat, unfence once caught up, controlled shutdown — `BrokerLifecycle`
without sockets), the controller's request plumbing (`ControllerService` without sockets;
one controller that never fails) and the purgatories' timer (`ReplicaManager.wake_at`, on
the simulated clock). A crash drops a broker's memory (its files stay as a killed process
leaves them: written, not necessarily flushed) and the restart recovers the logs from disk;
a clean restart shuts the logs down first.

A run: warm-up, then faults (crashes, clean restarts, isolated nodes, brokers that stop
hearing the controller, cut, lossy and slow links; each seed weighs them differently and
picks min.insync.replicas and how fast metadata spreads) under a steady acks=all workload,
then every fault healed and time to recover. After every event the checker asserts:
- the high watermark a leader exposes never goes back during its leadership;
- every batch below any leader's high watermark is committed: no offset ever holds two
  different committed batches, and every replica's log below its own high watermark holds
  exactly the committed batches (byte for byte, partitionLeaderEpoch included);
- every acks=all produce answered with success is committed at its offset.
After healing: the ISR is all three replicas again, every replica's log equals the leader's
byte for byte, all of it below the high watermark, and holds every committed batch and every
acknowledged produce.

Modules: `model` (the cluster's shape, Kafka's timers scaled down, the run's plan), `world`
(the kernel, the network, the faults, the run), `controller`, `brokers` (brokers, their
fetchers and the producing client), `checker` (the invariants).

Seeds: `KRAFT_SIM_SEEDS=N` runs N seeds instead of the default, `KRAFT_SIM_SEED=S` one (see
tests/net/test_replication_sim.py); a failure names the seed and the step, with the state
and the last events, and `run_simulation(seed, root)` replays it exactly.
"""

from tests.net.replication_sim.model import Plan, SimulationFailure, Timing
from tests.net.replication_sim.world import Outcome, Sim, run_simulation

__all__ = ["Outcome", "Plan", "Sim", "SimulationFailure", "Timing", "run_simulation"]
