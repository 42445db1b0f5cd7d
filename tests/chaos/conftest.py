"""The toxiproxy server the chaos tests drive, through the real `toxiproxy-python` client.

One server per session: ours in a thread on 127.0.0.1, or the one `TOXIPROXY_URL` names (a real
Toxiproxy on this host). Each test gets the client pointed at it and leaves no proxy behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from toxiproxy import Toxiproxy

from kraft.chaos.toxiproxy import toxiproxy_url
from tests.chaos.netutil import EchoServer


@pytest.fixture(scope="session")
def toxiproxy_server() -> Iterator[str]:
    with toxiproxy_url() as url:
        yield url


@pytest.fixture
def toxi(toxiproxy_server: str) -> Iterator[Toxiproxy]:
    parts = urlsplit(toxiproxy_server)
    client = Toxiproxy()
    # The client keeps its address on a class: set it for every test.
    client.update_api_consumer(parts.hostname, parts.port)
    yield client
    client.destroy_all()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()
