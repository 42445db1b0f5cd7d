"""Plain TCP relays for process tests: one listening port on 127.0.0.1 per directed link,
forwarding to one target port and counting the bytes in each direction. The relays run on an
asyncio loop in a background thread, so a synchronous test can drive the cluster meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field


@dataclass
class Relay:
    """One directed link `name`: dialled at `port`, forwarding to `target_port`."""

    name: str
    target_port: int
    port: int = 0
    sent: int = 0  # bytes from the dialler to the target
    received: int = 0  # bytes from the target back to the dialler
    connections: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Relays:
    def __init__(self) -> None:
        self.relays: dict[str, Relay] = {}
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relays", daemon=True)
        self._thread.start()

    def add(self, name: str, target_port: int) -> Relay:
        relay = Relay(name, target_port)
        asyncio.run_coroutine_threadsafe(self._listen(relay), self._loop).result(5)
        self.relays[name] = relay
        return relay

    async def _listen(self, relay: Relay) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._forward(relay, reader, writer)
            finally:
                self._tasks.discard(task)

        relay._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        relay.port = relay._server.sockets[0].getsockname()[1]

    async def _forward(
        self, relay: Relay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", relay.target_port)
        except OSError:
            writer.close()
            return
        relay.connections += 1

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up:
                        relay.sent += len(data)
                    else:
                        relay.received += len(data)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    def close(self) -> None:
        async def shut() -> None:
            for relay in self.relays.values():
                if relay._server is not None:
                    relay._server.close()
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
