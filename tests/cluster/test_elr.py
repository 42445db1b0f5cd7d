"""Process tests of eligible leader replicas (KIP-966) across broker restarts.

An RF=1 partition's only replica leaves the ISR when its broker stops, and stays eligible
(ELR). Restarted after a clean shutdown, the broker names its previous broker epoch (from its
clean-shutdown marker) and is elected from the ELR; restarted after kill -9 it does not, the
controller removes it from the ELR as possibly having lost writes, and it comes back only as
the partition's last known leader (Kafka's balanced recovery), then reports RECOVERED.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .conftest import Cluster, poll_until
from .test_cluster import FAST_SESSIONS, leaders

UNCLEAN_LINE = "registers after an unclean shutdown"


def test_a_clean_restart_keeps_the_replica_eligible_and_a_crash_does_not(
    make_cluster: Callable[..., Cluster],
) -> None:
    # Leaders check their ISR (and report recovery) every replica.lag.time.max.ms / 2.
    cluster = make_cluster(extra={**FAST_SESSIONS, "replica.lag.time.max.ms": "2000"})
    controller = cluster.wait_active_controller()
    topic = "elr"
    cluster.create_topic(controller, topic, 6, 1)
    cluster.wait_topic(topic, on=cluster.nodes)
    before = leaders(cluster.metadata(controller, [topic]), topic)
    victim = next(n for n in cluster.nodes if n != controller)
    led = sorted(p for p, (leader, _) in before.items() if leader == victim)
    assert led, f"broker {victim} leads no partition of {topic}: {before}"
    controller_log = cluster.nodes[controller].log_path

    def state() -> dict[int, tuple[int, list[int]]]:
        now = leaders(cluster.metadata(controller, [topic]), topic)
        return {p: now[p] for p in led}

    def back() -> bool:
        return state() == {p: (victim, [victim]) for p in led}

    # Clean: controlled shutdown, then a restart naming the epoch it had.
    node = cluster.nodes[victim]
    node.terminate()
    assert node.wait_exit(15.0) == 0
    poll_until(
        lambda: state() == {p: (-1, []) for p in led},
        10.0,
        f"partitions {led} to be leaderless with an empty ISR",
        on_timeout=cluster.logs,
    )
    node.start()
    node.wait_ready()
    poll_until(back, 10.0, f"broker {victim} to lead {led} again", on_timeout=cluster.logs)
    assert UNCLEAN_LINE not in controller_log.read_text(errors="replace")

    # Unclean: kill -9, fenced when its session expires, then a restart with no epoch.
    cluster.kill(victim)
    poll_until(
        lambda: state() == {p: (-1, []) for p in led},
        15.0,
        f"partitions {led} to lose broker {victim}",
        on_timeout=cluster.logs,
    )
    started = time.monotonic()
    node.start()
    node.wait_ready()
    poll_until(back, 10.0, f"broker {victim} to lead {led} again", on_timeout=cluster.logs)
    print(f"\nbroker {victim} back after kill -9 in {time.monotonic() - started:.2f} s")
    assert f"broker {victim} {UNCLEAN_LINE}" in controller_log.read_text(errors="replace")
    # Elected uncleanly (RECOVERING), it reported RECOVERED through AlterPartition.
    poll_until(
        lambda: "reporting recovery complete" in node.log_path.read_text(errors="replace"),
        10.0,
        f"broker {victim} to report its recovery",
        on_timeout=cluster.logs,
    )
