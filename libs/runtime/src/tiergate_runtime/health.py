"""Health and readiness endpoints: `{"status":"ok"}` and nothing more, or a 503 envelope."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Response, route
from litestar.handlers import HTTPRouteHandler

from tiergate_runtime.errors import ServiceUnavailable

__all__ = ["OK_BODY", "health_handlers"]

OK_BODY = b'{"status":"ok"}'


def _ok() -> Response[bytes]:
    return Response(OK_BODY, media_type="application/json")


def health_handlers(is_ready: Callable[[], str | None]) -> list[HTTPRouteHandler]:
    """`GET /healthz` (process is up) and `GET /readyz` (ready to serve).

    `is_ready()` returns None when ready, else the reason, which becomes a 503 envelope's
    message (with Retry-After) — never internal detail beyond that one sentence.
    """

    @route("/healthz", http_method=["GET", "HEAD"], sync_to_thread=False, include_in_schema=False)
    def healthz() -> Response[bytes]:
        return _ok()

    @route("/readyz", http_method=["GET", "HEAD"], sync_to_thread=False, include_in_schema=False)
    def readyz() -> Response[bytes]:
        reason = is_ready()
        if reason is not None:
            raise ServiceUnavailable(reason, retry_after=2, code="not_ready")
        return _ok()

    return [healthz, readyz]
