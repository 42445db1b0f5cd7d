"""`/metrics`: the node's Prometheus metrics (text exposition format), for a scraper.

Everything comes from the façade: the node's own registry, with the consumer lag of the
groups coordinated here refreshed for the scrape (`NodeApi.metrics_text`)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from kraft.node_api import NodeApi


def setup(app: web.Application, api: NodeApi) -> None:
    async def metrics(request: web.Request) -> web.Response:
        body = await api.metrics_text()
        # The classic text format (0.0.4) every Prometheus version parses; the body of
        # generate_latest is valid in it. aiohttp refuses a charset inside content_type, so
        # the header is set whole.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    app.router.add_get("/metrics", metrics)
