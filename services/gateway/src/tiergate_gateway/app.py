"""`create_app(settings)`: the gateway's routes, error handling, edge hooks and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, asgi, route
from litestar.params import FromPath
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from tiergate_gateway.catalog import Catalog
from tiergate_gateway.chat import ChatService
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.readiness import BackendProber
from tiergate_gateway.settings import GatewaySettings, load, validate
from tiergate_gateway.upstream.client import Upstream
from tiergate_runtime.edge import edge_hook, request_record
from tiergate_runtime.errors import NotFound, exception_handlers
from tiergate_runtime.health import health_handlers
from tiergate_runtime.logging import configure_logging
from tiergate_runtime.metrics import metrics_handler
from tiergate_runtime.server import ServerSettings
from tiergate_runtime.tracing import configure_tracing

__all__ = ["create_app", "from_environment"]


def create_app(
    settings: GatewaySettings, *, tracer_provider: TracerProvider | None = None
) -> Litestar:
    """Build the gateway app from validated settings (validated again here, cheaply).

    `tracer_provider` overrides the one built from `settings.tracing` (tests pass an
    in-memory exporter); with neither, no spans are made.
    """
    validate(settings)
    provider = tracer_provider or configure_tracing(settings.tracing, "gateway")
    tracer = provider.get_tracer("tiergate.gateway") if provider is not None else None
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    catalog = Catalog(settings)
    upstreams = {name: Upstream(name, b, metrics) for name, b in settings.backends.items()}
    chat = ChatService(catalog, upstreams, metrics, settings.max_body_bytes, tracer)
    prober = BackendProber(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        for upstream in upstreams.values():
            upstream.start()
        prober.start()
        try:
            yield
        finally:
            await prober.stop()
            for upstream in upstreams.values():
                await upstream.aclose()
            if provider is not None and tracer_provider is None:
                provider.shutdown()  # flushes spans not yet exported

    chat_completions = asgi("/v1/chat/completions", copy_scope=False, include_in_schema=False)(chat)

    @route("/v1/models", http_method=["GET", "HEAD"], sync_to_thread=False, include_in_schema=False)
    def list_models() -> Response[bytes]:
        return Response(catalog.list_body, media_type="application/json")

    @route(
        "/v1/models/{model_id:path}",
        http_method=["GET", "HEAD"],
        sync_to_thread=False,
        include_in_schema=False,
    )
    def get_model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> Response[bytes]:
        model_id = model_id.removeprefix("/")  # a `:path` parameter keeps its leading slash
        body = catalog.model_body(model_id)
        if body is None:
            raise NotFound(
                f"The model '{model_id[:128]}' does not exist.",
                param="model",
                code="model_not_found",
            )
        request_record(request.scope).model = model_id
        return Response(body, media_type="application/json")

    app = Litestar(
        route_handlers=[
            chat_completions,
            list_models,
            get_model,
            *health_handlers(prober.not_ready_reason),
            metrics_handler(registry),
        ],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        before_send=[edge_hook(metrics.http)],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    app.state.prober = prober
    app.state.metrics = metrics
    return app


def from_environment() -> tuple[Litestar, ServerSettings]:
    """Settings from the environment, logging configured, the app: one worker's start-up."""
    settings = load()
    configure_logging(settings.server.log_level, service="gateway")
    return create_app(settings), settings.server
