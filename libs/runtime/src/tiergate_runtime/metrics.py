"""Prometheus metrics: a registry per app, HTTP request metrics with bounded labels, `/metrics`.

Each `create_app` builds its own `CollectorRegistry` (so two apps in one test process never
share counters) and hands it to the service's own metric sets. Labels are always bounded: the
route template (never the raw path), a known method, the status code.
"""

from __future__ import annotations

import os

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "HttpMetrics",
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


def metrics_handler(registry: CollectorRegistry) -> HTTPRouteHandler:
    """`GET /metrics`: the Prometheus exposition of `registry`."""

    # Several workers (see workers.py): every worker's values live in shared files, summed
    # here, so a scrape that lands on any worker sees the whole service.
    if MULTIPROC_DIR_ENV in os.environ:
        shared = CollectorRegistry()
        MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        registry = shared

    @get("/metrics", sync_to_thread=False, include_in_schema=False)
    def metrics() -> Response[bytes]:
        return Response(render_metrics(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
