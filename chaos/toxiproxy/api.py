"""Toxiproxy's HTTP API over the proxies of one server (aiohttp).

Routes, status codes and messages are Toxiproxy's (github.com/Shopify/toxiproxy, `api.go`):

    GET    /version                         200 {"version": ...}
    POST   /reset                           204  every proxy enabled, every toxic removed
    GET    /proxies                         200 {name: proxy}
    POST   /proxies                         201 proxy; 409 name taken; 400
    POST   /populate                        201 {"proxies": [...]}: create, or replace those
                                                whose listen/upstream differ; 400
    GET    /proxies/{proxy}                 200 proxy; 404
    POST|PATCH /proxies/{proxy}             200 proxy (listen, upstream, enabled); 404, 400
    DELETE /proxies/{proxy}                 204; 404
    GET    /proxies/{proxy}/toxics          200 [toxic]; 404
    POST   /proxies/{proxy}/toxics          200 toxic (Toxiproxy answers 200 here, not 201);
                                                404, 409 name taken, 400
    GET    /proxies/{proxy}/toxics/{toxic}  200 toxic; 404
    POST|PATCH /proxies/{proxy}/toxics/{toxic}  200 toxic (attributes, toxicity); 404, 400
    DELETE /proxies/{proxy}/toxics/{toxic}  204; 404

Every error is JSON `{"error": message, "status": code}` (unknown routes and methods too); a
proxy that cannot bind its address answers 500 with the system's message, as Toxiproxy does.
Requests from browsers (`User-Agent: Mozilla/...`) are refused with 403, as by Toxiproxy: the
API has no authentication, and this keeps web pages from driving it.

Changes are serialised by one lock, so a request sees and leaves the proxies consistent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import metadata
from random import Random

from aiohttp import web

from kraft.chaos.toxiproxy.errors import (
    ApiError,
    bad_request_body,
    proxy_already_exists,
    proxy_not_found,
)
from kraft.chaos.toxiproxy.proxy import Proxy, proxy_from_json

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _version() -> str:
    try:
        return f"kraft-{metadata.version('kraft')}"
    except metadata.PackageNotFoundError:
        return "kraft"


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return error_response(403, "User agent not allowed")
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(e.status, e.reason.lower())
    except Exception:
        logger.exception("toxiproxy API: %s %s failed", request.method, request.path)
        return error_response(500, "internal error (see the server log)")


async def _body(request: web.Request) -> object:
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError as e:  # also UnicodeDecodeError
        raise bad_request_body(str(e)) from e


async def _start(proxy: Proxy) -> None:
    try:
        await proxy.start()
    except OSError as e:
        raise ApiError(500, f"listen tcp {proxy.listen}: {e.strerror or e}") from e


class ToxiproxyApi:
    """The proxies of one server and the HTTP handlers over them."""

    def __init__(self, rng: Random) -> None:
        self.proxies: dict[str, Proxy] = {}
        self._rng = rng
        self._lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[errors_as_json])
        app.add_routes(
            [
                web.get("/version", self.version),
                web.post("/reset", self.reset),
                web.get("/proxies", self.list_proxies),
                web.post("/proxies", self.create_proxy),
                web.post("/populate", self.populate),
                web.get("/proxies/{proxy}", self.show_proxy),
                web.post("/proxies/{proxy}", self.update_proxy),
                web.patch("/proxies/{proxy}", self.update_proxy),
                web.delete("/proxies/{proxy}", self.delete_proxy),
                web.get("/proxies/{proxy}/toxics", self.list_toxics),
                web.post("/proxies/{proxy}/toxics", self.create_toxic),
                web.get("/proxies/{proxy}/toxics/{toxic}", self.show_toxic),
                web.post("/proxies/{proxy}/toxics/{toxic}", self.update_toxic),
                web.patch("/proxies/{proxy}/toxics/{toxic}", self.update_toxic),
                web.delete("/proxies/{proxy}/toxics/{toxic}", self.delete_toxic),
            ]
        )
        return app

    async def close(self) -> None:
        """Stop every proxy: listeners and connections closed, their tasks finished."""
        async with self._lock:
            await asyncio.gather(*(proxy.stop() for proxy in self.proxies.values()))
            self.proxies.clear()

    def _proxy(self, request: web.Request) -> Proxy:
        proxy = self.proxies.get(request.match_info["proxy"])
        if proxy is None:
            raise proxy_not_found()
        return proxy

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": _version()})

    async def reset(self, request: web.Request) -> web.Response:
        async with self._lock:
            for proxy in self.proxies.values():
                await _start(proxy)
                proxy.remove_all_toxics()
        return web.Response(status=204)

    async def list_proxies(self, request: web.Request) -> web.Response:
        return web.json_response({name: p.to_json() for name, p in self.proxies.items()})

    async def create_proxy(self, request: web.Request) -> web.Response:
        body = await _body(request)
        async with self._lock:
            proxy, enabled = proxy_from_json(body, self._rng)
            if proxy.name in self.proxies:
                raise proxy_already_exists()
            if enabled:
                await _start(proxy)
            self.proxies[proxy.name] = proxy
        return web.json_response(proxy.to_json(), status=201)

    async def populate(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, list):
            raise bad_request_body("expected a JSON array of proxies")
        async with self._lock:
            # Every entry is checked before anything changes.
            wanted = [
                proxy_from_json(item, self._rng, f" at proxy {i}")
                for i, item in enumerate(body, start=1)
            ]
            populated: list[Proxy] = []
            try:
                for proxy, enabled in wanted:
                    existing = self.proxies.get(proxy.name)
                    if existing is not None:
                        if not await existing.differs(proxy.listen, proxy.upstream):
                            populated.append(existing)
                            continue
                        await existing.stop()
                        del self.proxies[proxy.name]
                    if enabled:
                        await _start(proxy)
                    self.proxies[proxy.name] = proxy
                    populated.append(proxy)
            except ApiError as e:
                # Toxiproxy's shape: the error, and the proxies populated before it.
                return web.json_response(
                    {
                        "error": e.message,
                        "status": e.status,
                        "proxies": [p.to_json() for p in populated],
                    },
                    status=e.status,
                )
        return web.json_response({"proxies": [p.to_json() for p in populated]}, status=201)

    async def show_proxy(self, request: web.Request) -> web.Response:
        return web.json_response(self._proxy(request).to_json())

    async def update_proxy(self, request: web.Request) -> web.Response:
        async with self._lock:
            proxy = self._proxy(request)
            body = await _body(request)
            try:
                await proxy.update(body)
            except OSError as e:
                raise ApiError(500, f"listen tcp {proxy.listen}: {e.strerror or e}") from e
            return web.json_response(proxy.to_json())

    async def delete_proxy(self, request: web.Request) -> web.Response:
        async with self._lock:
            proxy = self._proxy(request)
            await proxy.stop()
            del self.proxies[proxy.name]
        return web.Response(status=204)

    async def list_toxics(self, request: web.Request) -> web.Response:
        return web.json_response([t.to_json() for t in self._proxy(request).toxic_list()])

    async def create_toxic(self, request: web.Request) -> web.Response:
        async with self._lock:
            proxy = self._proxy(request)
            toxic = proxy.add_toxic(await _body(request))
            return web.json_response(toxic.to_json())

    async def show_toxic(self, request: web.Request) -> web.Response:
        toxic = self._proxy(request).get_toxic(request.match_info["toxic"])
        return web.json_response(toxic.to_json())

    async def update_toxic(self, request: web.Request) -> web.Response:
        async with self._lock:
            proxy = self._proxy(request)
            body = await _body(request)
            toxic = proxy.update_toxic(request.match_info["toxic"], body)
            return web.json_response(toxic.to_json())

    async def delete_toxic(self, request: web.Request) -> web.Response:
        async with self._lock:
            self._proxy(request).remove_toxic(request.match_info["toxic"])
        return web.Response(status=204)
