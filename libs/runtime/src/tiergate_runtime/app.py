"""`service_app(...)`: the Litestar app every service is, with the parts every service shares.

Health and metrics routes, the one error-handler map, the edge hook (request id, access log,
HTTP metrics, security headers when a service faces browsers), the body limit, and no
framework extras (no OpenAPI schema, no debug pages, no framework logging config).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from litestar import Litestar
from litestar.types import ControllerRouterHandler
from prometheus_client import CollectorRegistry

from tiergate_runtime.browser import BrowserSettings, browser_guard, security_headers
from tiergate_runtime.edge import edge_hook
from tiergate_runtime.errors import exception_handlers
from tiergate_runtime.health import health_handlers
from tiergate_runtime.metrics import METRICS_APP_KEY, HttpMetrics, metrics_asgi, metrics_handler

__all__ = ["service_app"]


def service_app(
    route_handlers: Sequence[ControllerRouterHandler],
    *,
    registry: CollectorRegistry,
    http_metrics: HttpMetrics,
    lifespan: Callable[[Litestar], AbstractAsyncContextManager[None]],
    max_body_bytes: int,
    not_ready: Callable[[], str | None] = lambda: None,
    browser: BrowserSettings | None = None,
    public_prefixes: tuple[str, ...] = (),
    extra_handlers: dict[type[Exception] | int, Callable[..., Any]] | None = None,
) -> Litestar:
    """The app: `route_handlers` plus `/healthz`, `/readyz` (`not_ready()`), `/metrics`.

    With `browser`, every response carries the security headers and the CORS/origin guard
    runs in front of the routes (`public_prefixes`: paths of public files, readable from any
    origin). `app.state[METRICS_APP_KEY]` is the bare metrics app that
    the server puts on the internal port when `[server] metrics_port` is set.
    """
    handlers = {**exception_handlers(), **(extra_handlers or {})}
    static = security_headers(browser) if browser is not None else []
    app = Litestar(
        route_handlers=[*route_handlers, *health_handlers(not_ready), metrics_handler(registry)],
        lifespan=[lifespan],
        exception_handlers=handlers,
        before_send=[edge_hook(http_metrics, static)],
        middleware=[browser_guard(browser, public_prefixes)] if browser is not None else [],
        request_max_body_size=max_body_bytes,
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    app.state[METRICS_APP_KEY] = metrics_asgi(registry)
    return app
