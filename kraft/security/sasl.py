"""SASL on SASL_PLAINTEXT listeners (Kafka's SaslServerAuthenticator): SaslHandshake v0-1 and
SaslAuthenticate v0-2 with PLAIN and SCRAM-SHA-256/512, `sasl.enabled.mechanisms`, PLAIN users
from `listener.name.<l>.plain.sasl.jaas.config`, `connections.max.reauth.ms` (KIP-368).

`SaslGate` wraps a listener's request handler. Until a connection is authenticated only
ApiVersions, SaslHandshake and SaslAuthenticate pass; any other request closes the connection,
as Kafka closes it (with ILLEGAL_SASL_STATE where Kafka answers: a second SaslHandshake). An
unsupported mechanism is answered UNSUPPORTED_SASL_MECHANISM, bad credentials
SASL_AUTHENTICATION_FAILED, and the connection is closed after the answer. Refusals are logged
with the peer through `PeerFaultLog`: a flood of them costs a few lines a minute. The
authenticated principal `User:<name>` is set on the Connection for an authorizer.

A SASL_SSL listener is the same gate behind the TLS layer: nothing here reads the socket.
SaslHandshake v0's unframed tokens (clients before Kafka 1.0) are not read: v0 is answered,
and a client that then sends a raw token is closed as malformed input.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from kraft.net.protocol import (
    ErrorCode,
    Message,
    RequestHeader,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from kraft.net.server import CloseConnection, Connection, RequestHandler
from kraft.security.sasl_config import (
    PLAIN as PLAIN,
)
from kraft.security.sasl_config import (
    SASL_PROTOCOLS as SASL_PROTOCOLS,
)
from kraft.security.sasl_config import (
    SUPPORTED_MECHANISMS as SUPPORTED_MECHANISMS,
)
from kraft.security.sasl_config import (
    ListenerSasl as ListenerSasl,
)
from kraft.security.sasl_config import (
    check_sasl as check_sasl,
)
from kraft.security.sasl_config import (
    listener_protocols as listener_protocols,
)
from kraft.security.sasl_config import (
    sasl_listeners as sasl_listeners,
)
from kraft.security.scram import ScramCredential, ScramError, ScramServer

logger = logging.getLogger(__name__)

API_VERSIONS_KEY = 18
SASL_HANDSHAKE_KEY = 17
SASL_AUTHENTICATE_KEY = 36
_STATE_KEY = "sasl"

# mechanism, user name → the user's SCRAM credential (from the metadata image), or None.
ScramLookup = Callable[[str, str], ScramCredential | None]


class SaslFailure(Exception):
    """The client's SASL exchange failed; the message is sent to it."""


# ------------------------------------------------------------------------ mechanisms


class PlainServer:
    """RFC 4616: one message `authzid NUL authcid NUL passwd`, checked against the JAAS
    config's `user_<name>` entries."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users
        self.username: str | None = None

    @property
    def complete(self) -> bool:
        return self.username is not None

    def evaluate(self, token: bytes) -> bytes:
        parts = token.split(b"\x00")
        if len(parts) != 3 or self.username is not None:
            raise SaslFailure("Invalid SASL/PLAIN response: expected 3 tokens")
        try:
            authzid, name, password = (p.decode() for p in parts)
        except UnicodeDecodeError:
            raise SaslFailure("Invalid SASL/PLAIN response: not UTF-8") from None
        if not name or not password:
            raise SaslFailure("Authentication failed: username or password not specified")
        if authzid and authzid != name:
            raise SaslFailure(
                "Authentication failed: Client requested an authorization id that is "
                "different from username"
            )
        expected = self._users.get(name)
        # Compared in constant time, and for unknown users too, so timing tells nothing.
        ok = hmac.compare_digest(password.encode(), (expected or "\x00" + password).encode())
        if expected is None or not ok:
            raise SaslFailure("Authentication failed: Invalid username or password")
        self.username = name
        return b""


# ---------------------------------------------------------------------------- gate


@dataclass(slots=True)
class _Session:
    mechanism: str | None = None
    server: PlainServer | ScramServer | None = None
    principal: str | None = None
    # monotonic time the session expires (connections.max.reauth.ms), or None.
    expires: float | None = None
    reauthenticating: bool = False


class SaslGate:
    """A SASL listener's request handler: authentication first, then `inner`."""

    def __init__(
        self,
        inner: RequestHandler,
        settings: ListenerSasl,
        scram: ScramLookup,
        *,
        fault: Callable[..., None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self.settings = settings
        self._scram = scram
        self._fault = fault
        self._clock = clock

    def api_versions_range(self) -> tuple[int, int]:
        return self._inner.api_versions_range()

    async def handle(
        self, header: RequestHeader, request: Message, conn: Connection
    ) -> Message | None:
        session = conn.state.get(_STATE_KEY)
        if session is None:
            session = conn.state[_STATE_KEY] = _Session()
        key = header.api_key
        if session.principal is not None and not session.reauthenticating:
            if key == SASL_HANDSHAKE_KEY and self.settings.reauth_ms > 0:
                session.reauthenticating = True
                session.server = None
                return self._handshake(header, request, session, conn)
            if session.expires is not None and self._clock() >= session.expires:
                self._refuse(conn, "its SASL session expired (connections.max.reauth.ms)")
            return await self._inner.handle(header, request, conn)
        if session.server is None:
            if key == API_VERSIONS_KEY and not session.reauthenticating:
                return await self._inner.handle(header, request, conn)
            if key == SASL_HANDSHAKE_KEY:
                return self._handshake(header, request, session, conn)
            self._refuse(conn, f"api key {key} before SASL authentication")
        if key == SASL_AUTHENTICATE_KEY:
            assert isinstance(request, SaslAuthenticateRequest)
            return self._authenticate(header, request, session, conn)
        if key == SASL_HANDSHAKE_KEY:
            self._refuse(
                conn,
                "a second SaslHandshake during SASL authentication",
                SaslHandshakeResponse(
                    error_code=ErrorCode.ILLEGAL_SASL_STATE,
                    mechanisms=list(self.settings.mechanisms),
                ),
            )
        self._refuse(conn, f"api key {key} during SASL authentication")

    def _refuse(self, conn: Connection, why: str, response: Message | None = None) -> NoReturn:
        self._fault(
            conn.peer,
            "closing connection from %s on %s: %s",
            conn.peer,
            self.settings.listener,
            why,
        )
        raise CloseConnection(why, response, logged=True)

    def _handshake(
        self, header: RequestHeader, request: Message, session: _Session, conn: Connection
    ) -> SaslHandshakeResponse:
        assert isinstance(request, SaslHandshakeRequest)
        mechanism = request.mechanism
        enabled = list(self.settings.mechanisms)
        if mechanism not in self.settings.mechanisms:
            self._refuse(
                conn,
                f"SASL mechanism {mechanism!r} is not enabled (enabled: {', '.join(enabled)})",
                SaslHandshakeResponse(
                    error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=enabled
                ),
            )
        if session.reauthenticating and mechanism != session.mechanism:
            self._refuse(
                conn,
                f"re-authentication with {mechanism} after {session.mechanism}",
                SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=enabled),
            )
        session.mechanism = mechanism
        if mechanism == PLAIN:
            session.server = PlainServer(self.settings.plain_users)
        else:
            session.server = ScramServer(mechanism, lambda name: self._scram(mechanism, name))
        return SaslHandshakeResponse(error_code=ErrorCode.NONE, mechanisms=enabled)

    def _authenticate(
        self,
        header: RequestHeader,
        request: SaslAuthenticateRequest,
        session: _Session,
        conn: Connection,
    ) -> SaslAuthenticateResponse:
        server = session.server
        assert server is not None
        try:
            challenge = server.evaluate(request.auth_bytes)
        except (SaslFailure, ScramError) as e:
            self._refuse(
                conn,
                f"SASL/{session.mechanism} authentication failed: {e}",
                SaslAuthenticateResponse(
                    error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message=str(e)
                ),
            )
        lifetime = 0
        if server.username is not None:
            principal = f"User:{server.username}"
            if session.reauthenticating and principal != session.principal:
                self._refuse(
                    conn,
                    f"re-authentication as {principal} after {session.principal}",
                    SaslAuthenticateResponse(
                        error_code=ErrorCode.SASL_AUTHENTICATION_FAILED,
                        error_message="Cannot change principals during re-authentication",
                    ),
                )
            session.principal = principal
            session.reauthenticating = False
            session.server = None
            conn.principal = principal
            if self.settings.reauth_ms > 0:
                session.expires = self._clock() + self.settings.reauth_ms / 1000
                # KIP-368: clients below SaslAuthenticate v1 cannot re-authenticate.
                lifetime = self.settings.reauth_ms if header.api_version >= 1 else 0
        return SaslAuthenticateResponse(
            error_code=ErrorCode.NONE,
            error_message=None,
            auth_bytes=challenge,
            session_lifetime_ms=lifetime,
        )
