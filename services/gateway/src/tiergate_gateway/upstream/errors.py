"""Mapping an upstream's error answer or failure to our envelope, with the right status.

Before the first byte reaches the client any upstream failure becomes a clean envelope
(issue 2): refused/unreachable → 503 + Retry-After, no bytes in time → 504, broken or
unexpected answer → 502 + Retry-After. An upstream 4xx that is the client's fault (400, 413,
422, 429) keeps its status and message; one that is ours — the gateway's key refused (401/403),
the engine not knowing the configured model (404) — is a 502, because the client can do
nothing about it. Upstream text is quoted only when it is a short, single-line message: never a
5xx body, markup or a traceback. The detail is always in our log.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import structlog

from tiergate_gateway.metrics import UpstreamErrorKind
from tiergate_runtime.errors import ApiError, BadGateway, GatewayTimeout, ServiceUnavailable
from tiergate_runtime.upstream import transport_error

__all__ = ["error_from_status", "error_from_transport", "retry_after", "upstream_message"]

_log = structlog.get_logger("tiergate.gateway.upstream")
_MAX_MESSAGE = 500
_MAX_CODE = 64
_CLIENT_FAULT = frozenset({400, 413, 422, 429})
_RETRY_AFTER_MAX_S = 3600
_OPENAI_TYPES = frozenset({"invalid_request_error", "not_found_error", "rate_limit_error"})
_STATUS_CODES = {400: "invalid_value", 413: "request_too_large", 422: "invalid_value"}
_ENGINE_JSON_TYPE_ERROR = re.compile(r"\[json\.exception\.type_error|\btype must be \w+, but is")
_CONTEXT_EXCEEDED = re.compile(
    r"maximum context length|exceeds? (?:the )?(?:available )?context|context (?:size|length)"
    r" (?:has been )?exceeded|longer than the (?:model's )?context",
    re.IGNORECASE,
)


def _quotable(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or "\n" in text or "<" in text or "Traceback" in text:
        return None
    return text[:_MAX_MESSAGE]


def upstream_message(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, param, code) from an upstream error body in any common shape.

    OpenAI/llama.cpp/vLLM: `{"error": {"message", "type", "param", "code"}}` (vLLM's code is
    an int); also `{"error": "text"}`, FastAPI's `{"detail": ...}`, `{"message": ...}`, or
    short plain text. Anything that is not a short single line is dropped.
    """
    try:
        data: Any = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _quotable(body.decode("utf-8", "replace")), None, None, None
    except RecursionError:
        return None, None, None, None
    if not isinstance(data, dict):
        return None, None, None, None
    error = data.get("error", data)
    if isinstance(error, str):
        return _quotable(error), None, None, None
    if not isinstance(error, dict):
        return None, None, None, None
    message = error.get("message", error.get("detail"))
    code = error.get("code")
    error_type = error.get("type")
    param = error.get("param")
    return (
        _quotable(message),
        error_type[:_MAX_CODE] if isinstance(error_type, str) else None,
        param[:_MAX_MESSAGE] if isinstance(param, str) else None,
        str(code)[:_MAX_CODE] if isinstance(code, str | int) else None,
    )


def retry_after(headers: httpx.Headers, default: int) -> int:
    """The upstream's Retry-After in whole seconds (1..3600), or `default`."""
    raw = headers.get("retry-after", "").strip()
    if raw.isascii() and raw.isdigit():
        return min(max(int(raw), 1), _RETRY_AFTER_MAX_S)
    return default


def error_from_status(backend: str, status: int, headers: httpx.Headers, body: bytes) -> ApiError:
    """The error to send for an upstream answer with status >= 400."""
    message, error_type, param, code = upstream_message(body)
    _log.warning(
        "upstream_error_status",
        backend=backend,
        status=status,
        body=body[:_MAX_MESSAGE].decode("utf-8", "replace"),
    )
    if status == 429:
        return ApiError(
            message or f"The {backend} backend is rate limited.",
            status=429,
            error_type=error_type or "rate_limit_error",
            code=code or "upstream_rate_limited",
            retry_after=retry_after(headers, 1),
        )
    if status >= 500 and message and _ENGINE_JSON_TYPE_ERROR.search(message):
        # llama.cpp answers 500 for a field of the wrong JSON type (nlohmann's type_error):
        # the request's fault, so a 400 — never retried, never counted against the breaker.
        status = 400
    if status in _CLIENT_FAULT:
        if error_type == "exceed_context_size_error" or (
            message is not None and _CONTEXT_EXCEEDED.search(message)
        ):
            return ApiError(
                message or "The request is longer than the model's context.",
                status=400,
                error_type="invalid_request_error",
                param="messages",
                code="context_length_exceeded",
            )
        return ApiError(
            message or f"The {backend} backend rejected the request (status {status}).",
            status=status,
            # Engines send their own types and numeric codes ("code": 400); clients switch on
            # OpenAI's, so only those pass (issue 10).
            error_type=error_type if error_type in _OPENAI_TYPES else "invalid_request_error",
            param=param,
            code=code if code is not None and not code.isdigit() else _STATUS_CODES[status],
        )
    if status == 503:
        return ServiceUnavailable(
            f"The {backend} backend is unavailable.", retry_after=retry_after(headers, 2)
        )
    if status == 504:
        return GatewayTimeout(f"The {backend} backend timed out.")
    return BadGateway(
        f"The {backend} backend failed (status {status}).", code="upstream_error", retry_after=1
    )


def error_from_transport(backend: str, exc: httpx.HTTPError) -> tuple[ApiError, UpstreamErrorKind]:
    """The error to send when no answer came from the upstream, and its metric kind."""
    return transport_error(backend, exc)
