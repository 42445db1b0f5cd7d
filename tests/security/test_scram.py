"""SCRAM math and the server exchange against RFC 7677's SCRAM-SHA-256 example (and a
SHA-512 client written from RFC 5802's formulas), plus refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from kraft.security.scram import ScramError, ScramServer, make_credential

# RFC 7677 section 3.
USER, PASSWORD = "user", "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE_PART = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = f"n,,n={USER},r={CLIENT_NONCE}"
SERVER_FIRST = f"r={CLIENT_NONCE}{SERVER_NONCE_PART},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (
    f"c=biws,r={CLIENT_NONCE}{SERVER_NONCE_PART},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_server(password: str = PASSWORD) -> ScramServer:
    credential = make_credential("SCRAM-SHA-256", password, 4096, SALT)
    return ScramServer(
        "SCRAM-SHA-256",
        lambda name: credential if name == USER else None,
        nonce=lambda: SERVER_NONCE_PART,
    )


def test_rfc7677_exchange() -> None:
    server = rfc_server()
    assert server.evaluate(CLIENT_FIRST.encode()).decode() == SERVER_FIRST
    assert not server.complete
    assert server.evaluate(CLIENT_FINAL.encode()).decode() == SERVER_FINAL
    assert server.complete and server.username == USER


def test_wrong_password_refused() -> None:
    server = rfc_server(password="not-pencil")
    server.evaluate(CLIENT_FIRST.encode())
    with pytest.raises(ScramError, match="Invalid user credentials"):
        server.evaluate(CLIENT_FINAL.encode())
    assert server.username is None


def test_unknown_user_refused() -> None:
    with pytest.raises(ScramError, match="Invalid user credentials"):
        rfc_server().evaluate(f"n,,n=mallory,r={CLIENT_NONCE}".encode())


@pytest.mark.parametrize(
    "first",
    [b"", b"garbage", b"p=tls-unique,,n=user,r=abc", b"n,,n=us=er,r=abc", b"\xff\xfe"],
)
def test_malformed_first_refused(first: bytes) -> None:
    with pytest.raises(ScramError):
        rfc_server().evaluate(first)


def test_nonce_mismatch_refused() -> None:
    server = rfc_server()
    server.evaluate(CLIENT_FIRST.encode())
    with pytest.raises(ScramError, match="nonce"):
        server.evaluate(CLIENT_FINAL.replace(SERVER_NONCE_PART, "other").encode())


def test_third_message_refused() -> None:
    server = rfc_server()
    server.evaluate(CLIENT_FIRST.encode())
    server.evaluate(CLIENT_FINAL.encode())
    with pytest.raises(ScramError):
        server.evaluate(b"more")


def _client_final(
    mechanism: str, password: str, first_bare: str, server_first: str
) -> tuple[str, bytes]:
    """RFC 5802's client side, written independently of the server's module."""
    h = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(
        h, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", h).digest()
    stored_key = hashlib.new(h, client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth, h).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.new(salted, b"Server Key", h).digest()
    expected = hmac.new(server_key, auth, h).digest()
    return f"{without_proof},p={base64.b64encode(proof).decode()}", expected


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_round_trip_each_mechanism(mechanism: str) -> None:
    credential = make_credential(mechanism, "s3cret=,x", 8192)
    server = ScramServer(mechanism, {"al,ice": credential}.get)
    bare = "n=al=2Cice,r=fyko+d2lbbFgONRv9qkxdawL"
    server_first = server.evaluate(f"n,,{bare}".encode()).decode()
    final, expected = _client_final(mechanism, "s3cret=,x", bare, server_first)
    server_final = server.evaluate(final.encode()).decode()
    assert server_final == "v=" + base64.b64encode(expected).decode()
    assert server.username == "al,ice"
