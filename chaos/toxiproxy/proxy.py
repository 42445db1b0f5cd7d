"""A proxy: a listener whose every connection is relayed to one upstream through the toxics.

JSON form, as Toxiproxy writes it (toxics listed upstream first, each stream in the order the
toxics were added):

    {"name": "kafka_1", "listen": "127.0.0.1:41234", "upstream": "127.0.0.1:9092",
     "enabled": true, "toxics": [...]}

`listen` is the address asked for until the proxy first listens, then the address it is bound
to (a port 0 becomes the port the kernel chose; re-enabling a disabled proxy binds it again).
Disabling closes the listener and every live connection; changing `listen` or `upstream` does
too, then listens again if enabled. Toxics added, updated or removed apply to live connections
as well as new ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from random import Random
from typing import Any

from kraft.chaos.toxiproxy.errors import (
    bad_request_body,
    missing_field,
    toxic_already_exists,
    toxic_not_found,
)
from kraft.chaos.toxiproxy.link import READ_SIZE, Connection
from kraft.chaos.toxiproxy.toxics import Toxic, parse_toxic

logger = logging.getLogger(__name__)

# How long a new connection waits for its upstream before the client is closed.
DIAL_TIMEOUT_S = 10.0


def split_host_port(address: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) → (host, port); 400 when malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise bad_request_body(f"invalid address {address!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve_listen(address: str) -> str:
    """The address a listen field names, host resolved (IPv4 first), as Toxiproxy compares."""
    host, port = split_host_port(address)
    if not host:
        return address
    try:
        return join_host_port(str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise bad_request_body(f"cannot resolve {address!r}: {e}") from e
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return join_host_port(str(infos[0][4][0]), port)


class Proxy:
    def __init__(self, name: str, listen: str, upstream: str, rng: Random) -> None:
        split_host_port(listen)
        split_host_port(upstream)
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self._rng = rng
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._dials: set[asyncio.Task[None]] = set()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxic_list()],
        }

    def toxic_list(self) -> list[Toxic]:
        toxics = list(self.toxics.values())
        return [t for t in toxics if t.stream == "upstream"] + [
            t for t in toxics if t.stream == "downstream"
        ]

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Listen (OSError when the address cannot be bound); no-op when enabled."""
        if self.enabled:
            return
        host, port = split_host_port(self.listen)
        server = await asyncio.start_server(
            self._accepted, host or None, port, limit=READ_SIZE, reuse_address=True
        )
        bound = server.sockets[0].getsockname()
        self.listen = join_host_port(bound[0], bound[1])
        self._server = server
        self.enabled = True
        logger.info("toxiproxy %s: listening on %s for %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        """Close the listener and every connection, and wait until they are gone."""
        if not self.enabled:
            return
        self.enabled = False
        server, self._server = self._server, None
        assert server is not None
        server.close()
        for task in self._dials:
            task.cancel()
        connections = list(self._connections)
        for connection in connections:
            connection.close()
        await asyncio.gather(*self._dials, return_exceptions=True)
        await asyncio.gather(*(connection.wait_closed() for connection in connections))
        await server.wait_closed()
        logger.info(
            "toxiproxy %s: stopped listening on %s, %d connections closed",
            self.name,
            self.listen,
            len(connections),
        )

    async def differs(self, listen: str, upstream: str) -> bool:
        return upstream != self.upstream or await resolve_listen(listen) != self.listen

    async def update(self, body: object) -> None:
        """Apply a proxy update: fields left out keep their values."""
        if not isinstance(body, dict):
            raise bad_request_body("expected a JSON object")
        listen = body.get("listen", self.listen)
        upstream = body.get("upstream", self.upstream)
        enabled = body.get("enabled", self.enabled)
        if not isinstance(listen, str) or not isinstance(upstream, str):
            raise bad_request_body("listen and upstream must be strings")
        if not isinstance(enabled, bool):
            raise bad_request_body("enabled must be true or false")
        split_host_port(upstream)
        if await self.differs(listen or "127.0.0.1:0", upstream):
            await self.stop()
            self.listen = listen or "127.0.0.1:0"
            self.upstream = upstream
        if enabled:
            await self.start()
        else:
            await self.stop()

    def add_toxic(self, body: object) -> Toxic:
        toxic = parse_toxic(body)
        if toxic.name in self.toxics:
            raise toxic_already_exists()
        self.toxics[toxic.name] = toxic
        for connection in self._connections:
            connection.add_toxic(toxic)
        logger.info("toxiproxy %s: added toxic %s", self.name, toxic.to_json())
        return toxic

    def get_toxic(self, name: str) -> Toxic:
        toxic = self.toxics.get(name)
        if toxic is None:
            raise toxic_not_found()
        return toxic

    def update_toxic(self, name: str, body: object) -> Toxic:
        toxic = self.get_toxic(name)
        toxic.update(body)
        for connection in self._connections:
            connection.update_toxic(toxic)
        logger.info("toxiproxy %s: updated toxic %s", self.name, toxic.to_json())
        return toxic

    def remove_toxic(self, name: str) -> None:
        toxic = self.get_toxic(name)
        del self.toxics[name]
        for connection in self._connections:
            connection.remove_toxic(toxic)
        logger.info("toxiproxy %s: removed toxic %s", self.name, name)

    def remove_all_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(
            self._connect(reader, writer), name=f"toxiproxy {self.name} dial"
        )
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = join_host_port(peer[0], peer[1]) if peer else "?"
        host, port = split_host_port(self.upstream)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=READ_SIZE), DIAL_TIMEOUT_S
            )
        except (OSError, TimeoutError) as e:
            logger.warning(
                "toxiproxy %s: cannot reach upstream %s for client %s: %s",
                self.name,
                self.upstream,
                client,
                e,
            )
        finally:
            if upstream is None or not self.enabled:
                writer.transport.abort()
                if upstream is not None:
                    upstream[1].transport.abort()
        if upstream is None or not self.enabled:
            return
        connection = Connection(
            f"{self.name} {client}",
            (reader, writer),
            upstream,
            self.toxic_list(),
            self._rng,
            self._connections.discard,
        )
        self._connections.add(connection)
        connection.start()


def proxy_from_json(item: object, rng: Random, where: str = "") -> tuple[Proxy, bool]:
    """A new (not yet listening) proxy and whether it should be enabled, from a create body."""
    if not isinstance(item, dict):
        raise bad_request_body(f"expected a JSON object{where}")
    name, upstream = item.get("name") or "", item.get("upstream") or ""
    listen, enabled = item.get("listen") or "127.0.0.1:0", item.get("enabled", True)
    if not isinstance(name, str) or not isinstance(upstream, str):
        raise bad_request_body(f"name and upstream must be strings{where}")
    if not name:
        raise missing_field(f"name{where}")
    if not upstream:
        raise missing_field(f"upstream{where}")
    if not isinstance(listen, str):
        raise bad_request_body(f"listen must be a string{where}")
    if not isinstance(enabled, bool):
        raise bad_request_body(f"enabled must be true or false{where}")
    return Proxy(name, listen, upstream, rng), enabled
