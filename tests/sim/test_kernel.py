"""The simulation kernel on its own: heap order, timers, the clock's views, link faults,
and that a seed replays."""

from __future__ import annotations

from tests.sim.kernel import US_PER_MS, Clock, Kernel, ms, seconds, stream
from tests.sim.links import LinkProfile, Message, Network


def test_events_run_in_time_order_and_ties_in_scheduling_order() -> None:
    kernel = Kernel()
    ran: list[str] = []
    kernel.after_ms(5, "late", lambda: ran.append("late"))
    kernel.after_ms(1, "tie 1", lambda: ran.append("tie 1"))
    kernel.after_ms(1, "tie 2", lambda: ran.append("tie 2"))
    kernel.after(0, "now", lambda: ran.append("now"))
    kernel.run_until(ms(3))
    assert ran == ["now", "tie 1", "tie 2"] and kernel.now == ms(3)
    kernel.run_until(ms(10))
    assert ran[-1] == "late" and kernel.step == 4
    assert [label for _, _, label in kernel.trace] == ["now", "tie 1", "tie 2", "late"]


def test_an_event_scheduled_by_an_event_at_the_same_time_runs_after_it() -> None:
    kernel = Kernel()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        kernel.after(0, "second", lambda: ran.append("second"))

    kernel.after(0, "first", first)
    kernel.after(0, "other", lambda: ran.append("other"))
    kernel.run_until(0)
    assert ran == ["first", "other", "second"]


def test_a_cancelled_timer_does_not_run() -> None:
    kernel = Kernel()
    ran: list[str] = []
    timer = kernel.after_ms(1, "cancelled", lambda: ran.append("cancelled"))
    kernel.after_ms(2, "kept", lambda: ran.append("kept"))
    timer.cancel()
    assert kernel.next_due() == ms(2)
    kernel.run_until(ms(5))
    assert ran == ["kept"] and kernel.step == 1


def test_run_until_stops_when_asked_and_checks_after_every_event() -> None:
    kernel = Kernel()
    counter = [0]
    checked: list[int] = []
    kernel.after_event = lambda: checked.append(kernel.now)
    for i in range(1, 6):
        kernel.after_ms(i, f"tick {i}", lambda: counter.__setitem__(0, counter[0] + 1))
    assert kernel.run_until(ms(100), stop=lambda: counter[0] == 3)
    assert kernel.now == ms(3) and checked == [ms(1), ms(2), ms(3)]
    assert not kernel.run_until(ms(100), stop=lambda: False)
    assert kernel.now == ms(100) and counter[0] == 5


def test_the_clock_reads_in_ms_and_seconds() -> None:
    clock = Clock(origin_s=1000.0)
    clock.us = seconds(1.5) + 250
    assert clock.ms() == 1500 and clock.seconds() == 1001.50025 == clock.monotonic()
    assert clock.elapsed_s == 1.50025 and US_PER_MS == ms(1)


def test_streams_are_seeded_per_concern() -> None:
    assert stream(1, "faults").random() == stream(1, "faults").random()
    assert stream(1, "faults").random() != stream(1, "elections").random()
    assert stream(1, "faults").random() != stream(2, "faults").random()


FIXED = LinkProfile("fixed", delay=(ms(1), ms(1)))


def network(
    profile: LinkProfile = FIXED, seed: int = 0
) -> tuple[Kernel, Network[str], list[tuple[int, str, int]]]:
    kernel = Kernel()
    got: list[tuple[int, str, int]] = []

    def deliver(message: Message[str]) -> bool:
        got.append((message.src, message.payload, kernel.now))
        return message.payload != "refused"

    return kernel, Network(kernel, seed, profile, deliver), got


def test_a_link_delivers_after_its_delay_in_order() -> None:
    kernel, net, got = network(LinkProfile("jitter", delay=(ms(1), ms(20))))
    for i in range(50):
        net.send(1, 2, str(i))
    kernel.run_until(seconds(1))
    assert [payload for _, payload, _ in got] == [str(i) for i in range(50)]
    times = [t for _, _, t in got]
    assert times == sorted(times) and ms(1) <= times[0] and times[-1] <= ms(20)
    assert (net.sent, net.delivered, net.lost) == (50, 50, 0)


def test_without_fifo_a_link_reorders_and_duplicates() -> None:
    profile = LinkProfile("chaos", delay=(ms(1), ms(50)), fifo=False, duplicate=0.3)
    kernel, net, got = network(profile)
    for i in range(100):
        net.send(1, 2, str(i))
    kernel.run_until(seconds(1))
    payloads = [payload for _, payload, _ in got]
    assert payloads != sorted(payloads, key=int) and len(payloads) == 100 + net.duplicated > 100


def test_a_blocked_link_loses_what_arrives_one_way_only_until_healed() -> None:
    kernel, net, got = network()
    assert net.block([(1, 2)]) == [(1, 2)] and net.block([(1, 2)]) == []
    net.send(1, 2, "cut")
    net.send(2, 1, "back")
    kernel.run_until(ms(5))
    assert [p for _, p, _ in got] == ["back"] and net.lost == 1
    assert net.faulty()["cut"] == [(1, 2)]
    net.heal()
    net.send(1, 2, "healed")
    kernel.run_until(ms(10))
    assert [p for _, p, _ in got] == ["back", "healed"]


def test_a_held_link_delivers_in_order_when_unblocked_and_loses_it_on_reset() -> None:
    tcp = LinkProfile("tcp", delay=(ms(1), ms(1)), hold_when_blocked=True)
    kernel, net, got = network(tcp)
    net.partition({1}, {2, 3})
    net.send(1, 2, "a")
    net.send(1, 2, "b")
    kernel.run_until(ms(5))
    assert got == []
    net.unblock([(1, 2)])
    assert [p for _, p, t in got] == ["a", "b"] and got[0][2] == ms(5)
    net.send(1, 3, "c")
    kernel.run_until(ms(10))
    net.reset(1, 3)  # held through the cut, lost with the connection
    net.send(1, 3, "d")  # on the new connection: held until the cut heals
    net.unblock([(1, 3)])
    kernel.run_until(ms(20))
    assert [p for _, p, _ in got] == ["a", "b", "d"] and net.lost == 1


def test_a_reset_loses_what_is_in_flight() -> None:
    kernel, net, got = network()
    net.send(1, 2, "in flight")
    net.reset(1, 2)
    kernel.run_until(ms(5))
    assert got == [] and net.lost == 1


def test_loss_slowness_and_refusal_are_counted() -> None:
    kernel, net, got = network()
    net.set_loss([(1, 2)], 1.0)
    net.set_slow([(2, 1)], ms(100))
    net.send(1, 2, "lost")
    for _ in range(20):
        net.send(2, 1, "slow")
    net.send(3, 1, "refused")
    kernel.run_until(seconds(1))
    assert max(t for src, _, t in got if src == 2) > ms(20)
    assert (net.sent, net.delivered, net.lost) == (22, 20, 2)
    assert net.faulty() == {"cut": [], "loss": [(1, 2)], "slow": [(2, 1)]}


def test_a_seed_replays_and_another_differs() -> None:
    profile = LinkProfile("chaos", delay=(ms(1), ms(50)), fifo=False, drop=0.1, duplicate=0.1)

    def run(seed: int) -> list[tuple[int, str, int]]:
        kernel, net, got = network(profile, seed)
        for i in range(60):
            # The order of sends across links must not matter: each link has its own stream.
            net.send(1 + i % 3, 0, str(i))
        kernel.run_until(seconds(1))
        return got

    assert run(4) == run(4) != run(5)
