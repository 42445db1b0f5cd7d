"""The built-in dashboard: one static page at `/` that reads and drives the `/v1` admin API.

The page is plain HTML, CSS and JavaScript shipped as package data (`kraft/admin/static/`):
no build step, and nothing fetched from outside the node at run time (the Content Security
Policy says so to the browser too). Everything it shows comes from polling the node's own
admin API, so it holds no cluster logic and works on every node.
"""

from __future__ import annotations

import re
from importlib import resources

from aiohttp import web

from kraft.node_api import NodeApi

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only plain file names of the shipped kinds: no path separators, so no way out of static/.
_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg)$")
# Same-origin only: the page talks to its own node and loads nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes | None:
    if not _NAME.match(name):
        return None
    resource = resources.files("kraft.admin").joinpath("static", name)
    if not resource.is_file():
        return None
    return resource.read_bytes()


def _respond(name: str) -> web.Response:
    body = _read(name)
    if body is None:
        raise web.HTTPNotFound(
            text='{"error": "NOT_FOUND", "message": "no such static file"}',
            content_type="application/json",
        )
    suffix = name[name.rindex(".") :]
    return web.Response(
        body=body,
        content_type=None,
        headers={
            **HEADERS,
            "Content-Type": CONTENT_TYPES[suffix],
        },
    )


async def _index(request: web.Request) -> web.Response:
    return _respond("index.html")


async def _static(request: web.Request) -> web.Response:
    return _respond(request.match_info["name"])


def setup(app: web.Application, api: NodeApi) -> None:
    """Serve the page at `/` and its files at `/static/{name}`.

    `api` is the node's `NodeApi`, as every feature module's `setup` receives it; the
    dashboard does not use it (the page reads the API over HTTP like any client), and typing
    it `object` keeps this module from importing the façade, whose own imports of the node's
    internals the import-linter contract for `kraft.admin` counts against its importers."""
    del api
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
