"""The toxiproxy server: the HTTP API and its proxies on one event loop.

`ToxiproxyServer` runs on the caller's loop (the CLI, `kraft chaos toxiproxy`).
`ThreadedToxiproxy` runs one on its own loop in a thread, for synchronous callers such as the
blocking `toxiproxy-python` client in tests. `toxiproxy_url()` is what a test suite uses: the
server named by `TOXIPROXY_URL` when set (a real Toxiproxy, say), else a threaded one of ours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from random import Random
from types import TracebackType

from aiohttp import web

from kraft.chaos.toxiproxy.api import ToxiproxyApi
from kraft.chaos.toxiproxy.proxy import join_host_port

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8474
URL_ENV = "TOXIPROXY_URL"


class ToxiproxyServer:
    """Toxiproxy's HTTP API on `host:port` (port 0: any free port, see `address`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, seed: int | None = None):
        self.host = host
        self.port = port
        # The toxicity rolls and jitter draw from this, so a seeded server repeats them.
        self.api = ToxiproxyApi(Random(seed))
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        """`host:port` the API is bound to (after `start`)."""
        return join_host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def start(self) -> None:
        runner = web.AppRunner(self.api.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host, self.port = runner.addresses[0][:2]
        logger.info("toxiproxy: API listening on %s", self.address)

    async def stop(self) -> None:
        """Stop the API, then every proxy and connection; returns when all are closed."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.api.close()
        logger.info("toxiproxy: stopped")


class ThreadedToxiproxy:
    """A `ToxiproxyServer` on its own event loop in a thread (daemon, joined by `stop`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None):
        self.server = ToxiproxyServer(host, port, seed)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the thread and return the API's URL once it listens."""
        self._thread = threading.Thread(target=self._main, name="toxiproxy", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"toxiproxy did not start within {timeout_s} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.url

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"toxiproxy did not stop within {timeout_s} s")
        self._thread = None

    def __enter__(self) -> ThreadedToxiproxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except OSError as e:
            self._error = e
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.stop()


@contextmanager
def toxiproxy_url(seed: int | None = None) -> Iterator[str]:
    """The URL of a toxiproxy server for the duration: `TOXIPROXY_URL` when set (nothing is
    started; the server must reach the same hosts as the caller), else ours in a thread on
    127.0.0.1, stopped on exit."""
    external = os.environ.get(URL_ENV)
    if external:
        yield external.rstrip("/")
        return
    with ThreadedToxiproxy(seed=seed) as server:
        yield server.url
