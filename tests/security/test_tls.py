"""TLS in-process: contexts from every store type, a KafkaServer and KafkaConnection over
TLS, mTLS principals, handshake failures (closed, logged by peer, rate-limited, nothing else
disturbed) and the start-up refusals that name their key."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kraft.config import ConfigError, build_config
from kraft.net.client import KafkaConnection
from kraft.net.protocol import (
    API_KEYS,
    ApiVersionsRequest,
    ApiVersionsResponse,
    Message,
    RequestHeader,
    encode_request,
)
from kraft.net.server import Connection, KafkaServer, PeerFaultLog
from kraft.security.tls import (
    client_context,
    node_tls,
    openssl_cipher_name,
    server_context,
    ssl_settings,
)

from .certs import PASSWORD, Pki, make_pki

KINDS = ("JKS", "PKCS12", "PEM", "PEM-inline")


class Handler:
    """Answers ApiVersions and remembers each connection's principal."""

    def __init__(self) -> None:
        self.principals: list[str] = []

    async def handle(self, header: RequestHeader, request: Message, conn: Connection) -> Message:
        self.principals.append(conn.principal)
        return ApiVersionsResponse(
            api_keys=[ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=3)]
        )

    def api_versions_range(self) -> tuple[int, int]:
        return (0, API_KEYS[18].max_version)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def settings(props: dict[str, str], listener: str = "SSL") -> Any:
    return ssl_settings(props, listener)


async def serve(ctx: ssl.SSLContext | None) -> tuple[KafkaServer, Handler]:
    handler = Handler()
    server = KafkaServer(handler, "127.0.0.1", 0, listener="SSL", ssl_context=ctx)
    await server.start()
    return server, handler


@pytest.fixture
async def stopper() -> AsyncIterator[list[KafkaServer]]:
    servers: list[KafkaServer] = []
    yield servers
    for s in servers:
        await s.stop()


async def api_versions(port: int, ctx: ssl.SSLContext | None, host: str = "127.0.0.1") -> None:
    conn = KafkaConnection(host, port, ssl=ctx)
    try:
        async with asyncio.timeout(5):
            await conn.connect()
        assert conn.versions[18] == (0, 3)
    finally:
        await conn.close()


@pytest.mark.parametrize("keystore", KINDS)
@pytest.mark.parametrize("truststore", KINDS)
async def test_every_store_type_serves_and_dials(
    pki: Pki, keystore: str, truststore: str, stopper: list[KafkaServer]
) -> None:
    leaf = pki.leaf("broker")
    server_ctx = server_context(settings(pki.keystore(leaf, keystore, "server")))
    client_ctx = client_context(settings(pki.truststore(truststore)))
    server, _ = await serve(server_ctx)
    stopper.append(server)
    await api_versions(server.port, client_ctx)


async def test_mtls_required_refuses_a_client_without_a_certificate(
    pki: Pki, stopper: list[KafkaServer], caplog: pytest.LogCaptureFixture
) -> None:
    props = {
        **pki.keystore(pki.leaf("broker"), "JKS", "server"),
        **pki.truststore("JKS"),
        "ssl.client.auth": "required",
    }
    server, handler = await serve(server_context(settings(props)))
    stopper.append(server)
    anonymous = client_context(settings(pki.truststore("PEM")))
    with pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)):
        await api_versions(server.port, anonymous)
    client = pki.leaf("alice")
    with_cert = client_context(
        settings({**pki.truststore("PEM"), **pki.keystore(client, "PKCS12", "alice")})
    )
    await api_versions(server.port, with_cert)
    assert handler.principals == ["User:CN=alice,OU=" + handler.principals[0].split(",OU=")[1]]
    assert handler.principals[0].startswith("User:CN=alice,")
    assert "TLS handshake failed" in caplog.text


async def test_mtls_requested_lets_a_client_without_a_certificate_in_as_anonymous(
    pki: Pki, stopper: list[KafkaServer]
) -> None:
    props = {
        **pki.keystore(pki.leaf("broker"), "PEM", "server"),
        **pki.truststore("PEM"),
        "ssl.client.auth": "requested",
    }
    server, handler = await serve(server_context(settings(props)))
    stopper.append(server)
    await api_versions(server.port, client_context(settings(pki.truststore("PEM"))))
    assert handler.principals == ["User:ANONYMOUS"]


async def test_host_name_is_checked_unless_identification_is_off(
    pki: Pki, stopper: list[KafkaServer]
) -> None:
    other = pki.ca.issue_cert("broker.example.com", common_name="broker")
    server, _ = await serve(server_context(settings(pki.keystore(other, "PEM", "server"))))
    stopper.append(server)
    checking = client_context(settings(pki.truststore("PEM")))
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await api_versions(server.port, checking)
    lenient = client_context(
        settings({**pki.truststore("PEM"), "ssl.endpoint.identification.algorithm": ""})
    )
    await api_versions(server.port, lenient)


async def test_enabled_protocols_that_do_not_meet_fail_the_handshake(
    pki: Pki, stopper: list[KafkaServer]
) -> None:
    props = {**pki.keystore(pki.leaf("broker"), "PEM", "server")}
    server, _ = await serve(server_context(settings({**props, "ssl.enabled.protocols": "TLSv1.3"})))
    stopper.append(server)
    old = client_context(settings({**pki.truststore("PEM"), "ssl.enabled.protocols": "TLSv1.2"}))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await api_versions(server.port, old)
    await api_versions(server.port, client_context(settings(pki.truststore("PEM"))))


async def test_cipher_suites_by_java_name_restrict_tls12(
    pki: Pki, stopper: list[KafkaServer]
) -> None:
    # trustme's keys are ECDSA.
    suite = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    assert openssl_cipher_name("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384") == (
        "ECDHE-RSA-AES256-GCM-SHA384"
    )
    assert openssl_cipher_name("TLS_RSA_WITH_AES_128_CBC_SHA") == "AES128-SHA"
    props = {
        **pki.keystore(pki.leaf("broker"), "PEM", "server"),
        "ssl.enabled.protocols": "TLSv1.2",
        "ssl.cipher.suites": suite,
    }
    server_ctx = server_context(settings(props))
    assert [c["name"] for c in server_ctx.get_ciphers() if c["protocol"] == "TLSv1.2"] == [
        "ECDHE-ECDSA-AES256-GCM-SHA384"
    ]
    server, _ = await serve(server_ctx)
    stopper.append(server)
    await api_versions(server.port, client_context(settings(pki.truststore("PEM"))))
    with pytest.raises(ConfigError, match="ssl.cipher.suites: unknown cipher suite TLS_NOPE"):
        server_context(settings({**props, "ssl.cipher.suites": "TLS_NOPE_WITH_NOTHING"}))


def api_versions_frame() -> bytes:
    return bytes(encode_request(ApiVersionsRequest(), 0, 1, "plain"))


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data`, then read until the server closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def test_bad_handshakes_close_only_their_connection_with_a_line_naming_the_peer(
    pki: Pki, stopper: list[KafkaServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kraft.net.server")
    props = {**pki.keystore(pki.leaf("broker"), "JKS", "server")}
    server, _ = await serve(server_context(settings(props)))
    plain, _ = await serve(None)
    stopper += [server, plain]
    trusted = client_context(settings(pki.truststore("PEM")))
    # A client that stays connected meanwhile keeps being answered.
    steady = KafkaConnection("127.0.0.1", server.port, ssl=trusted)
    async with asyncio.timeout(5):
        await steady.connect()
    try:
        # A plaintext client on the TLS port, and garbage.
        assert await raw_exchange(server.port, api_versions_frame()) == b""
        assert await raw_exchange(server.port, b"\x00" * 64 + b"garbage" * 10) == b""
        # An untrusted certificate (another CA) and an expired one.
        stranger = make_pki(Path(pki.root) / "other")
        with pytest.raises(ssl.SSLCertVerificationError):
            await api_versions(server.port, client_context(settings(stranger.truststore("PEM"))))
        expired_props = pki.keystore(pki.leaf("old", expired=True), "PEM", "expired")
        expired, _ = await serve(server_context(settings(expired_props)))
        stopper.append(expired)
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            await api_versions(expired.port, trusted)
        # A TLS client on the plaintext port.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await api_versions(plain.port, trusted)
        response = await steady.send(ApiVersionsRequest(), 0)
        assert isinstance(response, ApiVersionsResponse)
    finally:
        await steady.close()
    lines = [r.getMessage() for r in caplog.records if "closing connection from" in r.getMessage()]
    failed = [line for line in lines if "TLS handshake failed" in line]
    assert len(failed) >= 3, lines
    assert all("127.0.0.1:" in line for line in lines)
    assert any("a TLS handshake on SSL, a plaintext listener" in line for line in lines), lines


async def test_a_flood_of_bad_handshakes_is_logged_a_few_lines_and_a_count(
    pki: Pki, stopper: list[KafkaServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kraft.net.server")
    server, _ = await serve(server_context(settings(pki.keystore(pki.leaf("b"), "PEM", "s"))))
    stopper.append(server)
    hello = struct.pack(">i", 1234) + b"\x00" * 32
    for _ in range(40):
        await raw_exchange(server.port, hello)
    await api_versions(server.port, client_context(settings(pki.truststore("PEM"))))
    await server.stop()
    messages = [r.getMessage() for r in caplog.records]
    failed = [m for m in messages if "TLS handshake failed" in m]
    summary = [m for m in messages if "more connections closed for their peers' faults" in m]
    assert len(failed) == server.faults.burst
    assert len(summary) == 1 and summary[0].split("] ")[-1].startswith("30 more"), summary


def test_peer_fault_log_opens_a_new_window_after_the_old_one() -> None:
    now = [0.0]
    lines: list[str] = []
    log = PeerFaultLog(
        lambda fmt, *a: lines.append(fmt % a), burst=2, window_s=60, clock=lambda: now[0]
    )
    for i in range(5):
        log.warn("", f"p{i}", "bad %s", f"p{i}")
    assert lines == ["bad p0", "bad p1"]
    now[0] = 61.0
    log.warn("", "p5", "bad %s", "p5")
    assert lines[2].startswith("3 more connections closed") and lines[2].endswith("from p4)")
    assert lines[3] == "bad p5"


# ------------------------------------------------------------------ start-up refusals

BASE = {
    "node.id": "1",
    "process.roles": "broker,controller",
    "listeners": "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
    "controller.quorum.voters": "1@127.0.0.1:9093",
    "log.dirs": "/nonexistent/kraft-tls-test",
}


def refusal(props: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        node_tls(build_config({**BASE, **props}))
    return str(info.value)


@pytest.mark.parametrize("kind", ["JKS", "PKCS12", "PEM"])
def test_wrong_keystore_password_stops_start_up_naming_the_key(pki: Pki, kind: str) -> None:
    props = pki.keystore(pki.leaf("b"), kind, "s")
    key = "ssl.key.password" if kind == "PEM" else "ssl.keystore.password"
    message = refusal({**props, key: "wrong-" + PASSWORD})
    assert message.startswith(key + ": wrong password"), message


def test_missing_keystore_stops_start_up_naming_the_key(pki: Pki) -> None:
    message = refusal({"ssl.keystore.location": str(pki.root / "nope.jks")})
    assert message.startswith("ssl.keystore.location: cannot read")
    # A per-listener key is named as written.
    message = refusal({"listener.name.ssl.ssl.keystore.location": str(pki.root / "nope.p12")})
    assert message.startswith("listener.name.ssl.ssl.keystore.location: cannot read")


def test_an_ssl_listener_needs_a_keystore() -> None:
    assert "ssl.keystore.location: required for listener SSL" in refusal({})


def test_wrong_truststore_password_and_unknown_values_are_refused(pki: Pki) -> None:
    props = {**pki.keystore(pki.leaf("b"), "JKS", "s"), **pki.truststore("JKS")}
    bad = refusal({**props, "ssl.client.auth": "required", "ssl.truststore.password": "no"})
    assert bad.startswith("ssl.truststore.password: wrong password")
    assert "ssl.client.auth" in refusal({**props, "ssl.client.auth": "sometimes"})
    assert "ssl.enabled.protocols" in refusal({**props, "ssl.enabled.protocols": "TLSv9"})
    assert "ssl.engine.factory.class" in refusal({**props, "ssl.engine.factory.class": "x.Y"})
    assert "unknown TLS config key ssl.keystore.flavour" in refusal(
        {**props, "ssl.keystore.flavour": "x"}
    )


def test_per_listener_keys_win_and_inter_broker_ssl_gets_a_client_context(pki: Pki) -> None:
    good = pki.keystore(pki.leaf("b"), "PKCS12", "s")
    props = {
        **{f"listener.name.internal.{k}": v for k, v in good.items()},
        **pki.truststore("PEM"),
        "ssl.keystore.location": "/nonexistent.jks",  # overridden for INTERNAL
        "listeners": "PLAINTEXT://127.0.0.1:9092,INTERNAL://127.0.0.1:9094,"
        "CONTROLLER://127.0.0.1:9093",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
    }
    tls = node_tls(build_config({**BASE, **props}))
    assert set(tls.servers) == {"INTERNAL"}
    assert set(tls.clients) == {"INTERNAL"}


def test_security_inter_broker_protocol_names_the_ssl_listener() -> None:
    config = build_config({**BASE, "security.inter.broker.protocol": "SSL"})
    assert config.inter_broker_listener_name == "SSL"
    with pytest.raises(ConfigError, match="only one of them"):
        build_config(
            {
                **BASE,
                "security.inter.broker.protocol": "SSL",
                "inter.broker.listener.name": "PLAINTEXT",
            }
        )
    with pytest.raises(ConfigError, match="SASL"):
        build_config({**BASE, "security.inter.broker.protocol": "SASL_SSL"})


def test_inline_pem_written_as_kafka_writes_it_in_a_properties_file(
    pki: Pki, stopper: list[KafkaServer]
) -> None:
    from kraft.config import parse_properties

    from .certs import pem_property

    leaf = pki.leaf("broker")
    text = "".join(f"{k}={v}\n" for k, v in BASE.items())
    text += pem_property("ssl.keystore.key", leaf.private_key_pem.bytes().decode())
    text += pem_property(
        "ssl.keystore.certificate.chain", "".join(b.bytes().decode() for b in leaf.cert_chain_pems)
    )
    text += pem_property("ssl.truststore.certificates", pki.ca.cert_pem.bytes().decode())
    text += "ssl.keystore.type=PEM\nssl.truststore.type=PEM\nssl.client.auth=required\n"
    tls = node_tls(build_config(parse_properties(text)))
    assert set(tls.servers) == {"SSL"}


def truncate(path: str, size: int) -> None:
    os.truncate(path, size)


async def peer_common_name(port: int, ctx: ssl.SSLContext) -> str:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        cert = writer.get_extra_info("peercert")
        return dict(x[0] for x in cert["subject"])["commonName"]
    finally:
        writer.close()


async def test_a_changed_keystore_is_served_to_new_connections(
    pki: Pki, stopper: list[KafkaServer], caplog: pytest.LogCaptureFixture
) -> None:
    from kraft.security.tls import CertificateReloader

    props = {**BASE, **pki.keystore(pki.leaf("first"), "PKCS12", "server")}
    config = build_config(props)
    tls = node_tls(config)
    reloader = CertificateReloader(config)
    server, _ = await serve(tls.servers["SSL"])
    stopper.append(server)
    client = client_context(settings(pki.truststore("PEM")))
    assert await peer_common_name(server.port, client) == "first"
    assert reloader.changed() == {}
    # Renewed in place: same path, same password.
    pki.keystore(pki.leaf("renewed"), "PKCS12", "server")
    changed = reloader.changed()
    assert set(changed) == {"SSL"}
    server.ssl_context = changed["SSL"]
    assert await peer_common_name(server.port, client) == "renewed"
    # A store that does not load (cut short) keeps the current certificate, said once.
    truncate(props["ssl.keystore.location"], 100)
    assert reloader.changed() == {}
    assert reloader.changed() == {}
    assert caplog.text.count("keeps its current certificate") == 1
    assert await peer_common_name(server.port, client) == "renewed"
