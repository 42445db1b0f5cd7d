"""Toxiproxy's HTTP API, route by route, with the real `toxiproxy-python` client where it has a
call for it and plain HTTP (`requests`, which the client uses) for status codes and bodies."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from tests.chaos.netutil import EchoServer, connect, ours_only, round_trip

TIMEOUT_S = 10


class Http:
    """The API over plain HTTP: status code and JSON body of each call."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None, raw: str | None = None) -> Any:
        response = requests.request(
            method,
            self.url + path,
            json=body if raw is None else None,
            data=raw,
            timeout=TIMEOUT_S,
        )
        return response


@pytest.fixture
def http(toxiproxy_server: str, toxi: Toxiproxy) -> Http:
    # `toxi` as well: its teardown removes the proxies these tests create.
    return Http(toxiproxy_server)


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    assert message in body["error"], body


def assert_still_serving(http: Http) -> None:
    assert http.call("GET", "/version").status_code == 200


def test_version(toxi: Toxiproxy, http: Http) -> None:
    assert toxi.running()
    assert b"version" in toxi.version()
    response = http.call("GET", "/version")
    assert response.status_code == 200
    assert response.json()["version"]


def test_create_proxy_listens_on_the_real_port(
    toxi: Toxiproxy, echo: EchoServer, http: Http
) -> None:
    proxy = toxi.create(upstream=echo.address, name="echo", listen="127.0.0.1:0")
    host, _, port = proxy.listen.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert proxy.enabled is True and proxy.upstream == echo.address
    shown = http.call("GET", "/proxies/echo")
    assert shown.status_code == 200
    assert shown.json() == {
        "name": "echo",
        "listen": proxy.listen,
        "upstream": echo.address,
        "enabled": True,
        "toxics": [],
    }
    assert set(toxi.proxies()) == {"echo"}
    assert toxi.get_proxy("echo").listen == proxy.listen
    with connect(proxy.listen) as sock:
        round_trip(sock, b"through the proxy")


def test_create_answers_201_with_the_proxy(http: Http, echo: EchoServer) -> None:
    body = {"name": "raw", "upstream": echo.address, "listen": "127.0.0.1:0"}
    response = http.call("POST", "/proxies", body)
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "raw" and created["enabled"] is True
    assert not created["listen"].endswith(":0")
    listed = http.call("GET", "/proxies")
    assert listed.status_code == 200 and listed.json() == {"raw": created}


def test_duplicate_proxy_is_409(toxi: Toxiproxy, http: Http, echo: EchoServer) -> None:
    toxi.create(upstream=echo.address, name="dup")
    with pytest.raises(ProxyExists):
        toxi.create(upstream=echo.address, name="dup")
    body = {"name": "dup", "upstream": echo.address, "listen": "127.0.0.1:0"}
    assert_error(http.call("POST", "/proxies", body), 409, "proxy already exists")
    assert_still_serving(http)


@pytest.mark.parametrize(
    ("body", "raw", "message"),
    [
        ({"upstream": "127.0.0.1:1"}, None, "missing required field: name"),
        ({"name": "x"}, None, "missing required field: upstream"),
        (None, '{"name": "x", "upstream": ', "bad request body"),
        (None, "", "bad request body"),
        ({"name": 7, "upstream": "127.0.0.1:1"}, None, "bad request body"),
    ],
    ids=["no-name", "no-upstream", "malformed-json", "empty-body", "name-not-a-string"],
)
def test_bad_proxy_is_400(http: Http, body: Any, raw: str | None, message: str) -> None:
    assert_error(http.call("POST", "/proxies", body, raw), 400, message)
    assert http.call("GET", "/proxies").json() == {}
    assert_still_serving(http)


@ours_only
@pytest.mark.parametrize(
    "body",
    [
        [{"name": "x", "upstream": "127.0.0.1:1"}],
        {"name": "x", "upstream": "no-port"},
        {"name": "x", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:99999"},
        {"name": "x", "upstream": "127.0.0.1:1", "enabled": "yes"},
    ],
    ids=["not-an-object", "upstream-without-port", "listen-port-out-of-range", "enabled-string"],
)
def test_malformed_proxy_fields_are_400(http: Http, body: Any) -> None:
    # Toxiproxy accepts some of these and fails later (500, or at connect time).
    assert_error(http.call("POST", "/proxies", body), 400, "bad request body")
    assert_still_serving(http)


def test_address_in_use_is_500(http: Http, echo: EchoServer) -> None:
    body = {"name": "busy", "upstream": echo.address, "listen": echo.address}
    assert_error(http.call("POST", "/proxies", body), 500, "listen tcp")
    assert http.call("GET", "/proxies").json() == {}
    assert_still_serving(http)


def test_unknown_proxy_is_404(toxi: Toxiproxy, http: Http) -> None:
    for method, path in [
        ("GET", "/proxies/nope"),
        ("POST", "/proxies/nope"),
        ("PATCH", "/proxies/nope"),
        ("DELETE", "/proxies/nope"),
        ("GET", "/proxies/nope/toxics"),
        ("POST", "/proxies/nope/toxics"),
        ("GET", "/proxies/nope/toxics/t"),
        ("PATCH", "/proxies/nope/toxics/t"),
        ("DELETE", "/proxies/nope/toxics/t"),
    ]:
        assert_error(http.call(method, path, {"enabled": False}), 404, "proxy not found")
    assert toxi.get_proxy("nope") is None
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/nope/toxics")
    with pytest.raises(NotFound):
        APIConsumer.delete("/proxies/nope")
    assert_still_serving(http)


def test_disable_and_enable(toxi: Toxiproxy, echo: EchoServer, http: Http) -> None:
    proxy = toxi.create(upstream=echo.address, name="flip")
    proxy.disable()
    assert toxi.get_proxy("flip").enabled is False
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen)
    proxy.enable()
    # Re-enabled on the port it had: clients keep their address.
    assert toxi.get_proxy("flip").listen == proxy.listen
    with connect(proxy.listen) as sock:
        round_trip(sock, b"back")
    patched = http.call("PATCH", "/proxies/flip", {"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert http.call("POST", "/proxies/flip", {"enabled": True}).json()["enabled"] is True


def test_create_disabled(http: Http, echo: EchoServer) -> None:
    body = {"name": "off", "upstream": echo.address, "listen": "127.0.0.1:0", "enabled": False}
    response = http.call("POST", "/proxies", body)
    assert response.status_code == 201
    assert response.json()["enabled"] is False
    enabled = http.call("PATCH", "/proxies/off", {"enabled": True}).json()
    assert enabled["enabled"] is True and not enabled["listen"].endswith(":0")
    with connect(enabled["listen"]) as sock:
        round_trip(sock, b"on")


def test_update_upstream_and_listen(toxi: Toxiproxy, echo: EchoServer, http: Http) -> None:
    other = EchoServer()
    try:
        proxy = toxi.create(upstream="127.0.0.1:1", name="move")
        moved = http.call("PATCH", "/proxies/move", {"upstream": other.address})
        assert moved.status_code == 200 and moved.json()["upstream"] == other.address
        with connect(moved.json()["listen"]) as sock:
            round_trip(sock, b"to the other upstream")
        relisten = http.call("PATCH", "/proxies/move", {"listen": "127.0.0.1:0"}).json()
        assert relisten["listen"] != proxy.listen and relisten["enabled"] is True
        with connect(relisten["listen"]) as sock:
            round_trip(sock, b"new port")
        assert_error(http.call("PATCH", "/proxies/move", raw="{"), 400, "bad request body")
    finally:
        other.close()


def test_delete_proxy(toxi: Toxiproxy, echo: EchoServer, http: Http) -> None:
    proxy = toxi.create(upstream=echo.address, name="gone")
    assert proxy.destroy() is True
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen)
    toxi.create(upstream=echo.address, name="gone")
    response = http.call("DELETE", "/proxies/gone")
    assert response.status_code == 204 and response.content == b""
    assert_error(http.call("DELETE", "/proxies/gone"), 404, "proxy not found")


def test_toxic_routes(toxi: Toxiproxy, echo: EchoServer, http: Http) -> None:
    proxy = toxi.create(upstream=echo.address, name="tox")
    proxy.add_toxic(type="latency", attributes={"latency": 5, "jitter": 1})
    proxy.add_toxic(type="limit_data", stream="upstream", name="cap", toxicity=0.5)
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "cap"}
    assert toxics["latency_downstream"].attributes == {"latency": 5, "jitter": 1}
    assert toxics["cap"].stream == "upstream" and toxics["cap"].toxicity == 0.5
    # Listed upstream first, each stream in the order added; attributes default to 0.
    listed = http.call("GET", "/proxies/tox/toxics")
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()] == ["cap", "latency_downstream"]
    assert listed.json()[0]["attributes"] == {"bytes": 0}
    assert http.call("GET", "/proxies/tox").json()["toxics"] == listed.json()

    created = http.call(
        "POST", "/proxies/tox/toxics", {"type": "slicer", "attributes": {"average_size": 8}}
    )
    # Toxiproxy answers a new toxic with 200 (a new proxy with 201).
    assert created.status_code == 200
    assert created.json() == {
        "name": "slicer_downstream",
        "type": "slicer",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"average_size": 8, "size_variation": 0, "delay": 0},
    }
    shown = http.call("GET", "/proxies/tox/toxics/slicer_downstream")
    assert shown.status_code == 200 and shown.json() == created.json()

    updated = http.call(
        "PATCH",
        "/proxies/tox/toxics/slicer_downstream",
        {"attributes": {"delay": 100}, "toxicity": 0.25},
    )
    assert updated.status_code == 200
    assert updated.json()["attributes"] == {"average_size": 8, "size_variation": 0, "delay": 100}
    assert updated.json()["toxicity"] == 0.25
    posted = http.call("POST", "/proxies/tox/toxics/cap", {"attributes": {"bytes": 64}})
    assert posted.status_code == 200 and posted.json()["attributes"] == {"bytes": 64}

    assert proxy.destroy_toxic("latency_downstream") is True
    deleted = http.call("DELETE", "/proxies/tox/toxics/cap")
    assert deleted.status_code == 204 and deleted.content == b""
    assert [t.name for t in proxy.toxics().values()] == ["slicer_downstream"]
    for method in ("GET", "PATCH", "DELETE"):
        assert_error(http.call(method, "/proxies/tox/toxics/cap", {}), 404, "toxic not found")


def test_bad_toxics(toxi: Toxiproxy, echo: EchoServer, http: Http) -> None:
    proxy = toxi.create(upstream=echo.address, name="bad")
    proxy.add_toxic(type="latency", name="lag")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="no_such_toxic")
    with pytest.raises(ProxyExists):  # the client's name for any 409
        proxy.add_toxic(type="timeout", name="lag")
    path = "/proxies/bad/toxics"
    assert_error(http.call("POST", path, {"type": "warp"}), 400, "invalid toxic type")
    assert_error(http.call("POST", path, {"type": "latency", "stream": "sideways"}), 400, "stream")
    assert_error(http.call("POST", path, {"type": "timeout", "name": "lag"}), 409, "toxic already")
    assert_error(http.call("POST", path, raw="{not json"), 400, "bad request body")
    bad_attributes = {"type": "latency", "name": "x", "attributes": {"latency": "slow"}}
    assert_error(http.call("POST", path, bad_attributes), 400, "bad request body")
    assert_error(
        http.call("PATCH", f"{path}/lag", {"attributes": {"jitter": "lots"}}), 400, "bad request"
    )
    assert [t["name"] for t in http.call("GET", path).json()] == ["lag"]
    assert http.call("GET", f"{path}/lag").json()["attributes"] == {"latency": 0, "jitter": 0}
    assert_still_serving(http)


@ours_only
@pytest.mark.parametrize(
    "body",
    [
        {"type": "latency", "attributes": {"latency": -1}},
        {"type": "latency", "attributes": {"latency": 1.5}},
        {"type": "latency", "attributes": [1]},
        {"type": "latency", "toxicity": 2},
        {"type": "latency", "toxicity": "all"},
        ["latency"],
    ],
    ids=["negative", "fraction", "attributes-list", "toxicity-above-1", "toxicity-text", "list"],
)
def test_bad_toxic_fields_are_400(toxi: Toxiproxy, echo: EchoServer, http: Http, body: Any) -> None:
    toxi.create(upstream=echo.address, name="strict")
    assert_error(http.call("POST", "/proxies/strict/toxics", body), 400, "bad request body")
    assert http.call("GET", "/proxies/strict/toxics").json() == []


def test_reset(toxi: Toxiproxy, echo: EchoServer, http: Http) -> None:
    one = toxi.create(upstream=echo.address, name="one")
    two = toxi.create(upstream=echo.address, name="two")
    one.add_toxic(type="latency", attributes={"latency": 1000})
    two.disable()
    assert toxi.reset() is True
    response = http.call("POST", "/reset")
    assert response.status_code == 204 and response.content == b""
    proxies = toxi.proxies()
    assert proxies["two"].enabled is True
    assert one.toxics() == {} and two.toxics() == {}
    with connect(two.listen) as sock:
        round_trip(sock, b"after reset")


def test_populate(http: Http, echo: EchoServer) -> None:
    wanted = [
        {"name": "a", "upstream": echo.address, "listen": "127.0.0.1:0"},
        {"name": "b", "upstream": echo.address, "listen": "127.0.0.1:0", "enabled": False},
    ]
    response = http.call("POST", "/populate", wanted)
    assert response.status_code == 201
    populated = {p["name"]: p for p in response.json()["proxies"]}
    assert list(populated) == ["a", "b"]
    assert populated["a"]["enabled"] is True and not populated["a"]["listen"].endswith(":0")
    assert populated["b"]["enabled"] is False
    a_listen = populated["a"]["listen"]
    http.call("POST", "/proxies/a/toxics", {"type": "latency"})

    # Same listen and upstream: left as it is, toxics and all.
    same = http.call(
        "POST", "/populate", [{"name": "a", "upstream": echo.address, "listen": a_listen}]
    )
    assert same.status_code == 201
    assert same.json()["proxies"][0]["toxics"][0]["name"] == "latency_downstream"

    # Another upstream: replaced by a new proxy (no toxics).
    other = EchoServer()
    try:
        replaced = http.call(
            "POST", "/populate", [{"name": "a", "upstream": other.address, "listen": a_listen}]
        )
        assert replaced.status_code == 201
        proxy = replaced.json()["proxies"][0]
        assert proxy["upstream"] == other.address and proxy["toxics"] == []
        assert proxy["listen"] == a_listen
        with connect(a_listen) as sock:
            round_trip(sock, b"replaced")
    finally:
        other.close()
    assert set(http.call("GET", "/proxies").json()) == {"a", "b"}


def test_bad_populate_changes_nothing(http: Http, echo: EchoServer) -> None:
    wanted = [
        {"name": "fine", "upstream": echo.address, "listen": "127.0.0.1:0"},
        {"upstream": echo.address},
    ]
    assert_error(
        http.call("POST", "/populate", wanted), 400, "missing required field: name at proxy 2"
    )
    assert_error(http.call("POST", "/populate", raw="[{"), 400, "bad request body")
    assert_error(http.call("POST", "/populate", {"name": "x"}), 400, "bad request body")
    assert http.call("GET", "/proxies").json() == {}
    assert_still_serving(http)


@ours_only
def test_errors_are_json_everywhere(http: Http) -> None:
    assert_error(http.call("GET", "/no/such/route"), 404, "not found")
    assert_error(http.call("PUT", "/proxies"), 405, "method not allowed")
    browser = requests.get(
        http.url + "/proxies", headers={"User-Agent": "Mozilla/5.0"}, timeout=TIMEOUT_S
    )
    assert_error(browser, 403, "User agent not allowed")
    assert_still_serving(http)
