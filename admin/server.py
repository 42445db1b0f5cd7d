"""The HTTP admin API server of a node: the aiohttp application and its middlewares.

Every error, ours or aiohttp's (unknown path, wrong method, body too large), leaves as JSON
`{"error": NAME, "message": TEXT}`, never an HTML page; an unexpected exception is a 500 of
the same shape and is logged. With a token set, writes (anything but GET/HEAD/OPTIONS) need
`Authorization: Bearer <token>`; reads stay open (the listener binds 127.0.0.1 by default).
Feature modules add their routes through `setup(app, api)`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from kraft.admin import api_v1, dashboard, metrics
from kraft.admin.app_keys import API_KEY
from kraft.admin.replies import MAX_BODY_BYTES, ApiError, error_response
from kraft.node_api import NodeApi

logger = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_KEY = web.AppKey("token", str)
TAG_KEY = web.AppKey("tag", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The feature modules whose routes every node serves (the lead adds metrics and dashboard).
FEATURES = (api_v1, metrics, dashboard)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    tag = request.app[TAG_KEY]
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.error, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        try:
            name = HTTPStatus(e.status).name
        except ValueError:
            name = f"HTTP_{e.status}"
        message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
        if e.status == 413:
            message = f"the request body is larger than {MAX_BODY_BYTES} bytes"
        return error_response(e.status, name, f"{request.method} {request.path}: {message}")
    except Exception:
        logger.exception("%sadmin API: %s %s failed", tag, request.method, request.path)
        return error_response(500, "INTERNAL_SERVER_ERROR", "unexpected error (see node log)")


@web.middleware
async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN_KEY]
    if token and request.method not in READ_METHODS:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "UNAUTHORIZED", "writes need an Authorization: Bearer token")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(403, "FORBIDDEN", "the bearer token is not this node's admin token")
    return await handler(request)


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%sadmin API: %s %s -> %d in %.1f ms",
                request.app[TAG_KEY],
                request.method,
                request.path_qs,
                status,
                (time.monotonic() - started) * 1000,
            )


def create_app(api: NodeApi, token: str = "", tag: str = "") -> web.Application:
    # Outermost first: the log sees the final status; auth errors are JSON too.
    app = web.Application(
        middlewares=[request_log, errors_as_json, bearer_token], client_max_size=MAX_BODY_BYTES
    )
    app[API_KEY] = api
    app[TOKEN_KEY] = token
    app[TAG_KEY] = tag
    for feature in FEATURES:
        feature.setup(app, api)
    return app


class AdminServer:
    """The admin API of one node on `host:port` (port 0: any free port; `url` tells)."""

    def __init__(self, api: NodeApi, host: str, port: int, token: str = "", tag: str = "") -> None:
        self.api = api
        self.host = host
        self.port = port
        self.tag = tag
        self.app = create_app(api, token, tag)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        logger.info("%sadmin API listening on %s", self.tag, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
