"""One proxied TCP connection: two links, each a pipeline of bounded steps.

    client ──upstream link──▶ upstream server        upstream server ──downstream link──▶ client

    link:  reader ─▶ [stage inbox ─▶ toxic] ─▶ ... ─▶ sink ─▶ writer

The reader reads chunks from its source socket, each toxic stage takes from its inbox and
emits to the next inbox, the writer writes the sink to the destination socket. Every inbox is
bounded in bytes (one chunk may overshoot), so a stalled step stops the reader and TCP flow
control pushes back on the sender: memory per link is bounded whatever the toxics do.

Toxics change on live links: a new toxic is appended at the end of the chain (Toxiproxy's
order); an updated one restarts its task (re-rolling its toxicity); a removed one hands what
it held, then its inbox, to the next step, so nothing is lost and order is kept. This works
because a step's task is only ever suspended at an `await`, and every step changes its state
only after its last `await` (see `toxics`).

End of stream: the reader turns EOF (or a read error) into `None`, which flows through the
toxics; the writer then closes its destination, which is the other link's source, so the
other link ends after it has delivered what it still carries. A write error closes both
sockets at once. The connection is finished when all its tasks are.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from random import Random
from typing import Any

from kraft.chaos.toxiproxy.toxics import Chunk, Item, Toxic, behaviour, passthrough

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# Bytes an inbox holds before its writer waits: the most one step keeps per link.
CHANNEL_BYTES = 1024 * 1024
# SO_LINGER on with a zero timeout: close() sends RST and drops unsent data.
_LINGER_RESET = struct.pack("ii", 1, 0)


def _size(item: Item) -> int:
    return 0 if item is None else len(item.data)


class Channel:
    """A FIFO of chunks bounded in bytes, with waits for data and for room."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Item] = deque()
        self._bytes = 0
        self._capacity = capacity
        self._getters: list[asyncio.Future[None]] = []
        self._putters: list[asyncio.Future[None]] = []

    def has_room(self) -> bool:
        return self._bytes < self._capacity

    def push(self, item: Item) -> None:
        self._items.append(item)
        self._bytes += _size(item)
        _wake(self._getters)

    async def get(self) -> Item:
        while not self._items:
            await _wait(self._getters)
        item = self._items.popleft()
        self._bytes -= _size(item)
        if self.has_room():
            _wake(self._putters)
        return item

    async def wait_room(self) -> None:
        await _wait(self._putters)

    def take_all(self) -> list[Item]:
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        return items

    def wake_putters(self) -> None:
        """Wake a writer waiting for room so it looks again where its data should go."""
        _wake(self._putters)


async def _wait(waiters: list[asyncio.Future[None]]) -> None:
    future = asyncio.get_running_loop().create_future()
    waiters.append(future)
    try:
        await future
    finally:
        waiters.remove(future)


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for future in waiters:
        if not future.done():
            future.set_result(None)


class ToxicStage:
    """A toxic's place in one link (the `toxics.Stage` its behaviour runs on)."""

    def __init__(self, link: Link, toxic: Toxic) -> None:
        self.link = link
        self.toxic = toxic
        self.rng = link.connection.rng
        self.inbox = Channel(link.connection.capacity)
        self.held: deque[Item] = deque()
        self.transmitted = 0
        self.input_ended = False
        self.output_closed = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        # Toxicity is rolled per connection each time the toxic (re)starts, as by Toxiproxy.
        applies = self.rng.random() < self.toxic.toxicity
        self.task = self.link.connection.spawn(
            self._run(applies), f"{self.link.name} {self.toxic.name}"
        )

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self, applies: bool) -> None:
        if not self.output_closed:
            await (behaviour(self.toxic.type) if applies else passthrough)(self)
        # A toxic that ended the stream early (limit_data) drops the rest of its input.
        while self.output_closed and not self.input_ended:
            await self.take()
            self.consumed()

    async def take(self) -> Item:
        if not self.held:
            item = await self.inbox.get()
            self.held.append(item)
            self.input_ended = item is None
        return self.held[0]

    async def emit(self, item: Item) -> None:
        await self.link.emit(self, item)
        if item is None:
            self.output_closed = True

    def consumed(self) -> None:
        self.held.popleft()

    def close_connection(self, reset: bool = False) -> None:
        self.link.connection.close(reset)


class Link:
    """One direction of a connection: `source` → toxic stages → `dest`."""

    def __init__(
        self,
        connection: Connection,
        stream: str,
        source: asyncio.StreamReader,
        dest: asyncio.StreamWriter,
        toxics: list[Toxic],
    ) -> None:
        self.connection = connection
        self.stream = stream
        self.name = f"{connection.name} {stream}"
        self.source = source
        self.dest = dest
        self.stages = [ToxicStage(self, toxic) for toxic in toxics]
        self.sink = Channel(connection.capacity)
        self.done = False
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        for stage in self.stages:
            stage.start()
        self._reader = self.connection.spawn(self._read(), f"{self.name} reader")
        self.connection.spawn(self._write(), f"{self.name} writer")

    async def emit(self, sender: ToxicStage | None, item: Item) -> None:
        """Put `item` in the inbox after `sender` (the reader when None), waiting for room;
        the next step is looked up again after each wait, as toxics come and go."""
        while True:
            index = 0 if sender is None else self.stages.index(sender) + 1
            target = self.stages[index].inbox if index < len(self.stages) else self.sink
            if target.has_room():
                target.push(item)
                return
            await target.wait_room()

    def add_toxic(self, toxic: Toxic) -> None:
        if self.done:
            return
        stage = ToxicStage(self, toxic)
        self.stages.append(stage)
        stage.start()
        # A step waiting for room in the sink now sends to the new toxic instead.
        self.sink.wake_putters()

    def update_toxic(self, toxic: Toxic) -> None:
        for stage in self.stages:
            if stage.toxic.name == toxic.name:
                stage.toxic = toxic
                stage.stop()
                stage.start()

    def remove_toxic(self, name: str) -> None:
        index = next((i for i, s in enumerate(self.stages) if s.toxic.name == name), None)
        if index is None:
            return
        stage = self.stages.pop(index)
        stage.stop()
        if not stage.output_closed:
            following = self.stages[index].inbox if index < len(self.stages) else self.sink
            # What the toxic held came before its inbox, and both before anything its
            # predecessor emits from now on (which goes straight to `following`).
            for item in (*stage.held, *stage.inbox.take_all()):
                following.push(item)
        stage.held.clear()
        stage.inbox.wake_putters()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self.source.read(READ_SIZE)
            except OSError:
                data = b""  # a reset by the peer ends the stream like a close
            if not data:
                await self.emit(None, None)
                return
            await self.emit(None, Chunk(data, loop.time()))

    async def _write(self) -> None:
        try:
            while (item := await self.sink.get()) is not None:
                self.dest.write(item.data)
                await self.dest.drain()
        except OSError as e:
            logger.debug("toxiproxy %s: write failed: %s", self.name, e)
            self.connection.close()
            return
        self.dest.close()
        self.done = True
        # Nothing more can reach the destination: stop reading for it.
        if self._reader is not None:
            self._reader.cancel()
        for stage in self.stages:
            stage.stop()


class Connection:
    """A client connection and its upstream connection, joined by two links."""

    def __init__(
        self,
        name: str,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        toxics: list[Toxic],
        rng: Random,
        on_finished: Callable[[Connection], None],
        capacity: int = CHANNEL_BYTES,
    ) -> None:
        self.name = name
        self.rng = rng
        self.capacity = capacity
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()
        self._writers = (client[1], upstream[1])
        self._on_finished = on_finished
        self.links = {
            stream: Link(self, stream, source, dest, [t for t in toxics if t.stream == stream])
            for stream, source, dest in (
                ("upstream", client[0], upstream[1]),
                ("downstream", upstream[0], client[1]),
            )
        }

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"toxiproxy {name}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("toxiproxy %s: %s failed", self.name, task.get_name(), exc_info=error)
            self.close()
        if self.tasks:
            return
        if self.closed:
            self._on_finished(self)
        else:
            self.spawn(self._linger(), "close")

    async def _linger(self) -> None:
        # Both links ended and closed their destinations, which first flush what they still
        # buffer; the connection is finished when both sockets are closed.
        for writer in self._writers:
            try:
                await writer.wait_closed()
            except OSError:
                pass  # closed by a reset: closed all the same
        self.closed = True

    def add_toxic(self, toxic: Toxic) -> None:
        if not self.closed:
            self.links[toxic.stream].add_toxic(toxic)

    def update_toxic(self, toxic: Toxic) -> None:
        if not self.closed:
            self.links[toxic.stream].update_toxic(toxic)

    def remove_toxic(self, toxic: Toxic) -> None:
        if not self.closed:
            self.links[toxic.stream].remove_toxic(toxic.name)

    def close(self, reset: bool = False) -> None:
        """Close both sockets now, discarding buffers (RST with `reset`), and stop the links."""
        if self.closed:
            return
        self.closed = True
        for writer in self._writers:
            transport = writer.transport
            sock = transport.get_extra_info("socket")
            if reset and sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                except OSError:
                    pass  # already closed: nothing left to reset
            transport.abort()
        for task in list(self.tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
