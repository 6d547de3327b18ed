"""The answers the HTTP server writes itself, whole, each an OpenAI error envelope (issue 10).

Built once from the runtime's error classes (tiergate_runtime.errors), so a raw-server 400,
408, 431, 500 or 503 reads exactly like one the app renders: JSON, the right status,
`Retry-After` on the 503, and `connection: close` (the server closes after each).
"""

from __future__ import annotations

import httptools

from tiergate_runtime.errors import ApiError, InvalidRequest, ServiceUnavailable

__all__ = [
    "BODY_TIMEOUT",
    "HEADER_TOO_LARGE",
    "HEAD_TIMEOUT",
    "INTERNAL_ERROR_BODY",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_HEADERS",
    "parse_error",
    "raw_error_response",
]


def raw_error_response(error: ApiError) -> bytes:
    """A whole HTTP/1.1 response carrying `error`'s envelope, with `connection: close`."""
    body = error.envelope()
    head = [
        f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in error.response_headers().items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
HEAD_TIMEOUT = raw_error_response(
    InvalidRequest("The request head was not received in time.", code="request_timeout", status=408)
)
BODY_TIMEOUT = raw_error_response(
    InvalidRequest(
        "The request body stalled: no bytes arrived in time.", code="request_timeout", status=408
    )
)
HEADER_TOO_LARGE = raw_error_response(
    InvalidRequest(
        "The request line and headers are too large.",
        code="request_header_fields_too_large",
        status=431,
    )
)
TOO_MANY_HEADERS = raw_error_response(
    InvalidRequest(
        "The request has too many headers.", code="request_header_fields_too_large", status=431
    )
)
TOO_MANY_CONNECTIONS = raw_error_response(
    ServiceUnavailable(
        "The server has too many open connections; retry shortly.",
        retry_after=1,
        code="too_many_connections",
    )
)
INTERNAL_ERROR_BODY = ApiError(
    "The server had an internal error.", code="internal_error"
).envelope()


def parse_error(exc: httptools.HttpParserError) -> bytes:
    """The 400 for a request the parser rejected, naming llhttp's reason."""
    # llhttp's reasons are fixed phrases ("Invalid character in chunk size"): safe to echo.
    reason = str(exc) if not isinstance(exc, httptools.HttpParserCallbackError) else ""
    message = f"Invalid HTTP request: {reason}." if reason else "Invalid HTTP request."
    return raw_error_response(InvalidRequest(message, code="invalid_http_request"))
