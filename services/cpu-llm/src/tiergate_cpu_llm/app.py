"""The cpu-llm app: the engines' `/v1` APIs relayed, health, readiness, metrics.

Two engine children: the chat engine (every `/v1/*` path, `/slots`, `/props`) and, unless
`embedding.enabled` is false, the embedding engine (`POST /v1/embeddings`, see
`embedding_relay.py`). `/v1/models` lists what both serve right now. `/readyz` is the chat
engine's readiness only: the gateway takes this whole service out of rotation when it fails,
and a broken embedding engine must not stop chat answers; `/readyz/embeddings` is the
embedding engine's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, get, route
from litestar.datastructures import State
from litestar.params import FromPath
from prometheus_client import CollectorRegistry, Gauge

from tiergate_cpu_llm.embedding_model import resolve_embedding_model
from tiergate_cpu_llm.embedding_relay import embedding_routes
from tiergate_cpu_llm.engine import Engine, chat_launch, embedding_launch
from tiergate_cpu_llm.packaged_model import resolve_chat_model
from tiergate_cpu_llm.settings import CpuLlmSettings
from tiergate_runtime.app import service_app
from tiergate_runtime.errors import ServiceUnavailable
from tiergate_runtime.http_transport import no_cookies
from tiergate_runtime.metrics import HttpMetrics
from tiergate_runtime.proxy import ReverseProxy

__all__ = ["create_app"]

_STARTING = "The model engine is starting."


def engine_gauges(registry: CollectorRegistry, prefix: str, engine: Engine, what: str) -> None:
    ready = Gauge(
        f"{prefix}_ready", f"1 while the {what} answers its health check.", registry=registry
    )
    ready.set_function(lambda: 1.0 if engine.ready else 0.0)
    starts = Gauge(f"{prefix}_starts", f"{what.capitalize()} processes started.", registry=registry)
    starts.set_function(lambda: float(engine.starts))


def _model_list(chat: Engine, embedder: Engine | None) -> bytes:
    """The chat engine's `/v1/models` answer with the embedding engine's models added while
    it serves them (llama.cpp's shape: `data` entries with `meta`, and `models`)."""
    if not chat.serving or chat.models is None:
        raise ServiceUnavailable(_STARTING, retry_after=2)
    answer = dict(chat.models)
    if embedder is not None and embedder.serving and embedder.models is not None:
        for key in ("data", "models"):
            extra, mine = embedder.models.get(key), answer.get(key)
            if isinstance(extra, list) and isinstance(mine, list):
                answer[key] = [*mine, *extra]
    return msgspec.json.encode(answer)


def create_app(settings: CpuLlmSettings) -> Litestar:
    """Build the app; raises ModelFileError (naming the path) if a model cannot be read."""
    chat_model = resolve_chat_model(settings.engine)
    chat = Engine("chat", settings.engine, chat_launch(settings.engine, chat_model))
    embedder: Engine | None = None
    if settings.embedding.enabled:
        embed_model = resolve_embedding_model(settings.embedding)
        embed_launch = embedding_launch(settings.embedding, embed_model)
        embedder = Engine("embedding", settings.embedding, embed_launch)
    engines = [chat] if embedder is None else [chat, embedder]

    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry, "tiergate_cpu_llm")
    engine_gauges(registry, "tiergate_cpu_llm_engine", chat, "engine")
    if embedder is not None:
        engine_gauges(registry, "tiergate_cpu_llm_embedding_engine", embedder, "embedding engine")
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
        for engine in engines:
            engine.start()
        try:
            yield
        finally:
            for engine in engines:
                await engine.stop()
            await proxy.client.aclose()

    def readiness() -> str | None:
        return None if chat.ready else _STARTING

    async def to_engine(request: Request[Any, Any, State]) -> Response[Any]:
        if not chat.serving or chat.base_url is None:
            raise ServiceUnavailable(_STARTING, retry_after=2)
        return await proxy.forward(request, chat.base_url)

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

    @get("/v1/models", include_in_schema=False, sync_to_thread=False)
    def models() -> Response[bytes]:
        return Response(_model_list(chat, embedder), media_type="application/json")

    app = service_app(
        [models, *embedding_routes(embedder, settings.embedding, proxy), v1, slots],
        registry=registry,
        http_metrics=http_metrics,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        not_ready=readiness,
    )
    app.state.engine = chat
    app.state.embedding_engine = embedder
    return app
