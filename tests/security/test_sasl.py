"""SASL settings (what a SASL_PLAINTEXT listener needs, what is refused, naming the key) and
the SASL gate's states, driven in-process: handshake, PLAIN and SCRAM exchanges, refusals
with Kafka's error codes, the principal, re-authentication (KIP-368), the rate-limited log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from typing import Any

import pytest

from kraft.config import ConfigError, NodeConfig, build_config
from kraft.net.protocol import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    ErrorCode,
    Message,
    MetadataRequest,
    RequestHeader,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from kraft.net.server import ANONYMOUS, CloseConnection, Connection
from kraft.security.faultlog import PeerFaultLog
from kraft.security.sasl import ListenerSasl, SaslGate, sasl_listeners
from kraft.security.scram import ScramCredential, make_credential

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
JAAS = (
    f'{PLAIN_MODULE} required username="admin" password="admin-secret" '
    'user_admin="admin-secret" user_alice="alice-secret";'
)
BASE = {
    "node.id": "1",
    "process.roles": "broker,controller",
    "listeners": "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,"
    "CONTROLLER://127.0.0.1:9093",
    "controller.quorum.voters": "1@127.0.0.1:9093",
    "log.dirs": "/tmp/kraft-sasl-config-test",
    "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
    "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
}


def config(**changes: str | None) -> NodeConfig:
    props = dict(BASE)
    for k, v in changes.items():
        if v is None:
            props.pop(k, None)
        else:
            props[k] = v
    return build_config(props)


# ---------------------------------------------------------------------------- config


def test_sasl_plaintext_listener_settings() -> None:
    settings = sasl_listeners(config(**{"connections.max.reauth.ms": "60000"}))
    assert list(settings) == ["SASL_PLAINTEXT"]
    s = settings["SASL_PLAINTEXT"]
    assert s.mechanisms == ("PLAIN", "SCRAM-SHA-256")
    assert s.plain_users == {"admin": "admin-secret", "alice": "alice-secret"}
    assert (s.client_username, s.client_password) == ("admin", "admin-secret")
    assert s.reauth_ms == 60000


def test_named_listener_mapped_to_sasl_with_its_own_mechanisms() -> None:
    settings = sasl_listeners(
        config(
            listeners="PLAINTEXT://127.0.0.1:9092,EXTERNAL://127.0.0.1:9094,"
            "CONTROLLER://127.0.0.1:9093",
            **{
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,"
                "CONTROLLER:PLAINTEXT",
                "listener.name.external.sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config": None,
            },
        )
    )
    assert settings["EXTERNAL"].mechanisms == ("SCRAM-SHA-512",)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"sasl.enabled.mechanisms": None}, "sasl.enabled.mechanisms: GSSAPI"),
        ({"sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER"}, "OAUTHBEARER"),
        (
            {"listener.name.sasl_plaintext.plain.sasl.jaas.config": None},
            "listener.name.sasl_plaintext.plain.sasl.jaas.config is required",
        ),
        (
            {"listener.name.sasl_plaintext.plain.sasl.jaas.config": f'{PLAIN_MODULE} a="x'},
            "unterminated",
        ),
        (
            {"listener.name.sasl_plaintext.plain.sasl.jaas.config": "com.Other required;"},
            "login module com.Other",
        ),
        (
            {"listener.name.plaintext.plain.sasl.jaas.config": JAAS},
            "listener PLAINTEXT is not a SASL listener",
        ),
        ({"connections.max.reauth.ms": "soon"}, "connections.max.reauth.ms"),
        (
            {"inter.broker.listener.name": "SASL_PLAINTEXT"},
            "listener SASL_PLAINTEXT is SASL",
        ),
    ],
)
def test_sasl_settings_kraft_cannot_serve_stop_start_up(
    changes: dict[str, str | None], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        config(**changes)


def test_sasl_keys_are_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kraft.config")
    config(**{"connections.max.reauth.ms": "1000"})
    assert not [r for r in caplog.records if "sasl" in r.getMessage().lower()]


# ------------------------------------------------------------------------------ gate


class Inner:
    """The broker's handler: answers what passes the gate."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def api_versions_range(self) -> tuple[int, int]:
        return 0, 4

    async def handle(self, header: RequestHeader, request: Message, conn: Connection) -> Message:
        self.seen.append(header.api_key)
        return ApiVersionsResponse(error_code=0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


SCRAM_PASSWORD = "scram-secret"
CREDENTIALS = {
    ("SCRAM-SHA-256", "carol"): make_credential("SCRAM-SHA-256", SCRAM_PASSWORD),
    ("SCRAM-SHA-512", "carol"): make_credential("SCRAM-SHA-512", SCRAM_PASSWORD),
}


class Rig:
    def __init__(self, reauth_ms: int = 0, mechanisms: tuple[str, ...] | None = None) -> None:
        self.inner = Inner()
        self.clock = Clock()
        self.faults: list[str] = []
        settings = ListenerSasl(
            "SASL_PLAINTEXT",
            mechanisms or ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
            {"alice": "alice-secret"},
            reauth_ms=reauth_ms,
        )

        def lookup(mechanism: str, user: str) -> ScramCredential | None:
            return CREDENTIALS.get((mechanism, user))

        def fault(peer: str, msg: str, *args: Any) -> None:
            self.faults.append(msg % args)

        self.gate = SaslGate(self.inner, settings, lookup, fault=fault, clock=self.clock)
        self.conn = Connection("127.0.0.1:5555", "SASL_PLAINTEXT")
        self.correlation = 0

    def send(self, request: Message, version: int = 1) -> Message | None:
        self.correlation += 1
        assert request.API_KEY is not None
        header = RequestHeader(
            api_key=request.API_KEY, api_version=version, correlation_id=self.correlation
        )
        return asyncio.run(self.gate.handle(header, request, self.conn))

    def refused(self, request: Message, version: int = 1) -> CloseConnection:
        with pytest.raises(CloseConnection) as info:
            self.send(request, version)
        return info.value

    def handshake(self, mechanism: str) -> None:
        response = self.send(SaslHandshakeRequest(mechanism=mechanism))
        assert isinstance(response, SaslHandshakeResponse)
        assert response.error_code == ErrorCode.NONE

    def plain(self, user: str, password: str, version: int = 2) -> Message | None:
        token = f"\0{user}\0{password}".encode()
        return self.send(SaslAuthenticateRequest(auth_bytes=token), version)


def test_api_versions_then_plain_then_requests_pass() -> None:
    rig = Rig()
    assert isinstance(rig.send(ApiVersionsRequest()), ApiVersionsResponse)
    rig.handshake("PLAIN")
    response = rig.plain("alice", "alice-secret")
    assert isinstance(response, SaslAuthenticateResponse)
    assert response.error_code == ErrorCode.NONE and response.session_lifetime_ms == 0
    assert rig.conn.principal == "User:alice"
    rig.send(MetadataRequest())
    assert rig.inner.seen == [18, 3]
    # Without re-authentication, a second handshake goes to the broker (ILLEGAL_SASL_STATE).
    rig.send(SaslHandshakeRequest(mechanism="PLAIN"))
    assert rig.inner.seen == [18, 3, 17]


def test_request_before_authentication_closes() -> None:
    rig = Rig()
    refusal = rig.refused(MetadataRequest())
    assert refusal.response is None and refusal.logged
    assert rig.inner.seen == [] and rig.conn.principal == ANONYMOUS
    assert rig.faults == [
        "closing connection from 127.0.0.1:5555 on SASL_PLAINTEXT: api key 3 before SASL "
        "authentication"
    ]
    rig = Rig()
    rig.handshake("PLAIN")
    assert rig.refused(MetadataRequest()).response is None
    assert rig.inner.seen == []


def test_authenticate_before_handshake_closes() -> None:
    rig = Rig()
    assert rig.refused(SaslAuthenticateRequest(auth_bytes=b"\0a\0b")).response is None


def test_second_handshake_is_illegal_state() -> None:
    rig = Rig()
    rig.handshake("PLAIN")
    response = rig.refused(SaslHandshakeRequest(mechanism="PLAIN")).response
    assert isinstance(response, SaslHandshakeResponse)
    assert response.error_code == ErrorCode.ILLEGAL_SASL_STATE


def test_unsupported_mechanism() -> None:
    rig = Rig(mechanisms=("SCRAM-SHA-512",))
    response = rig.refused(SaslHandshakeRequest(mechanism="PLAIN")).response
    assert isinstance(response, SaslHandshakeResponse)
    assert response.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert response.mechanisms == ["SCRAM-SHA-512"]


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "wrong"), ("mallory", "alice-secret"), ("alice", "")]
)
def test_plain_bad_credentials(user: str, password: str) -> None:
    rig = Rig()
    rig.handshake("PLAIN")
    with pytest.raises(CloseConnection) as info:
        rig.plain(user, password)
    response = info.value.response
    assert isinstance(response, SaslAuthenticateResponse)
    assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert response.error_message is not None
    assert response.error_message.startswith("Authentication failed")
    assert rig.conn.principal == ANONYMOUS
    assert "127.0.0.1:5555" in rig.faults[0]


@pytest.mark.parametrize("token", [b"", b"alice", b"a\0b\0c\0d", b"other\0alice\0alice-secret"])
def test_plain_malformed(token: bytes) -> None:
    rig = Rig()
    rig.handshake("PLAIN")
    response = rig.refused(SaslAuthenticateRequest(auth_bytes=token)).response
    assert isinstance(response, SaslAuthenticateResponse)
    assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED


def scram_client(rig: Rig, mechanism: str, user: str, password: str) -> SaslAuthenticateResponse:
    """A client's SCRAM exchange (RFC 5802's formulas), through the gate."""
    h = "sha256" if mechanism == "SCRAM-SHA-256" else "sha512"
    rig.handshake(mechanism)
    bare = f"n={user},r=clientnonce123"
    first = rig.send(SaslAuthenticateRequest(auth_bytes=f"n,,{bare}".encode()))
    assert isinstance(first, SaslAuthenticateResponse) and first.error_code == 0
    server_first = first.auth_bytes.decode()
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(
        h, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", h).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.new(h, client_key).digest(), auth, h).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    final = rig.send(
        SaslAuthenticateRequest(auth_bytes=f"{without_proof},p={proof.decode()}".encode())
    )
    assert isinstance(final, SaslAuthenticateResponse)
    return final


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_through_the_gate(mechanism: str) -> None:
    rig = Rig()
    final = scram_client(rig, mechanism, "carol", SCRAM_PASSWORD)
    assert final.error_code == 0 and final.auth_bytes.startswith(b"v=")
    assert rig.conn.principal == "User:carol"


def test_scram_wrong_password_and_unknown_user() -> None:
    rig = Rig()
    with pytest.raises(CloseConnection) as info:
        scram_client(rig, "SCRAM-SHA-256", "carol", "wrong")
    assert isinstance(info.value.response, SaslAuthenticateResponse)
    assert info.value.response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    rig = Rig()
    rig.handshake("SCRAM-SHA-256")
    response = rig.refused(SaslAuthenticateRequest(auth_bytes=b"n,,n=nobody,r=abc")).response
    assert isinstance(response, SaslAuthenticateResponse)
    assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED


def test_reauthentication_and_expiry() -> None:
    rig = Rig(reauth_ms=10_000)
    rig.handshake("PLAIN")
    response = rig.plain("alice", "alice-secret")
    assert isinstance(response, SaslAuthenticateResponse)
    assert response.session_lifetime_ms == 10_000
    rig.clock.now += 9
    rig.send(MetadataRequest())
    # Re-authenticated before expiry: a new session.
    rig.handshake("PLAIN")
    rig.plain("alice", "alice-secret")
    rig.clock.now += 9
    rig.send(MetadataRequest())
    rig.clock.now += 2
    rig.refused(MetadataRequest())
    assert "expired" in rig.faults[-1]


def test_reauthentication_cannot_change_principal_or_mechanism() -> None:
    rig = Rig(reauth_ms=10_000)
    rig.handshake("PLAIN")
    rig.plain("alice", "alice-secret")
    response = rig.refused(SaslHandshakeRequest(mechanism="SCRAM-SHA-256")).response
    assert isinstance(response, SaslHandshakeResponse)
    assert response.error_code == ErrorCode.ILLEGAL_SASL_STATE
    rig = Rig(reauth_ms=10_000)
    rig.handshake("PLAIN")
    rig.plain("alice", "alice-secret")
    rig.gate.settings.plain_users["bob"] = "b"
    rig.handshake("PLAIN")
    with pytest.raises(CloseConnection) as info:
        rig.plain("bob", "b")
    assert isinstance(info.value.response, SaslAuthenticateResponse)
    assert info.value.response.error_message == "Cannot change principals during re-authentication"


def test_v0_client_gets_no_session_lifetime() -> None:
    rig = Rig(reauth_ms=10_000)
    rig.handshake("PLAIN")
    response = rig.plain("alice", "alice-secret", version=0)
    assert isinstance(response, SaslAuthenticateResponse)
    assert response.session_lifetime_ms == 0


def test_fault_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.faults")
    faults = PeerFaultLog(log, "[n1] ", burst=3, window_s=60, clock=clock)
    caplog.set_level(logging.WARNING, logger="test.faults")
    for i in range(1000):
        faults.warn(f"10.0.0.{i % 250}:1", "closing connection from %s: bad", f"peer{i}")
    assert len(caplog.records) == 3
    clock.now += 61
    faults.warn("10.0.0.9:1", "closing connection from %s: bad", "late")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[3] == (
        "[n1] 997 more connections refused for their peers' faults in the last 60 s "
        "(not logged one by one; the last from 10.0.0.249:1)"
    )
    assert lines[4] == "[n1] closing connection from late: bad"
    assert len(lines) == 5
