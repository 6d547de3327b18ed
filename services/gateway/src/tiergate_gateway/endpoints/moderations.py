"""`POST /v1/moderations`: OpenAI's moderation API, answered by the content filter.

Identity first (a bad credential is a 401, as everywhere), then the body (bounded: at most
`MAX_INPUTS` inputs and `MAX_INPUT_CHARS` characters, so one request costs at most ~0.5 s
of CPU), then the tier's limits (429 with `Retry-After`; the check's CPU is bounded by
them, as the pipeline's), then the verdicts: the caller's tier's filter when it has one on,
else the default word lists. What the answer means: `content_filter/moderation.py`.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
from litestar import Request, Response, route
from litestar.handlers import HTTPRouteHandler

from tiergate_gateway.content_filter import default_filter
from tiergate_gateway.content_filter.moderation import moderate, read_inputs
from tiergate_gateway.gate import Gate
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_runtime.body import read_sized_json_object
from tiergate_runtime.edge import request_record

__all__ = ["moderations_route"]


def moderations_route(gate: Gate, metrics: GatewayMetrics, max_body_bytes: int) -> HTTPRouteHandler:
    """The `POST /v1/moderations` handler, wired in `create_app`."""

    @route("/v1/moderations", http_method=["POST"], status_code=200, include_in_schema=False)
    async def moderations(request: Request[Any, Any, Any]) -> Response[bytes]:
        record = request_record(request.scope)
        principal = await gate.principal(request.scope, record)
        policy = gate.policy(principal)
        raw, size = await read_sized_json_object(request, max_body_bytes)
        model, texts = read_inputs(raw)
        record.model = model
        reserve = int(size / gate.chars_per_token)
        admission, headers = await gate.limits.admit(
            principal, policy, os.urandom(12).hex(), reserve
        )
        for name, value in headers:
            record.add_header(name, value)
        try:
            content_filter = policy.content_filter or default_filter()
            answer = await moderate(content_filter.words, content_filter.cache, model, texts)
        finally:
            await gate.limits.finish(admission, reserve)
        for result in answer.results:
            if result.flagged:
                metrics.filtered(principal.tier, "moderation")
        return Response(msgspec.json.encode(answer), media_type="application/json")

    return moderations
