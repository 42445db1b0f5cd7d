"""The dashboard's files as the node serves them: the page, its static files from the package
data, and nothing outside it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kraft.admin import dashboard

pytestmark = pytest.mark.unit


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    dashboard.setup(app, None)  # the page reads the API over HTTP, not the façade
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def test_index_is_the_page_with_a_same_origin_policy(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    body = await response.text()
    assert '<script src="/static/dashboard.js"' in body
    # No external URL: everything the page loads is its own node's.
    assert "http://" not in body and "https://" not in body


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_static_files_are_served_with_their_type(
    client: TestClient[web.Request, web.Application], name: str, content_type: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    text = await response.text()
    assert text.strip()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


async def test_script_never_writes_raw_html(
    client: TestClient[web.Request, web.Application],
) -> None:
    script = await (await client.get("/static/dashboard.js")).text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/dashboard.py",
        "/static/..%2Fdashboard.py",
        "/static/.hidden.js",
        "/static/../dashboard.py",
    ],
)
async def test_unknown_or_outside_files_are_not_found(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 404
