"""Fixtures of the events service's tests, on the kraft pytest plugin's fixtures
(`kraft_bootstrap_servers`, `kraft_topic`, ...: installed with kraft, nothing to import)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from events_service.app import create_app
from events_service.settings import Settings


@pytest.fixture
def settings(
    kraft_bootstrap_servers: str, kraft_topic: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The service's settings, read from the environment as in production."""
    monkeypatch.setenv("EVENTS_BOOTSTRAP_SERVERS", kraft_bootstrap_servers)
    monkeypatch.setenv("EVENTS_TOPIC", kraft_topic)
    monkeypatch.setenv("EVENTS_GROUP_ID", f"worker-{kraft_topic}")
    return Settings.from_env()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The API, served on 127.0.0.1 with its producer connected."""
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        yield client
