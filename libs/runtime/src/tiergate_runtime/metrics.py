"""Prometheus metrics: a registry per app, HTTP request metrics with bounded labels, `/metrics`.

Each `create_app` builds its own `CollectorRegistry` (so two apps in one test process never
share counters) and hands it to the service's own metric sets. Labels are always bounded: the
route template (never the raw path), a known method, the status code.

`/metrics` is a route of the app; with `[server] metrics_port` set, the server also serves
`metrics_asgi(registry)` on that internal port and marks requests on the public port
(`METRICS_ELSEWHERE` in the scope's state), where the route then answers 404 (issue 10).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tiergate_runtime.errors import error_body

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch
# A key of the request scope's `state`: true on a public port whose metrics are served on an
# internal one (set by tiergate_runtime.http_protocol).
METRICS_ELSEWHERE = "tiergate_metrics_elsewhere"
# Where `service_app` keeps the app's `metrics_asgi`, for the server's internal port.
METRICS_APP_KEY = "tiergate_metrics_app"

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "METRICS_APP_KEY",
    "METRICS_ELSEWHERE",
    "ASGIApp",
    "HttpMetrics",
    "metrics_asgi",
    "metrics_handler",
    "render_metrics",
]

# From 1 ms (a cached error) to 5 min (a long generation on a CPU model).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class HttpMetrics:
    """Request count and duration per route template, method and status."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            namespace=namespace,
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            ["route", "method"],
            namespace=namespace,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route, method).observe(seconds)


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of `registry`."""
    return generate_latest(registry)


def _exposed(registry: CollectorRegistry) -> CollectorRegistry:
    # Several workers (see workers.py): every worker's values live in shared files, summed
    # here, so a scrape that lands on any worker sees the whole service.
    if MULTIPROC_DIR_ENV in os.environ:
        shared = CollectorRegistry()
        MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        return shared
    return registry


def metrics_handler(registry: CollectorRegistry) -> HTTPRouteHandler:
    """`GET /metrics`: the Prometheus exposition of `registry` (404 where served elsewhere)."""
    registry = _exposed(registry)

    @get("/metrics", sync_to_thread=False, include_in_schema=False)
    def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        if request.scope["state"].get(METRICS_ELSEWHERE):
            raise NotFoundException()  # rendered like any unknown path
        return Response(render_metrics(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def metrics_asgi(registry: CollectorRegistry) -> ASGIApp:
    """A bare ASGI app for the internal metrics port: `GET /metrics`, and 404 for the rest."""
    registry = _exposed(registry)
    text_headers = [(b"content-type", CONTENT_TYPE_LATEST.encode("latin-1"))]
    json_headers = [(b"content-type", b"application/json")]

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/metrics" and method in {"GET", "HEAD"}:
            status, headers, body = 200, text_headers, render_metrics(registry)
        else:
            message = f"Unknown path: {method} {path}"[:300]
            body = error_body(message, "invalid_request_error", code="unknown_url")
            status, headers = 404, json_headers
        length = (b"content-length", str(len(body)).encode("ascii"))
        await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
        await send({"type": "http.response.body", "body": body})

    return app
