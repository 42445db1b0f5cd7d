"""The admin server's middlewares in-process (no node): JSON errors for everything, the
bearer token on writes, the DEBUG request log; and group lag clamped at the log start."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kraft.admin.server import MAX_BODY_BYTES, create_app
from kraft.cluster_groups import ClusterGroups, TopicPartition

pytestmark = pytest.mark.unit


class Broken:
    """A façade whose reads fail unexpectedly."""

    def health(self) -> Any:
        raise RuntimeError("boom")


async def _client(token: str = "") -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(Broken(), token, "[t] ")))  # type: ignore[arg-type]
    await client.start_server()
    return client


async def test_unexpected_errors_are_json_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kraft.admin.server")
    client = await _client()
    try:
        r = await client.get("/v1/health")
        assert r.status == 500 and r.content_type == "application/json"
        assert (await r.json())["error"] == "INTERNAL_SERVER_ERROR"
        assert any(
            rec.levelno == logging.ERROR and "boom" in (rec.exc_text or "")
            for rec in caplog.records
        )
        assert any("GET /v1/health -> 500" in rec.getMessage() for rec in caplog.records)
        r = await client.get("/nowhere")
        assert r.status == 404 and (await r.json())["error"] == "NOT_FOUND"
        r = await client.post("/v1/topics", data=b"x" * (MAX_BODY_BYTES + 1))
        assert r.status == 413 and (await r.json())["error"] == "REQUEST_ENTITY_TOO_LARGE"
        r = await client.get("/v1/openapi.json")
        assert r.status == 200 and (await r.json())["openapi"] == "3.1.0"
    finally:
        await client.close()


async def test_token_guards_writes_only() -> None:
    client = await _client("secret")
    try:
        r = await client.post("/v1/topics", json={"name": "t"})
        assert r.status == 401 and (await r.json())["error"] == "UNAUTHORIZED"
        r = await client.post(
            "/v1/topics", json={"name": "t"}, headers={"Authorization": "Bearer no"}
        )
        assert r.status == 403
        # Past the token, the body is checked (before any façade call).
        r = await client.post(
            "/v1/topics", json={"name": 5}, headers={"Authorization": "Bearer secret"}
        )
        assert r.status == 400 and "body.name" in (await r.json())["message"]
        assert (await client.get("/v1/openapi.json")).status == 200
    finally:
        await client.close()


class FixedOffsets(ClusterGroups):
    def __init__(self, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> None:
        super().__init__(lambda: None, lambda _: None)
        self.starts, self.ends = starts, ends

    async def list_offsets(self, partitions: Any, timestamp: int) -> dict[TopicPartition, int]:
        return dict(self.starts if timestamp == -2 else self.ends)


async def test_lag_counts_from_the_log_start_and_is_never_negative() -> None:
    tp0, tp1, tp2 = ("t", 0), ("t", 1), ("t", 2)
    groups = FixedOffsets({tp0: 50, tp1: 0, tp2: 0}, {tp0: 60, tp1: 5, tp2: 9})
    offsets = await groups._with_lag([(tp0, 10, None), (tp1, 8, None), (tp2, -1, None)])
    assert [o.lag for o in offsets] == [10, 0, None]
