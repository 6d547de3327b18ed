"""`POST /v1/feedback`, and the `/v1/me/*` relay to the auth service (the user's history).

Feedback goes through identity (a bad credential is a 401) and the tier's request limit (a
429 with Retry-After, counted like any request), then `Records.feedback`. `/v1/me/chats`
(read, export, erase) is the auth service's: it checks the session token itself, exactly as
for `/v1/auth/me`, so the gateway relays it as it relays `/v1/auth/*`.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
from litestar import Request, Response, route
from litestar.handlers import HTTPRouteHandler

from tiergate_gateway.gate import Gate
from tiergate_gateway.records.service import Records
from tiergate_proto.records import FeedbackRequest
from tiergate_runtime.body import read_struct
from tiergate_runtime.edge import request_record
from tiergate_runtime.errors import NotFound
from tiergate_runtime.proxy import ReverseProxy

__all__ = ["FEEDBACK_MAX_BODY", "records_routes"]

FEEDBACK_MAX_BODY = 16 * 1024
"""A feedback body's largest size (a 2,000-character comment is at most ~8 KB of JSON)."""

_encode = msgspec.json.Encoder().encode


def records_routes(
    gate: Gate, records: Records, auth_url: str | None, auth_proxy: ReverseProxy | None
) -> list[HTTPRouteHandler]:
    """The feedback endpoint and the `/v1/me/*` relay (`auth_proxy` None: not relayed)."""

    @route("/v1/feedback", http_method=["POST"], status_code=200, include_in_schema=False)
    async def feedback(request: Request[Any, Any, Any]) -> Response[bytes]:
        record = request_record(request.scope)
        principal = await gate.principal(request.scope, record)
        body = await read_struct(request, FeedbackRequest, FEEDBACK_MAX_BODY)
        policy = gate.policy(principal)
        admission, limit_headers = await gate.limits.admit(
            principal, policy, os.urandom(12).hex(), 0
        )
        try:
            stored = await records.feedback(principal, body)
        finally:
            await gate.limits.finish(admission, 0)
        return Response(_encode(stored), media_type="application/json", headers=dict(limit_headers))

    @route(
        ["/v1/me/{path:path}"],
        http_method=["GET", "POST", "PUT", "DELETE"],
        include_in_schema=False,
    )
    async def to_auth(request: Request[Any, Any, Any]) -> Response[Any]:
        if auth_url is None or auth_proxy is None:
            raise NotFound(f"Unknown path: {request.method} {request.url.path}", code="unknown_url")
        client_ip = gate.resolver.client_ip(request.scope)
        return await auth_proxy.forward(request, auth_url.rstrip("/"), client_ip=client_ip)

    return [feedback, to_auth]
