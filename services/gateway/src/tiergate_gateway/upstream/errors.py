"""Mapping an upstream's error answer or failure to our envelope, with the right status.

Before the first byte reaches the client any upstream failure becomes a clean envelope:
refused/unreachable → 503 + Retry-After, no bytes in time → 504, broken answer → 502, an
upstream 4xx → the same status with the upstream's message, 429/503 keep Retry-After.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from tiergate_gateway.metrics import UpstreamErrorKind
from tiergate_runtime.errors import (
    ApiError,
    BadGateway,
    GatewayTimeout,
    ServiceUnavailable,
)

__all__ = ["error_from_status", "error_from_transport", "upstream_message"]

_MAX_MESSAGE = 500


def upstream_message(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, param, code) from an upstream error body in any common shape.

    OpenAI/llama.cpp/vLLM: `{"error": {"message", "type", "param", "code"}}`; also
    `{"error": "text"}`, FastAPI's `{"detail": ...}`, `{"message": ...}`, or short plain text.
    Markup (an HTML error page from a proxy, a framework's debug page) is never quoted.
    """
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        if not text or "<" in text or "\n" in text:
            return None, None, None, None
        return text[:_MAX_MESSAGE], None, None, None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, str):
            return error[:_MAX_MESSAGE], None, None, None
        if isinstance(error, dict):
            message = error.get("message", error.get("detail"))
            if message is not None and not isinstance(message, str):
                message = msgspec.json.encode(message).decode()
            code = error.get("code")
            return (
                message[:_MAX_MESSAGE] if isinstance(message, str) else None,
                error.get("type") if isinstance(error.get("type"), str) else None,
                error.get("param") if isinstance(error.get("param"), str) else None,
                str(code) if code is not None else None,
            )
    return None, None, None, None


def _retry_after(headers: httpx.Headers, default: int) -> int:
    raw = headers.get("retry-after", "")
    return int(raw) if raw.isdigit() else default


def error_from_status(backend: str, status: int, headers: httpx.Headers, body: bytes) -> ApiError:
    """The error to send for an upstream answer with status >= 400."""
    message, error_type, param, code = upstream_message(body)
    if status == 429:
        return ApiError(
            message or f"The {backend} backend is rate limited.",
            status=429,
            error_type=error_type or "rate_limit_error",
            code=code or "upstream_rate_limited",
            retry_after=_retry_after(headers, 1),
        )
    if 400 <= status < 500:
        return ApiError(
            message or f"The {backend} backend rejected the request (status {status}).",
            status=status,
            error_type=error_type or "invalid_request_error",
            param=param,
            code=code,
        )
    if status == 503:
        return ServiceUnavailable(
            f"The {backend} backend is unavailable" + (f": {message}" if message else "."),
            retry_after=_retry_after(headers, 2),
        )
    if status == 504:
        return GatewayTimeout(f"The {backend} backend timed out.")
    return BadGateway(
        f"The {backend} backend failed (status {status})" + (f": {message}" if message else ".")
    )


def error_from_transport(backend: str, exc: httpx.HTTPError) -> tuple[ApiError, UpstreamErrorKind]:
    """The error to send when no answer came from the upstream, and its metric kind."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServiceUnavailable(
            f"The {backend} backend is not reachable.", retry_after=2
        ), "connect"
    if isinstance(exc, httpx.PoolTimeout):
        return ServiceUnavailable(
            f"The {backend} backend is at capacity.", retry_after=1
        ), "connect"
    if isinstance(exc, httpx.TimeoutException):
        return GatewayTimeout(f"The {backend} backend did not answer in time."), "timeout"
    return BadGateway(f"The {backend} backend closed the connection without an answer."), "protocol"
