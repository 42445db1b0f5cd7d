from __future__ import annotations

from kraft.net.protocol import ApiVersionsRequest, ApiVersionsResponse, RequestHeader
from kraft.net.server import Connection

from .context import ApiVersionsContext


async def handle_api_versions(
    ctx: ApiVersionsContext, header: RequestHeader, request: ApiVersionsRequest, conn: Connection
) -> ApiVersionsResponse:
    return ApiVersionsResponse(
        error_code=0,
        api_keys=[
            ApiVersionsResponse.ApiVersion(api_key=key, min_version=lo, max_version=hi)
            for key, (lo, hi) in sorted(ctx.supported_versions.items())
        ],
        throttle_time_ms=0,
    )
