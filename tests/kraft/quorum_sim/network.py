"""The voters' network: pysyncobj's `Transport` over the kernel's links, with the
connections the authenticated transport would keep.

Messages travel on the kernel's directed links (`tests.sim.links`) and wait in the
receiver's socket buffer (`SimNetwork.take`) until its next loop pass. On top of the links,
each sender keeps one connection per peer, as `kraft.quorum.transport` does: it comes up
~0.1-0.2 s after the peer is reachable (redial, handshake), breaks at once when the peer's
process dies and `fetch` (+0-0.3 s) after a partition starts (silence), and pysyncobj hears
of both (`connected`, `disconnected`). With a TCP profile a connection that breaks loses
what was still in flight or held back on it, and nothing sent on an earlier connection
arrives on the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.node import Node
from pysyncobj.transport import Transport

from kraft.quorum import codec
from kraft.quorum.transport import ALLOWED_MESSAGES
from tests.kraft.quorum_sim.config import InvariantViolation
from tests.sim.kernel import Kernel, seconds, stream
from tests.sim.links import LinkProfile, Message, Network


class SimTransport(Transport):  # pysyncobj is untyped (Any)
    """pysyncobj's `Transport` over a `SimNetwork` (one per incarnation of a voter)."""

    def __init__(
        self,
        syncobj: Any,
        self_node: Node,
        other_nodes: Any,
        *,
        network: SimNetwork,
        barrier: Callable[[], None],
    ) -> None:
        super().__init__(syncobj, self_node, other_nodes)
        self.node_id = int(self_node.id)
        self._network = network
        self._barrier = barrier
        self._peers = {int(node.id): node for node in other_nodes}
        self._connected: set[int] = set()
        self._heard: dict[int, float] = {}
        self.alive = True
        network.attach(self)

    # pysyncobj's side

    def send(self, node: Node, message: Any) -> bool:
        peer = int(node.id)
        if not self.alive or peer not in self._connected:
            return False
        kind = message.get("type")
        if kind not in ALLOWED_MESSAGES:
            raise InvariantViolation(f"node {self.node_id} sent a {kind!r} message")
        if kind != "append_entries":
            self._barrier()
        self._network.send(self.node_id, peer, codec.encode(message))
        return True

    def is_connected(self, peer: str) -> bool:
        return int(peer) in self._connected

    def last_heard(self, peer: str) -> float | None:
        return self._heard.get(int(peer))

    @property
    def listen_address(self) -> None:
        return None

    def destroy(self) -> None:
        self.crash()

    # the network's side

    def crash(self) -> None:
        self.alive = False
        self.setOnMessageReceivedCallback(None)
        self.setOnNodeConnectedCallback(None)
        self.setOnNodeDisconnectedCallback(None)

    def connected(self, peer: int) -> None:
        self._connected.add(peer)
        self._onNodeConnected(self._peers[peer])

    def disconnected(self, peer: int) -> None:
        self._connected.discard(peer)
        self._onNodeDisconnected(self._peers[peer])

    def receive(self, peer: int, data: bytes, now: float) -> None:
        self._heard[peer] = now
        self._onMessageReceived(self._peers[peer], codec.decode(data))


@dataclass
class _Connection:
    """The sender's connection to one peer."""

    up: bool = False
    change_at: int | None = None  # when `up` flips, if the current conditions last


class SimNetwork:
    def __init__(
        self, kernel: Kernel, seed: int, ids: list[int], profile: LinkProfile, fetch: float
    ) -> None:
        self.kernel = kernel
        self.fetch = fetch
        self.ids = ids
        self.links: Network[bytes] = Network(kernel, seed, profile, self._arrived)
        self.connections = {(a, b): _Connection() for a in ids for b in ids if a != b}
        self._timing = {(a, b): stream(seed, f"connection/{a}->{b}") for a, b in self.connections}
        self.transports: dict[int, SimTransport] = {}
        self.buffers: dict[int, list[Message[bytes]]] = {i: [] for i in ids}
        self.handled = self.dropped = 0  # handed to a voter; lost in a dead voter's buffer

    @property
    def profile(self) -> LinkProfile:
        return self.links.profile

    @profile.setter
    def profile(self, profile: LinkProfile) -> None:
        self.links.profile = profile

    def alive(self, node_id: int) -> bool:
        transport = self.transports.get(node_id)
        return transport is not None and transport.alive

    def attach(self, transport: SimTransport) -> None:
        self.transports[transport.node_id] = transport

    def detach(self, node_id: int) -> None:
        """The voter's process died: its connections are gone (what it had sent stays in
        flight), nothing more reaches it, what waited in its socket buffer is lost."""
        transport = self.transports.pop(node_id, None)
        if transport is not None:
            transport.crash()
        for (a, _), connection in self.connections.items():
            if a == node_id:
                connection.up = False
                connection.change_at = None
        self.dropped += len(self.buffers[node_id])
        self.buffers[node_id].clear()

    def send(self, src: int, dst: int, data: bytes) -> None:
        self.links.send(src, dst, data, "message")

    def _arrived(self, message: Message[bytes]) -> bool:
        if not self.alive(message.dst):
            return False
        self.buffers[message.dst].append(message)
        return True

    def reachable(self, a: int, b: int) -> bool:
        cut = self.links.cut
        return (a, b) not in cut and (b, a) not in cut and self.alive(b)

    def update_links(self) -> None:
        """Connect and disconnect as the authenticated transport would, given who is up and
        which links are blocked."""
        now = self.kernel.now
        tcp = self.profile.fifo
        for (a, b), connection in self.connections.items():
            sender = self.transports.get(a)
            if sender is None or not sender.alive:
                continue
            reachable = self.reachable(a, b)
            if connection.up == reachable:
                connection.change_at = None
                continue
            if connection.change_at is None:
                rng = self._timing[(a, b)]
                if connection.up:  # a dead peer's socket closes at once; silence takes `fetch`
                    wait = 0.001 if not self.alive(b) else self.fetch + rng.uniform(0, 0.3)
                else:  # redial every 0.1 s, then the handshake
                    wait = rng.uniform(0.1, 0.2)
                connection.change_at = now + seconds(wait)
            if now < connection.change_at:
                continue
            connection.change_at = None
            connection.up = not connection.up
            if tcp:  # a connection that breaks loses what is in flight; a new one starts empty
                self.links.reset(a, b)
            if connection.up:
                sender.connected(b)
            else:
                sender.disconnected(b)

    def take(self, dst: int) -> list[Message[bytes]]:
        """What waits in `dst`'s socket buffer, in arrival order (on one link, in send
        order), taken out of it."""
        buffer = self.buffers[dst]
        if not buffer:
            return []
        buffer.sort(key=lambda m: (m.due, m.src, m.seq))
        taken = list(buffer)
        buffer.clear()
        self.handled += len(taken)
        return taken
