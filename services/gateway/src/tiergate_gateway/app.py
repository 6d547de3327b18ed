"""`create_app(settings)`: the gateway's routes, error handling, edge hooks and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
from litestar import Litestar, Request, Response, asgi, route
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from tiergate_gateway.breaker import Breakers
from tiergate_gateway.catalog import Catalog
from tiergate_gateway.content_filter import compile_filters
from tiergate_gateway.endpoints.base import Endpoint
from tiergate_gateway.endpoints.chat import ChatEndpoint
from tiergate_gateway.endpoints.completions import CompletionsEndpoint, EmbeddingsEndpoint
from tiergate_gateway.endpoints.moderations import moderations_route
from tiergate_gateway.endpoints.responses import ResponsesEndpoint
from tiergate_gateway.endpoints.status import StatusPage, status_route
from tiergate_gateway.gate import Gate
from tiergate_gateway.grounding import Grounder
from tiergate_gateway.identity.directory import (
    LOOKUP_CONNECTIONS,
    AuthServiceDirectory,
    CachedDirectory,
    Directory,
    StoreSource,
)
from tiergate_gateway.identity.jwks import JwksCache
from tiergate_gateway.identity.resolver import IdentityResolver
from tiergate_gateway.limits import GatewayLimits
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.pipeline.act import Act
from tiergate_gateway.pipeline.run import Pipeline
from tiergate_gateway.readiness import BackendProber
from tiergate_gateway.records.ledger import AnswerLedger
from tiergate_gateway.records.routes import records_routes
from tiergate_gateway.records.service import Records
from tiergate_gateway.records.writer import RecordWriter
from tiergate_gateway.responses.store import ResponseStore
from tiergate_gateway.routing.router import Router
from tiergate_gateway.settings import GatewaySettings, load, validate
from tiergate_gateway.upstream.admission import Admission
from tiergate_gateway.upstream.client import Upstream
from tiergate_gateway.wake import WakeCoordinator
from tiergate_gateway.web import WIDGET_PREFIX, WebFiles, web_routes
from tiergate_runtime.app import service_app
from tiergate_runtime.browser import security_headers
from tiergate_runtime.clientip import TrustedProxies
from tiergate_runtime.edge import request_record
from tiergate_runtime.errors import NotFound
from tiergate_runtime.http_transport import no_cookies
from tiergate_runtime.logging import configure_logging
from tiergate_runtime.proxy import ReverseProxy
from tiergate_runtime.server import ServerSettings
from tiergate_runtime.tracing import configure_tracing
from tiergate_state.directory import StoreDirectory
from tiergate_state.keys import KeyLayout
from tiergate_state.limits import Limiter, ResilientLimiter
from tiergate_state.store import connect

__all__ = ["create_app", "from_environment"]


def create_app(
    settings: GatewaySettings,
    *,
    tracer_provider: TracerProvider | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Litestar:
    """Build the gateway app from validated settings (validated again here, cheaply).

    `tracer_provider` overrides the one built from `settings.tracing` (tests pass an
    in-memory exporter); with neither, no spans are made. `transports`: backend name → the
    transport its requests go through instead of a connection pool (`httpx.MockTransport`
    in tests that need no sockets).
    """
    validate(settings)
    compile_filters(settings.tiers)  # every tier's content filter, once; bad word files fail here
    provider = tracer_provider or configure_tracing(settings.tracing, "gateway")
    tracer = provider.get_tracer("tiergate.gateway") if provider is not None else None
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    catalog = Catalog(settings)
    injected = transports or {}
    upstreams = {
        name: Upstream(name, b, metrics, transport=injected.get(name), models=settings.models)
        for name, b in settings.backends.items()
    }
    store = connect(settings.store)
    auth_client = httpx.AsyncClient(
        timeout=settings.auth.timeout_s, cookies=no_cookies(), trust_env=False
    )
    # Key and session lookups get their own pool, as large as the directory lets run at once:
    # a burst of new keys queues in the directory (with a long wait), never in a pool shared
    # with the relay, the JWKS and grounding (issue 10, defect 3).
    lookup_client = httpx.AsyncClient(
        timeout=settings.auth.timeout_s,
        limits=httpx.Limits(
            max_connections=LOOKUP_CONNECTIONS, max_keepalive_connections=LOOKUP_CONNECTIONS
        ),
        cookies=no_cookies(),
        trust_env=False,
    )
    gate = _build_gate(settings, store, auth_client, lookup_client, metrics)
    router = Router(settings.routes, catalog, settings.languages)
    wake = _build_wake(settings, store, auth_client, metrics)
    _prepare_metrics(settings, metrics, wake)
    shedding = Admission(
        settings.backends,
        metrics,
        workers=settings.server.workers,
        learn_interval_s=settings.health_probe_interval_s,
    )
    act = Act(
        upstreams,
        metrics,
        wake=wake,
        breakers=Breakers(
            settings.resilience.breaker_threshold,
            settings.resilience.breaker_cooldown_s,
            metrics.breaker_state,
        ),
        shedding=shedding,
        grounder=(
            Grounder(
                auth_client,
                settings.rag.url,
                timeout_s=settings.rag.timeout_s,
                k=settings.rag.k,
                max_source_chars=settings.rag.max_source_chars,
                min_relevance=settings.rag.min_relevance,
                chars_per_token=settings.limits.chars_per_token,
                metrics=metrics,
            )
            if settings.rag.url is not None
            else None
        ),
        retries=settings.resilience.retries,
        keepalive_s=settings.hold_keepalive_s,
    )
    records = _build_records(settings, store, auth_client, metrics)
    pipeline = Pipeline(
        catalog,
        gate,
        router,
        act,
        max_body_bytes=settings.max_body_bytes,
        tracer=tracer,
        records=records,
    )
    prober = BackendProber(settings)
    status_page = StatusPage(
        settings, wake, act.breakers, lambda backend: prober.healthy.get(backend, True)
    )
    auth_proxy = _auth_proxy(settings, auth_client)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        for upstream in upstreams.values():
            upstream.start()
        prober.start()
        shedding.start()
        gate.limits.start()
        try:
            yield
        finally:
            await gate.limits.stop()
            await records.aclose()
            await wake.aclose()
            await prober.stop()
            await shedding.stop()
            for upstream in upstreams.values():
                await upstream.aclose()
            await auth_client.aclose()
            await lookup_client.aclose()
            await store.aclose()
            if provider is not None and tracer_provider is None:
                provider.shutdown()  # flushes spans not yet exported

    responses = ResponseStore(store, KeyLayout(settings.store.key_prefix), settings.responses.ttl_s)
    on_pipeline: list[Endpoint] = [
        ChatEndpoint(),
        CompletionsEndpoint(),
        EmbeddingsEndpoint(),
        ResponsesEndpoint(responses),
    ]
    endpoints = [
        asgi(endpoint.path, copy_scope=False, include_in_schema=False)(pipeline.handler(endpoint))
        for endpoint in on_pipeline
    ]

    app = service_app(
        [
            *endpoints,
            *_public_routes(settings, catalog, gate, auth_proxy),
            *_stored_responses(gate, responses),
            *records_routes(
                gate, records, settings.auth.url, auth_proxy if settings.auth.proxy else None
            ),
            status_route(status_page, gate, settings.status_cache_s),
            *web_routes(WebFiles(settings.web)),
            moderations_route(gate, metrics, settings.max_body_bytes),
        ],
        registry=registry,
        http_metrics=metrics.http,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        not_ready=prober.not_ready_reason,
        browser=settings.browser,
        public_prefixes=(WIDGET_PREFIX,),
    )
    app.state.update(
        {"prober": prober, "metrics": metrics, "gate": gate, "wake": wake, "records": records}
    )
    return app


def _public_routes(
    settings: GatewaySettings, catalog: Catalog, gate: Gate, auth_proxy: ReverseProxy
) -> list[HTTPRouteHandler]:
    """`/v1/models` (per tier), `/v1/models/{id}`, and the `/v1/auth/*` relay."""

    @route("/v1/models", http_method=["GET", "HEAD"], include_in_schema=False)
    async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
        record = request_record(request.scope)
        policy = gate.policy(await gate.principal(request.scope, record))
        return Response(catalog.list_body_for(policy.models), media_type="application/json")

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

    auth_url = settings.auth.url

    @route(
        ["/v1/auth/{path:path}", "/.well-known/jwks.json"],
        http_method=["GET", "POST", "PUT", "DELETE"],
        include_in_schema=False,
    )
    async def to_auth(request: Request[Any, Any, Any]) -> Response[Any]:
        if auth_url is None or not settings.auth.proxy:
            raise NotFound(f"Unknown path: {request.method} {request.url.path}", code="unknown_url")
        client_ip = gate.resolver.client_ip(request.scope)
        return await auth_proxy.forward(request, auth_url.rstrip("/"), client_ip=client_ip)

    return [list_models, get_model, to_auth]


def _stored_responses(gate: Gate, store: ResponseStore) -> list[HTTPRouteHandler]:
    """`GET` and `DELETE /v1/responses/{id}`: the caller's own stored responses only."""

    async def owner(request: Request[Any, Any, Any]) -> str:
        return (await gate.principal(request.scope, request_record(request.scope))).bucket

    @route("/v1/responses/{response_id:str}", http_method=["GET"], include_in_schema=False)
    async def get_response(
        request: Request[Any, Any, Any], response_id: FromPath[str]
    ) -> Response[bytes]:
        stored = await store.load(await owner(request), response_id, "response_id")
        return Response(msgspec.json.encode(stored.response), media_type="application/json")

    @route(
        "/v1/responses/{response_id:str}",
        http_method=["DELETE"],
        status_code=200,
        include_in_schema=False,
    )
    async def delete_response(
        request: Request[Any, Any, Any], response_id: FromPath[str]
    ) -> Response[bytes]:
        await store.delete(await owner(request), response_id)
        deleted = {"id": response_id, "object": "response", "deleted": True}
        return Response(msgspec.json.encode(deleted), media_type="application/json")

    return [get_response, delete_response]


def _build_records(
    settings: GatewaySettings,
    store: aioredis.Redis,
    client: httpx.AsyncClient,
    metrics: GatewayMetrics,
) -> Records:
    """Feedback and consented history: the ledger in the store, writes to the auth service."""
    config = settings.records
    auth = settings.auth
    writer = None
    if config.enabled and auth.url is not None and auth.internal_token is not None:
        writer = RecordWriter(
            client,
            auth.url,
            auth.internal_token,
            metrics,
            retries=config.retries,
            max_pending=config.max_pending,
            max_chat_bytes=config.max_chat_bytes,
        )
    metrics.prepare_records(model.id for model in settings.models)
    ledger = AnswerLedger(store, KeyLayout(settings.store.key_prefix), config.feedback_window_s)
    return Records(config, ledger, writer, metrics, pepper=auth.pepper)


def _build_wake(
    settings: GatewaySettings,
    store: aioredis.Redis,
    client: httpx.AsyncClient,
    metrics: GatewayMetrics,
) -> WakeCoordinator:
    """Wake handling for the backends that scale to zero (each waits for its first model)."""
    models: dict[str, str] = {}
    for model in settings.models:
        models.setdefault(model.backend, model.engine_model)
    return WakeCoordinator(
        settings.backends, models, store, client, settings.store.key_prefix, metrics=metrics
    )


def _prepare_metrics(
    settings: GatewaySettings, metrics: GatewayMetrics, wake: WakeCoordinator
) -> None:
    """Every configured label combination at 0 before any traffic (bounded by the config)."""
    streams = [
        (model.id, model.backend)
        for model in settings.models
        if model.endpoints & {"chat", "completions"}  # embeddings never stream
    ]
    metrics.prepare(settings.tiers, streams, wake.backends, settings.backends)


def _auth_proxy(settings: GatewaySettings, client: httpx.AsyncClient) -> ReverseProxy:
    """The `/v1/auth/*` relay; the auth service's own edge headers are replaced by ours."""
    own_headers = [name.decode() for name, _ in security_headers(settings.browser)]
    return ReverseProxy(
        client,
        "auth",
        drop_response_headers=[
            *own_headers,
            "strict-transport-security",
            "x-request-id",
            "vary",
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-expose-headers",
        ],
        # This edge checked the browser's Origin (same origin, or the allowlist); the auth
        # service behind it would see another host and refuse a page it never served.
        drop_request_headers=["origin"],
    )


def _build_gate(
    settings: GatewaySettings,
    store: aioredis.Redis,
    auth_client: httpx.AsyncClient,
    lookup_client: httpx.AsyncClient,
    metrics: GatewayMetrics,
) -> Gate:
    """Identity (directory, JWKS), tier policy and limits, from the settings."""
    link = settings.auth
    prefix = settings.store.key_prefix
    source: Directory | None = None
    if settings.store.url is not None:
        source = StoreSource(StoreDirectory(store, KeyLayout(prefix)))
    elif link.url is not None and link.internal_token is not None:
        source = AuthServiceDirectory(lookup_client, link.url, link.internal_token)
    directory = CachedDirectory(source, link.cache_ttl_s, link.stale_s) if source else None
    jwks = None
    if link.url is not None:
        jwks = JwksCache(
            auth_client,
            f"{link.url.rstrip('/')}/.well-known/jwks.json",
            max_age_s=link.jwks_max_age_s,
            min_refetch_s=link.jwks_min_refetch_s,
        )
    resolver = IdentityResolver(link, TrustedProxies(settings.trusted_proxies), directory, jwks)
    limiter = ResilientLimiter(
        Limiter(store, prefix),
        retry_s=settings.limits.retry_store_s,
        on_fallback=metrics.limits_degraded.inc,
    )
    limits = GatewayLimits(
        limiter,
        settings.limits.lease_s,
        on_refused=lambda tier, limit: metrics.rate_limited.labels(tier, limit).inc(),
    )
    return Gate(resolver, settings.tiers, limits, settings.limits)


def from_environment() -> tuple[Litestar, ServerSettings]:
    """Settings from the environment, logging configured, the app: one worker's start-up."""
    settings = load()
    configure_logging(settings.server.log_level, service="gateway")
    return create_app(settings), settings.server
