"""A live 3-node cluster whose nodes serve the admin API (a bearer token set for writes),
shared by the admin API tests of one session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kraft.launcher import LocalCluster

TOKEN = "admin-test-token"
TIMEOUT_S = 30.0


class Admin:
    """HTTP calls to one node's admin API (writes carry the token unless told otherwise)."""

    def __init__(self, url: str, token: str | None = TOKEN) -> None:
        self.url = url
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = "",
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        bearer = self.token if token == "" else token
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return requests.request(
            method,
            self.url + path,
            json=body if raw is None else None,
            data=raw,
            headers=headers,
            params=params,
            timeout=TIMEOUT_S,
        )

    def get(self, path: str, **kw: Any) -> Any:
        r = self.call("GET", path, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root: Path = tmp_path_factory.mktemp("admin-cluster")
    c = LocalCluster(
        root,
        nodes=3,
        extra={"kraft.admin.auth.token": TOKEN, "offsets.topic.num.partitions": "3"},
    )
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def admins(cluster: LocalCluster) -> dict[int, Admin]:
    return {i: Admin(url) for i, url in cluster.admin_urls.items()}


@pytest.fixture(scope="session")
def admin(admins: dict[int, Admin]) -> Admin:
    return admins[1]
