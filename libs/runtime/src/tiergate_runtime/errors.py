"""The closed error hierarchy and the one renderer that turns every error into OpenAI's envelope.

Handlers raise `ApiError` subclasses; `exception_handlers()` is the one handler map every
service passes to Litestar, so framework errors (unknown route, wrong method, body too large,
anything unexpected) are rendered the same way: `{"error": {message, type, param, code}}` with
the right status, `Retry-After` on 429/503, never a framework default body or a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException

from tiergate_proto.errors import ErrorDetail, ErrorEnvelope

__all__ = [
    "ApiError",
    "BadGateway",
    "Forbidden",
    "GatewayTimeout",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_body",
    "error_response",
    "exception_handlers",
]

_log = structlog.get_logger("tiergate.errors")
_encode = msgspec.json.Encoder().encode


class ApiError(Exception):
    """An error with an HTTP status and an OpenAI error type; rendered at the edge."""

    status: int = 500
    error_type: str = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type

    def response_headers(self) -> dict[str, str]:
        """Headers this error adds to its response (Retry-After where it applies)."""
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return headers

    def envelope(self) -> bytes:
        """The JSON envelope body for this error."""
        return error_body(self.message, self.error_type, param=self.param, code=self.code)


class InvalidRequest(ApiError):
    """400: the body is not valid JSON or does not match the API."""

    status = 400
    error_type = "invalid_request_error"


class Unauthorized(ApiError):
    """401: a credential was presented and is not valid (never a silent downgrade).

    Carries `WWW-Authenticate` (RFC 6750) naming the problem.
    """

    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def __init__(self, message: str, *, realm: str = "tiergate", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # RFC 6750 §3: error_description is a quoted-string of printable ASCII minus `"` and `\`.
        description = "".join(c for c in message if " " <= c <= "~" and c not in '"\\')
        self.headers.setdefault(
            "www-authenticate",
            f'Bearer realm="{realm}", error="invalid_token", '
            f'error_description="{description[:200]}"',
        )


class Forbidden(ApiError):
    """403: the caller is known but may not do this (model, tool or origin not allowed)."""

    status = 403
    error_type = "permission_error"
    default_code = "forbidden"


class RateLimited(ApiError):
    """429: a limit is reached; always carries Retry-After (whole seconds, at least 1)."""

    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(message, retry_after=max(1, retry_after), **kwargs)


class NotFound(ApiError):
    """404: unknown model, route or resource."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class PayloadTooLarge(ApiError):
    """413: the request body exceeds the configured limit."""

    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaType(ApiError):
    """415: the request body is not declared as JSON."""

    status = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class BadGateway(ApiError):
    """502: the upstream answered with something we cannot relay, or failed."""

    status = 502
    error_type = "server_error"
    default_code = "bad_gateway"


class ServiceUnavailable(ApiError):
    """503: the upstream is not there right now; always carries Retry-After."""

    status = 503
    error_type = "server_error"
    default_code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)


class GatewayTimeout(ApiError):
    """504: the upstream did not answer in time."""

    status = 504
    error_type = "server_error"
    default_code = "upstream_timeout"


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """Encode OpenAI's error envelope."""
    detail = ErrorDetail(message=message, type=error_type, param=param, code=code)
    return _encode(ErrorEnvelope(error=detail))


def error_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> Response[bytes]:
    """A JSON response carrying an already-encoded error envelope."""
    return Response(
        content=body,
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _render_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return error_response(exc.status, exc.envelope(), exc.response_headers())


def _render_not_found(request: Request[Any, Any, Any], _: NotFoundException) -> Response[bytes]:
    body = error_body(
        f"Unknown path: {request.method} {request.url.path}",
        "invalid_request_error",
        code="unknown_url",
    )
    return error_response(404, body)


def _render_method_not_allowed(
    request: Request[Any, Any, Any], exc: MethodNotAllowedException
) -> Response[bytes]:
    body = error_body(
        f"Method {request.method} is not allowed on {request.url.path}",
        "invalid_request_error",
        code="method_not_allowed",
    )
    allow = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
    return error_response(405, body, {"allow": allow} if allow else None)


_HTTP_STATUS_MESSAGES: dict[int, tuple[str, str]] = {
    400: ("The request could not be parsed.", "bad_request"),
    413: ("The request body is too large.", "request_too_large"),
    415: ("Unsupported content type.", "unsupported_media_type"),
}


def _render_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    # Framework-raised HTTP errors carry framework wording; we give our own, stable message.
    status = exc.status_code
    message, code = _HTTP_STATUS_MESSAGES.get(status, ("The request failed.", "http_error"))
    error_type = "invalid_request_error" if 400 <= status < 500 else "server_error"
    headers = {"retry-after": "1"} if status in {429, 503} else None
    return error_response(status, error_body(message, error_type, code=code), headers)


def _render_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    _log.error(
        "unhandled_error",
        path=request.url.path,
        method=request.method,
        error_class=type(exc).__name__,
        exc_info=exc,
    )
    body = error_body("The server had an internal error.", "server_error", code="internal_error")
    return error_response(500, body)


def exception_handlers() -> dict[type[Exception] | int, Callable[..., Response[bytes]]]:
    """The handler map every service passes to `Litestar(exception_handlers=...)`."""
    return {
        ApiError: _render_api_error,
        NotFoundException: _render_not_found,
        MethodNotAllowedException: _render_method_not_allowed,
        HTTPException: _render_http_exception,
        Exception: _render_unexpected,
    }
