"""`create_app(settings)`: the gpu-llm routes, error handling, edge hooks and lifespan.

- `/v1/*` is proxied to the engine serving the requested model when that engine holds the GPU
  and is ready; otherwise a 503 envelope with `Retry-After` and a clear message (never an
  empty body), and the request counts as demand for that engine's swap.
- `GET /v1/models`: every model of the box, each with its engine and the engine's state.
- `GET /status`: engine states, the hot engine, since, last used, in flight.
- `POST /v1/engines/{name}/wake` and `/sleep` (admin token): take or release the GPU now.
- `POST /v1/models/{model}/wake` (admin token): a gateway's wake — demand for the model's
  engine, which the swap rule weighs like a request.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, get, post, route
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from prometheus_client import CollectorRegistry

from tiergate_gpu_llm.engine import EngineProcess
from tiergate_gpu_llm.metrics import GpuMetrics
from tiergate_gpu_llm.publish import StatePublisher
from tiergate_gpu_llm.settings import GpuLlmSettings, validate
from tiergate_gpu_llm.supervisor import Supervisor
from tiergate_runtime.app import service_app
from tiergate_runtime.errors import (
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from tiergate_runtime.http_transport import no_cookies
from tiergate_runtime.proxy import ReverseProxy
from tiergate_state.store import connect

__all__ = ["create_app"]

_encode = msgspec.json.Encoder().encode


class _ModelOnly(msgspec.Struct):
    model: str | None = None


_decode_model = msgspec.json.Decoder(_ModelOnly).decode


def _json(value: object, status: int = 200) -> Response[bytes]:
    return Response(_encode(value), status_code=status, media_type="application/json")


def _require_admin(request: Request[Any, Any, Any], expected: str | None) -> None:
    if expected is None:
        raise NotFound(f"Unknown path: {request.method} {request.url.path}", code="unknown_url")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized("A valid admin token is required.", code="invalid_admin_token")


def _model_of(body: bytes) -> str:
    try:
        model = _decode_model(body).model if body else None
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    return model


def _not_loaded(supervisor: Supervisor, name: str, model: str) -> ServiceUnavailable:
    """The 503 for a model whose engine does not hold the GPU; counts as demand for it."""
    retry = supervisor.want(name)
    state, hot = supervisor.status[name].state, supervisor.hot
    if state == "starting":
        why = f"its engine '{name}' is starting"
    elif hot:
        why = f"the GPU is held by '{hot}'"
    else:
        why = f"its engine '{name}' is {state}"
    return ServiceUnavailable(
        f"The model '{model[:128]}' is not loaded right now ({why}); retry shortly.",
        retry_after=max(1, round(retry)),
        code="model_loading",
    )


def _control_routes(settings: GpuLlmSettings, supervisor: Supervisor) -> list[HTTPRouteHandler]:
    """`/status`, and the admin endpoints that wake or release engines."""

    def engine_named(name: str) -> str:
        if name not in supervisor.engines:
            raise NotFound(f"No engine named '{name[:64]}'.", code="engine_not_found")
        return name

    @get("/status")
    async def status() -> Response[bytes]:
        return _json(supervisor.snapshot())

    @post("/v1/engines/{name:str}/wake", status_code=200)
    async def wake(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        _require_admin(request, settings.admin_token)
        await supervisor.wake(engine_named(name))
        return _json(supervisor.snapshot())

    @post("/v1/engines/{name:str}/sleep", status_code=200)
    async def sleep(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        _require_admin(request, settings.admin_token)
        await supervisor.sleep(engine_named(name))
        return _json(supervisor.snapshot())

    @post("/v1/models/{model:str}/wake", status_code=202)
    async def want_model(request: Request[Any, Any, Any], model: FromPath[str]) -> Response[bytes]:
        # A gateway's wake: demand for the model's engine, decided by the swap rule (unlike
        # the engine wake above, which takes the GPU now).
        _require_admin(request, settings.admin_token)
        name = supervisor.engine_for(model)
        if name is None:
            raise NotFound(f"The model '{model[:128]}' is not served here.", code="model_not_found")
        if not supervisor.serving(name):
            supervisor.want(name)
        return _json(supervisor.snapshot(), 202)

    return [status, wake, sleep, want_model]


def create_app(settings: GpuLlmSettings, *, tick_s: float = 0.25) -> Litestar:
    """Build the app from validated settings."""
    validate(settings)
    registry = CollectorRegistry()
    metrics = GpuMetrics(registry)
    control = httpx.AsyncClient(cookies=no_cookies(), trust_env=False)
    engines = {
        name: EngineProcess(name, engine, control, settings.health.probe_timeout_s)
        for name, engine in settings.engines.items()
    }
    publisher = None
    if settings.store.url is not None:
        store = connect(settings.store)
        publisher = StatePublisher(store, settings.store.key_prefix, settings.box)
    supervisor = Supervisor(settings, engines, metrics, tick_s=tick_s, publisher=publisher)
    proxy = ReverseProxy(None, "gpu engine")

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        proxy.client = httpx.AsyncClient(
            cookies=no_cookies(),
            trust_env=False,
            timeout=httpx.Timeout(
                connect=5.0, read=settings.proxy_read_timeout_s, write=60.0, pool=10.0
            ),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=128),
        )
        supervisor.start()
        try:
            yield
        finally:
            await supervisor.stop()
            await proxy.client.aclose()
            await control.aclose()
            if publisher is not None:
                await publisher.aclose()

    @get("/v1/models")
    async def models() -> Response[bytes]:
        data = [
            {
                "id": model,
                "object": "model",
                "created": 0,
                "owned_by": name,
                "tiergate": {"engine": name, "state": supervisor.status[name].state},
            }
            for name, engine in engines.items()
            for model in engine.settings.models
        ]
        return _json({"object": "list", "data": data})

    @route("/v1/{path:path}", http_method=["POST"], include_in_schema=False)
    async def to_engine(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[Any]:
        del path
        model = _model_of(await request.body())
        name = supervisor.engine_for(model)
        if name is None:
            raise NotFound(
                f"The model '{model[:128]}' is not served by this GPU box.",
                param="model",
                code="model_not_found",
            )
        if not supervisor.serving(name):
            metrics.unavailable.labels(name).inc()
            raise _not_loaded(supervisor, name, model)
        supervisor.begin(name)
        base = engines[name].settings.base_url
        return await proxy.forward(request, base, on_finish=lambda: supervisor.end(name))

    app = service_app(
        [*_control_routes(settings, supervisor), models, to_engine],
        registry=registry,
        http_metrics=metrics.http,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.supervisor = supervisor
    return app
