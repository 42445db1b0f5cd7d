"""The one error type of the toxiproxy server: Toxiproxy's `{"error": ..., "status": ...}`."""

from __future__ import annotations


class ApiError(Exception):
    """A refused request; the API answers `status` with `{"error": message, "status": status}`.

    The messages are Toxiproxy's own ("proxy not found", "toxic already exists", ...) so clients
    that match on them behave the same against this server.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request_body(detail: str) -> ApiError:
    return ApiError(400, f"bad request body: {detail}")


def missing_field(detail: str) -> ApiError:
    return ApiError(400, f"missing required field: {detail}")


# Factories rather than shared instances: a raised exception keeps its traceback.
def proxy_not_found() -> ApiError:
    return ApiError(404, "proxy not found")


def proxy_already_exists() -> ApiError:
    return ApiError(409, "proxy already exists")


def invalid_stream() -> ApiError:
    return ApiError(400, "stream was invalid, can be either upstream or downstream")


def invalid_toxic_type() -> ApiError:
    return ApiError(400, "invalid toxic type")


def toxic_already_exists() -> ApiError:
    return ApiError(409, "toxic already exists")


def toxic_not_found() -> ApiError:
    return ApiError(404, "toxic not found")
