"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka serves them: the salted
credential a broker keeps (salt, StoredKey, ServerKey, iterations: never the password) and
the server side of one exchange. The primitives are hashlib's and hmac's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

# Kafka's ScramMechanism: name → (hash, minimum iterations).
MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# Kafka's ScramMechanism.mechanismType (the `mechanism` byte of UserScramCredentialRecord
# and of KIP-554's requests and responses).
MECHANISM_TYPES = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384


class ScramError(Exception):
    """The exchange failed; the message may be shown to the client."""


@dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


def _hash(mechanism: str) -> str:
    try:
        return MECHANISMS[mechanism]
    except KeyError:
        raise ValueError(f"unknown SCRAM mechanism {mechanism}") from None


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(_hash(mechanism), password.encode(), salt, iterations)


def _hmac(mechanism: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, _hash(mechanism)).digest()


def credential_from_salted(
    mechanism: str, salted: bytes, salt: bytes, iterations: int
) -> ScramCredential:
    client_key = _hmac(mechanism, salted, b"Client Key")
    stored_key = hashlib.new(_hash(mechanism), client_key).digest()
    server_key = _hmac(mechanism, salted, b"Server Key")
    return ScramCredential(salt, stored_key, server_key, iterations)


def make_credential(
    mechanism: str, password: str, iterations: int = MIN_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    salt = os.urandom(32) if salt is None else salt
    salted = salted_password(mechanism, password, salt, iterations)
    return credential_from_salted(mechanism, salted, salt, iterations)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unescape_name(name: str) -> str:
    """RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed."""
    if re.search(r"=(?!2C|3D)", name):
        raise ScramError("Invalid username in SCRAM client first message")
    return name.replace("=2C", ",").replace("=3D", "=")


_CLIENT_FIRST = re.compile(
    r"(?P<gs2>[nyp](?:=[^,]*)?,(?:a=(?P<authzid>[^,]*))?,)"
    r"(?P<bare>n=(?P<name>[^,]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)(?P<ext>(?:,[^,]*)*))"
)
_CLIENT_FINAL = re.compile(
    r"(?P<without_proof>c=(?P<binding>[A-Za-z0-9+/=]+),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
    r"(?:,[^,]*)*?),p=(?P<proof>[A-Za-z0-9+/=]+)"
)


class ScramServer:
    """One SCRAM exchange: `evaluate` takes the client's first and final messages in turn and
    gives the server's; `username` is set once the client is authenticated."""

    def __init__(
        self,
        mechanism: str,
        lookup: Callable[[str], ScramCredential | None],
        nonce: Callable[[], str] | None = None,
    ) -> None:
        _hash(mechanism)
        self.mechanism = mechanism
        self._lookup = lookup
        self._nonce = nonce or (lambda: base64.b64encode(os.urandom(24)).decode())
        self._step = 0
        self._first_bare = ""
        self._server_first = ""
        self._gs2 = ""
        self._nonce_full = ""
        self._name = ""
        self._credential: ScramCredential | None = None
        self.username: str | None = None

    @property
    def complete(self) -> bool:
        return self.username is not None

    def evaluate(self, token: bytes) -> bytes:
        self._step += 1
        try:
            text = token.decode()
        except UnicodeDecodeError:
            raise ScramError("Invalid SCRAM message: not UTF-8") from None
        if self._step == 1:
            return self._client_first(text).encode()
        if self._step == 2:
            return self._client_final(text).encode()
        raise ScramError("Unexpected SCRAM message after the exchange completed")

    def _client_first(self, text: str) -> str:
        m = _CLIENT_FIRST.fullmatch(text)
        if m is None:
            raise ScramError("Invalid SCRAM client first message")
        if m.group("gs2").startswith("p"):
            raise ScramError("Channel binding is not supported")
        name = _unescape_name(m.group("name"))
        authzid = m.group("authzid")
        if authzid and _unescape_name(authzid) != name:
            raise ScramError("Authentication failed: authorization id differs from username")
        extensions = dict(e.partition("=")[::2] for e in m.group("ext").split(",") if e)
        if extensions.get("tokenauth", "false").lower() == "true":
            raise ScramError("Authentication failed: delegation tokens are not supported")
        credential = self._lookup(name)
        if credential is None:
            raise ScramError("Authentication failed: Invalid user credentials")
        self._name = name
        self._credential = credential
        self._gs2 = m.group("gs2")
        self._first_bare = m.group("bare")
        self._nonce_full = m.group("nonce") + self._nonce()
        self._server_first = (
            f"r={self._nonce_full},s={_b64(credential.salt)},i={credential.iterations}"
        )
        return self._server_first

    def _client_final(self, text: str) -> str:
        m = _CLIENT_FINAL.fullmatch(text)
        credential = self._credential
        if m is None or credential is None:
            raise ScramError("Invalid SCRAM client final message")
        if m.group("nonce") != self._nonce_full:
            raise ScramError("Invalid SCRAM client final message: nonce mismatch")
        try:
            binding = base64.b64decode(m.group("binding"), validate=True)
            proof = base64.b64decode(m.group("proof"), validate=True)
        except ValueError:
            raise ScramError("Invalid SCRAM client final message: bad base64") from None
        if binding != self._gs2.encode():
            raise ScramError("Invalid SCRAM client final message: channel binding mismatch")
        auth_message = f"{self._first_bare},{self._server_first},{m.group('without_proof')}"
        signature = _hmac(self.mechanism, credential.stored_key, auth_message.encode())
        if len(proof) != len(signature):
            raise ScramError("Authentication failed: Invalid user credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        computed = hashlib.new(_hash(self.mechanism), client_key).digest()
        if not hmac.compare_digest(computed, credential.stored_key):
            raise ScramError("Authentication failed: Invalid user credentials")
        self.username = self._name
        server_signature = _hmac(self.mechanism, credential.server_key, auth_message.encode())
        return f"v={_b64(server_signature)}"
