"""Directed links between simulated nodes, with per-link faults, delivering through the
kernel's event heap.

A message sent from `src` to `dst` travels on the link (src, dst). The network's
`LinkProfile` says how every link behaves (delay, order, loss, duplicates, very late
messages); each link adds its own faults on top: blocked (a cut, one direction), a loss
probability and an extra delay (a slow link). Each link draws from its own seeded generator,
so the order in which a node sends to several peers (a hash-ordered set in pysyncobj, say)
does not change what happens on any one link.

On arrival the network hands the message to its `deliver` handler, which says whether the
destination took it (a node that is down does not). A blocked link loses what arrives on it,
unless the profile holds messages back (`hold_when_blocked`, a TCP connection retransmitting
through a partition): then they wait, in order, until the link is unblocked, or are lost
when the connection is `reset` (what was in flight on it is lost too).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

from tests.sim.kernel import Kernel, stream

P = TypeVar("P")
LinkId = tuple[int, int]


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How every link behaves; times in kernel units (µs, see `kernel.ms`/`kernel.seconds`)."""

    name: str
    delay: tuple[int, int]  # one way, drawn uniformly
    fifo: bool = True  # each link delivers in the order it was sent (one TCP connection)
    hold_when_blocked: bool = False  # a blocked link holds messages back instead of losing them
    drop: float = 0.0  # per message
    duplicate: float = 0.0  # per message: delivered twice, independently delayed
    late: float = 0.0  # per message: delayed further by `late_delay`
    late_delay: tuple[int, int] = (0, 0)


@dataclass(slots=True)
class Message(Generic[P]):
    src: int
    dst: int
    seq: int  # per link, in send order
    generation: int  # the link's generation when sent (see `Network.reset`)
    due: int  # kernel time of arrival
    payload: P


@dataclass(eq=False, slots=True)
class Link(Generic[P]):
    src: int
    dst: int
    rng: random.Random
    blocked: bool = False
    loss: float = 0.0  # a lossy link, on top of the profile's drop
    slow: int = 0  # a slow link: up to this much extra delay (µs)
    generation: int = 0
    last_due: int = 0
    sent: int = 0
    held: deque[Message[P]] = field(default_factory=deque)


class Network(Generic[P]):
    """The directed links of one run. `deliver(message)` returns whether `message.dst` took
    it; the counters say what became of every message sent."""

    def __init__(
        self,
        kernel: Kernel,
        seed: int,
        profile: LinkProfile,
        deliver: Callable[[Message[P]], bool],
    ) -> None:
        self.kernel = kernel
        self.seed = seed
        self.profile = profile
        self.deliver = deliver
        self.links: dict[LinkId, Link[P]] = {}
        self.cut: set[LinkId] = set()  # the blocked links, for quick lookups
        self.sent = self.delivered = self.lost = self.duplicated = 0

    def link(self, src: int, dst: int) -> Link[P]:
        link = self.links.get((src, dst))
        if link is None:
            link = Link(src, dst, stream(self.seed, f"link/{src}->{dst}"))
            self.links[(src, dst)] = link
        return link

    # -- sending and arriving ------------------------------------------------------------------

    def send(self, src: int, dst: int, payload: P, label: str = "") -> None:
        link = self.link(src, dst)
        profile = self.profile
        rng = link.rng
        self.sent += 1
        if profile.drop and rng.random() < profile.drop:
            self.lost += 1
            return
        if link.loss and rng.random() < link.loss:
            self.lost += 1
            return
        copies = 2 if profile.duplicate and rng.random() < profile.duplicate else 1
        self.duplicated += copies - 1
        now = self.kernel.now
        label = label or f"message {src}->{dst}"
        for _ in range(copies):
            due = now + rng.randint(*profile.delay)
            if profile.late and rng.random() < profile.late:
                due += rng.randint(*profile.late_delay)
            if link.slow:
                due += rng.randint(0, link.slow)
            if profile.fifo:
                due = link.last_due = max(due, link.last_due)
            link.sent += 1
            message = Message(src, dst, link.sent, link.generation, due, payload)
            self.kernel.at(due, label, partial(self._arrive, link, message))

    def _arrive(self, link: Link[P], message: Message[P]) -> None:
        if message.generation != link.generation:
            self.lost += 1  # sent on a connection that no longer exists
        elif link.held or link.blocked:
            if self.profile.hold_when_blocked:
                link.held.append(message)  # behind what is already held: in order
            else:
                self.lost += 1
        else:
            self._hand_over(message)

    def _hand_over(self, message: Message[P]) -> None:
        if self.deliver(message):
            self.delivered += 1
        else:
            self.lost += 1

    # -- faults --------------------------------------------------------------------------------

    def blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self.cut

    def block(self, links: Iterable[LinkId]) -> list[LinkId]:
        """Cut these directed links; returns those that were not cut already."""
        fresh = []
        for src, dst in links:
            link = self.link(src, dst)
            if not link.blocked:
                link.blocked = True
                self.cut.add((src, dst))
                fresh.append((src, dst))
        return fresh

    def unblock(self, links: Iterable[LinkId]) -> None:
        """Heal these cuts: what the links held back arrives now, in order."""
        for src, dst in links:
            link = self.link(src, dst)
            link.blocked = False
            self.cut.discard((src, dst))
            while link.held and not link.blocked:
                self._hand_over(link.held.popleft())

    def partition(self, *groups: Iterable[int]) -> list[LinkId]:
        """Cut every link between different groups, both directions."""
        sets = [sorted(set(g)) for g in groups]
        pairs = [(g1, g2) for i, g1 in enumerate(sets) for j, g2 in enumerate(sets) if i != j]
        return self.block((a, b) for g1, g2 in pairs for a in g1 for b in g2)

    def reset(self, src: int, dst: int) -> None:
        """The connection behind the link is replaced: what is held or still in flight on it
        is lost."""
        link = self.link(src, dst)
        link.generation += 1
        self.lost += len(link.held)
        link.held.clear()

    def set_loss(self, links: Iterable[LinkId], probability: float) -> None:
        for src, dst in links:
            self.link(src, dst).loss = probability

    def set_slow(self, links: Iterable[LinkId], extra: int) -> None:
        for src, dst in links:
            self.link(src, dst).slow = extra

    def heal(self, links: Iterable[LinkId] | None = None) -> None:
        """Clear every fault of these links (of all links by default)."""
        chosen = list(self.links) if links is None else list(links)
        self.set_loss(chosen, 0.0)
        self.set_slow(chosen, 0)
        self.unblock(chosen)

    def faulty(self) -> dict[str, list[LinkId]]:
        """The links with each kind of fault, for failure messages."""
        links = sorted(self.links.items())
        return {
            "cut": sorted(self.cut),
            "loss": [k for k, link in links if link.loss],
            "slow": [k for k, link in links if link.slow],
        }
