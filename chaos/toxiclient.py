"""A small typed client of Toxiproxy's HTTP API, for the chaos cluster's own calls.

It speaks the API as Toxiproxy documents it, so it drives ours (`kraft.chaos.toxiproxy`) and a
real Toxiproxy (`TOXIPROXY_URL`) alike. The `toxiproxy-python` client is a test dependency with
its address on a class (one server per process) and a listing of every proxy before each
create; `ChaosCluster.toxiproxy()` still hands it out for users who want it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

REQUEST_TIMEOUT_S = 10.0


class ToxiproxyError(RuntimeError):
    """The API answered with an error status (the message carries it and the body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"toxiproxy: {status} {message}")
        self.status = status


class ToxiproxyClient:
    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise ToxiproxyError(e.code, e.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def version(self) -> str:
        req = urllib.request.Request(self.url + "/version")
        with urllib.request.urlopen(req, timeout=self.timeout) as response:
            return str(response.read().decode().strip())

    def proxies(self) -> dict[str, dict[str, Any]]:
        return dict(self._call("GET", "/proxies"))

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> str:
        """Create an enabled proxy; the address it listens on (the bound port for port 0)."""
        created = self._call(
            "POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream}
        )
        return str(created["listen"])

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Disabling closes the listener and every live connection; enabling listens again on
        the same address."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/proxies/{proxy}/toxics"))

    def add_toxic(
        self,
        proxy: str,
        name: str,
        toxic_type: str,
        stream: str,
        attributes: dict[str, int],
        toxicity: float = 1.0,
    ) -> None:
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": name,
                "type": toxic_type,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            },
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic; one already gone is not an error (heals may overlap)."""
        try:
            self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")
        except ToxiproxyError as e:
            if e.status != 404:
                raise
