"""SaslHandshake and SaslAuthenticate reaching the broker's handlers: on a listener without
SASL, or on an authenticated connection that may not re-authenticate (the SASL gate,
`kraft.security.sasl`, answers them before). Kafka's KafkaApis answers ILLEGAL_SASL_STATE."""

from __future__ import annotations

from kraft.net.protocol import (
    ErrorCode,
    RequestHeader,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from kraft.net.server import Connection

from .context import ApiVersionsContext


async def handle_sasl_handshake(
    ctx: ApiVersionsContext, header: RequestHeader, request: SaslHandshakeRequest, conn: Connection
) -> SaslHandshakeResponse:
    return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE)


async def handle_sasl_authenticate(
    ctx: ApiVersionsContext,
    header: RequestHeader,
    request: SaslAuthenticateRequest,
    conn: Connection,
) -> SaslAuthenticateResponse:
    return SaslAuthenticateResponse(
        error_code=ErrorCode.ILLEGAL_SASL_STATE,
        error_message="SaslAuthenticate request received after successful authentication",
    )
