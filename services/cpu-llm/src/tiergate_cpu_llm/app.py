"""The cpu-llm app: the engine child's `/v1` API relayed, health, readiness, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get, route
from litestar.datastructures import State
from litestar.params import FromPath
from prometheus_client import CollectorRegistry, Gauge

from tiergate_cpu_llm.engine import Engine
from tiergate_cpu_llm.model import resolve_model_path
from tiergate_cpu_llm.settings import CpuLlmSettings
from tiergate_runtime.app import service_app
from tiergate_runtime.errors import ServiceUnavailable
from tiergate_runtime.http_transport import no_cookies
from tiergate_runtime.metrics import HttpMetrics
from tiergate_runtime.proxy import ReverseProxy

__all__ = ["create_app"]


def create_app(settings: CpuLlmSettings) -> Litestar:
    """Build the app; raises ModelFileError (naming the path) if the model cannot be read."""
    model_path = resolve_model_path(settings.engine.model_path)
    engine = Engine(settings.engine, model_path)
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry, "tiergate_cpu_llm")
    ready_gauge = Gauge(
        "tiergate_cpu_llm_engine_ready",
        "1 while the engine answers its health check.",
        registry=registry,
    )
    ready_gauge.set_function(lambda: 1.0 if engine.ready else 0.0)
    starts = Gauge(
        "tiergate_cpu_llm_engine_starts", "Engine child processes started.", registry=registry
    )
    starts.set_function(lambda: float(engine.starts))
    proxy = ReverseProxy(None, "cpu-llm")

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        proxy.client = httpx.AsyncClient(
            cookies=no_cookies(),
            timeout=httpx.Timeout(
                connect=2.0, read=settings.proxy_read_timeout_s, write=30.0, pool=5.0
            ),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )
        engine.start()
        try:
            yield
        finally:
            await engine.stop()
            await proxy.client.aclose()

    def readiness() -> str | None:
        return None if engine.ready else "The model engine is starting."

    async def to_engine(request: Request[Any, Any, State]) -> Response[Any]:
        if not engine.serving or engine.base_url is None:
            raise ServiceUnavailable("The model engine is starting.", retry_after=2)
        return await proxy.forward(request, engine.base_url)

    @route("/v1/{path:path}", http_method=["GET", "POST"], include_in_schema=False)
    async def v1(request: Request[Any, Any, State], path: FromPath[str]) -> Response[Any]:
        del path
        return await to_engine(request)

    @get(["/slots", "/props"], include_in_schema=False)
    async def slots(request: Request[Any, Any, State]) -> Response[Any]:
        """llama.cpp's slot monitor and server properties (read-only): which slots are
        generating right now; `total_slots`, the chat template's capabilities. The gateway
        bounds its queue by the slot count (issue 10)."""
        return await to_engine(request)

    app = service_app(
        [v1, slots],
        registry=registry,
        http_metrics=http_metrics,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        not_ready=readiness,
    )
    app.state.engine = engine
    return app
