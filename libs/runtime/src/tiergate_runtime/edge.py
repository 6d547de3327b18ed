"""The edge of every service: request id, the per-request access record, one log line per request.

`request_record(scope)` returns the request's `AccessRecord`, created on first use: handlers
add what they learn (model, backend, tokens) and the edge finishes it. `edge_hook(...)` is a
Litestar `before_send` hook that sees every response, including framework errors such as an
unknown route: it stamps `x-request-id` on the response and finishes the record when the last
body message goes out. A stream cut short by the client is finished by the streaming code
(`record.finish(outcome="client_disconnected")`), since no last body message is ever sent.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from tiergate_runtime.metrics import HttpMetrics

__all__ = ["REQUEST_ID_HEADER", "AccessRecord", "edge_hook", "request_id", "request_record"]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
# Accept a caller's id only if it is short and cannot break a log line or a header.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_RECORD_KEY = "tiergate_access_record"
_access_log = structlog.get_logger("tiergate.access")
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class AccessRecord:
    """What one request did; logged once, as one line, when the request ends."""

    __slots__ = (
        "backend",
        "completion_tokens",
        "extra_headers",
        "finished",
        "method",
        "metrics",
        "model",
        "outcome",
        "prompt_tokens",
        "request_id",
        "route",
        "started",
        "status",
        "tier",
        "trace_id",
    )

    def __init__(self, request_id: str, method: str, metrics: HttpMetrics | None) -> None:
        self.request_id = request_id
        self.method = method
        self.metrics = metrics
        self.route = "unmatched"
        self.started = time.perf_counter()
        self.status = 0
        self.model: str | None = None
        self.backend: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.outcome = "ok"
        self.trace_id: str | None = None
        self.tier: str | None = None
        self.finished = False
        self.extra_headers: list[tuple[bytes, bytes]] = []

    def add_header(self, name: str, value: str) -> None:
        """Add a response header, including to error responses rendered by the framework."""
        self.extra_headers.append((name.encode("latin-1"), value.encode("latin-1")))

    def set_header(self, name: str, value: str) -> None:
        """Add a response header, replacing any earlier value of the same name."""
        key = name.encode("latin-1")
        self.extra_headers = [(k, v) for k, v in self.extra_headers if k != key]
        self.extra_headers.append((key, value.encode("latin-1")))

    def finish(self, *, outcome: str | None = None) -> None:
        """Log the request and record its metrics; later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        if outcome is not None:
            self.outcome = outcome
        elif self.outcome == "ok" and self.status >= 400:
            self.outcome = "rejected" if self.status < 500 else "failed"
        seconds = time.perf_counter() - self.started
        if self.metrics is not None:
            self.metrics.observe(self.route, self.method, self.status, seconds)
        # Probes from load balancers and Prometheus would drown the log at info.
        quiet = self.route in _QUIET_ROUTES and self.status < 500
        (_access_log.debug if quiet else _access_log.info)(
            "request",
            request_id=self.request_id,
            method=self.method,
            route=self.route,
            status=self.status,
            duration_ms=round(seconds * 1000, 2),
            model=self.model,
            backend=self.backend,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            outcome=self.outcome,
            tier=self.tier,
            trace_id=self.trace_id,
        )


def _incoming_request_id(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_HEADER_BYTES:
            if _VALID_REQUEST_ID.fullmatch(value):
                return str(value, "ascii")
            break
    return uuid.uuid4().hex


def request_record(scope: Any, metrics: HttpMetrics | None = None) -> AccessRecord:
    """The request's access record, created (with its request id) on first use."""
    state: dict[str, Any] = scope.setdefault("state", {})
    record: AccessRecord | None = state.get(_RECORD_KEY)
    if record is None:
        record = AccessRecord(_incoming_request_id(scope), scope.get("method", "GET"), metrics)
        state[_RECORD_KEY] = record
    return record


def request_id(scope: Any) -> str:
    """The request id: the caller's `x-request-id` if well-formed, else a new one."""
    return request_record(scope).request_id


_CSP = b"content-security-policy"


def edge_hook(
    metrics: HttpMetrics, static_headers: Sequence[tuple[bytes, bytes]] = ()
) -> Callable[[Any, Any], Awaitable[None]]:
    """A Litestar `before_send` hook: request id header, status, finish on the last body.

    `static_headers` go on every response (the security headers of `browser.py`); a
    response that sets its own `Content-Security-Policy` (a page of the web chat) keeps it
    instead of the API's.
    """
    fixed = list(static_headers)
    fixed_but_csp = [(k, v) for k, v in fixed if k != _CSP]

    async def before_send(message: Any, scope: Any) -> None:
        if scope.get("type") != "http":
            return
        record = request_record(scope, metrics)
        kind = message["type"]
        if kind == "http.response.start":
            record.metrics = metrics
            record.status = message["status"]
            record.route = scope.get("path_template") or _mount_path(scope) or "unmatched"
            headers = list(message.get("headers", ()))
            own_csp = any(key == _CSP for key, _ in headers)
            headers.append((_REQUEST_ID_HEADER_BYTES, record.request_id.encode("ascii")))
            headers.extend(fixed_but_csp if own_csp else fixed)
            headers.extend(record.extra_headers)
            message["headers"] = headers
        elif kind == "http.response.body" and not message.get("more_body", False):
            try:
                record.finish()
            except Exception:
                record.finished = True

    return before_send


def _mount_path(scope: Any) -> str | None:
    """A mounted ASGI app's path (Litestar leaves `path_template` empty for mounts)."""
    handler = scope.get("route_handler")
    paths = getattr(handler, "paths", None) if getattr(handler, "is_mount", False) else None
    return min(paths) if paths else None
