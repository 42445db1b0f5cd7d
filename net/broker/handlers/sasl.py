"""SaslHandshake and SaslAuthenticate reaching the broker's handlers: on a listener without
SASL, or on an authenticated connection that may not re-authenticate (the SASL gate,
`kraft.security.sasl`, answers them before). Kafka's KafkaApis answers ILLEGAL_SASL_STATE.
DescribeUserScramCredentials (AlterUserScramCredentials is forwarded to the controller)."""

from __future__ import annotations

from kraft.controller.scram_credentials import describe_scram_credentials
from kraft.net.protocol import (
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
    ErrorCode,
    RequestHeader,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from kraft.net.server import Connection

from .context import AdminContext, ApiVersionsContext


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


async def handle_describe_user_scram_credentials(
    ctx: AdminContext,
    header: RequestHeader,
    request: DescribeUserScramCredentialsRequest,
    conn: Connection,
) -> DescribeUserScramCredentialsResponse:
    """KIP-554: answered from this node's metadata image, as Kafka's brokers answer it."""
    return describe_scram_credentials(ctx.image, request)
