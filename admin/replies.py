"""JSON answers of the admin API: bodies by orjson, errors as {"error", "message"}."""

from __future__ import annotations

import base64
import enum

import orjson
from aiohttp import web

MAX_BODY_BYTES = 1 << 20


class ApiError(Exception):
    """An error answer: HTTP status, a short code (Kafka's error name where there is one)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, default=_default, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def _default(value: object) -> object:
    """What orjson does not serialise natively (dataclasses, None and enums it does):
    bytes as base64 (the façade shows record bytes itself; this is a fallback), sets."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def error_response(status: int, error: str, message: str) -> web.Response:
    response = json_response({"error": error, "message": message}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="kraft"'
    return response
