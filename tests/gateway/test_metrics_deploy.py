"""The metrics the alert rules and the dashboard read (issue 13), through the real app.

Every configured label combination is in a scrape at 0 before any traffic; then each request,
routing decision, wake and grounding is counted once, with the right labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from tiergate_gateway.metrics import DECISIONS
from tiergate_gateway.routing.decide import Reason
from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    AuthLink,
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    RagLink,
    TierPolicy,
    WakeSettings,
)
from tiergate_proto.identity import ApiKeyRecord, Window
from tiergate_rag.app import create_app as create_rag
from tiergate_rag.settings import RagSettings
from tiergate_state.hashing import digest
from tiergate_state.keys import KeyLayout
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.redis_server import RedisServer

from .conftest import ALIAS, BODY_LIMIT, ENGINE_MODEL, Gateway, chat_body, gateway_settings, running

NS = "tiergate_gateway_"
CHAT = "/v1/chat/completions"
EMBED = "tiergate-embed"
LARGE = "tiergate-large"
ROUTED = "tiergate"
TIERS = ("anonymous", "user", "agent")
APIS = ("chat", "completions", "embeddings", "responses")
OUTCOMES = ("ok", "rate_limited", "client_error", "unavailable", "error", "client_gone")
ROUTE_DECISIONS = ("first", "breaker_open", "all_open", "hold", "cpu_first", "waking")
GROUNDING = ("grounded", "no_query", "not_relevant", "no_sources", "timeout", "error")
PEPPER = "metrics-test-pepper-" + "p" * 20
AGENT_KEY = "tg_metrics-test-agent-key-0123456789"
CLOSED_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused

Series = dict[tuple[str, ...], float]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def deploy_settings(
    engine: FakeEngine, redis_url: str, gpu: WakeSettings | None = None, **changes: Any
) -> GatewaySettings:
    """Three tiers, a chat and an embedding model on `cpu`; with `gpu`, a sleeping GPU
    backend with its large model first in the route of the routed model, CPU-first."""
    base = gateway_settings(engine.base_url)
    backends = dict(base.backends)
    models = [
        *base.models,
        ModelAlias(
            id=EMBED,
            backend="cpu",
            engine_model=ENGINE_MODEL,
            endpoints=frozenset({"embeddings"}),
        ),
    ]
    routes: list[RouteRule] = []
    if gpu is not None:
        gpu_url = gpu.url.removesuffix("/_fake/wake")
        backends["gpu"] = BackendSettings(base_url=f"{gpu_url}/v1", wake=gpu)
        models += [
            ModelAlias(id=LARGE, backend="gpu", engine_model="engine-large"),
            ModelAlias(id=ROUTED, backend="cpu", engine_model=ENGINE_MODEL, routed=True),
        ]
        routes = [RouteRule(models=[LARGE, ALIAS], when_cold="cpu_first")]
    fields: dict[str, Any] = {
        "backends": backends,
        "models": models,
        "routes": routes,
        "tiers": {tier: TierPolicy(max_tokens=1000) for tier in TIERS},
        "auth": AuthLink(url=None, pepper=PEPPER),
        "store": StoreSettings(url=redis_url, key_prefix=f"m{uuid.uuid4().hex[:8]}"),
    }
    return msgspec.structs.replace(base, **(fields | changes))


def wake_settings(url: str, ready_timeout_s: float = 30) -> WakeSettings:
    return WakeSettings(
        url=url, probe_interval_s=0.05, lock_ttl_s=30, ready_timeout_s=ready_timeout_s
    )


async def add_agent_key(redis_url: str, settings: GatewaySettings) -> None:
    """An API key of the `agent` tier, as the auth service stores it."""
    layout = KeyLayout(settings.store.key_prefix)
    record = ApiKeyRecord(id="key-1", owner="owner", tier="agent", created_at=0)
    store = aioredis.from_url(redis_url)
    try:
        key = layout.api_key(digest(PEPPER.encode(), "apikey", AGENT_KEY))
        await store.set(key, msgspec.json.encode(record))
    finally:
        await store.aclose()


def series(text: str, name: str, *labels: str) -> Series:
    """The samples named `NS + name` in a scrape: their label values, in `labels`' order, to
    the value. Fails on a sample with other labels than `labels`."""
    found: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == NS + name:
                assert set(sample.labels) == set(labels), (name, sample.labels)
                found[tuple(sample.labels[label] for label in labels)] = sample.value
    return found


async def scrape(gateway: Gateway) -> str:
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200
    return response.text


def grew(before: Series, after: Series) -> Series:
    """The series that changed between two scrapes, and by how much."""
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


REQUESTS = ("api_requests_total", "api", "tier", "outcome")
DECIDED = ("route_decisions_total", "tier", "decision")
TTFT = ("time_to_first_token_seconds_count", "model", "backend", "tier")
WAKES = ("wakes_total", "backend", "outcome")
GROUNDED = ("grounding_total", "tier", "status")


def test_the_decisions_are_decide_s_reasons() -> None:
    assert set(DECISIONS) == set(get_args(Reason)) == set(ROUTE_DECISIONS)


async def test_every_configured_series_is_at_zero_before_any_traffic(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    settings = deploy_settings(engine, redis_server.url, gpu=wake_settings(CLOSED_URL))
    async with running(settings, engine) as gateway:
        text = await scrape(gateway)
    tiers_and_none = (*TIERS, "none")
    assert series(text, *REQUESTS) == dict.fromkeys(
        itertools.product(APIS, tiers_and_none, OUTCOMES), 0.0
    )
    assert series(text, "in_flight_requests") == {(): 0.0}
    assert series(text, *DECIDED) == dict.fromkeys(itertools.product(TIERS, ROUTE_DECISIONS), 0.0)
    # Every model that can stream, on its backend, per tier; not the embedding model.
    streams = [(ALIAS, "cpu"), (LARGE, "gpu"), (ROUTED, "cpu")]
    assert series(text, *TTFT) == {
        (m, b, t): 0.0 for (m, b), t in itertools.product(streams, TIERS)
    }
    # Only the backend that has a wake.
    assert series(text, *WAKES) == {("gpu", o): 0.0 for o in ("ready", "failed", "timeout")}
    assert series(text, "wake_duration_seconds_count", "backend") == {("gpu",): 0.0}
    assert series(text, *GROUNDED) == dict.fromkeys(itertools.product(TIERS, GROUNDING), 0.0)
    assert series(text, "rag_search_duration_seconds_count") == {(): 0.0}
    # Every backend: its breaker closed, no upstream error of any kind, nothing shed; every
    # tier: no refusal of any kind (existing from the start, the alerts' rate() sees the first).
    backends = ("cpu", "gpu")
    assert series(text, "breaker_state", "backend") == {(b,): 0.0 for b in backends}
    kinds = ("connect", "timeout", "protocol", "status", "midstream")
    assert series(text, "upstream_errors_total", "backend", "kind") == dict.fromkeys(
        itertools.product(backends, kinds), 0.0
    )
    assert series(text, "shed_total", "backend", "reason") == dict.fromkeys(
        itertools.product(backends, ("queue_full", "wait_timeout")), 0.0
    )
    refusals = ("requests", "tokens", "too_large", "concurrency")
    assert series(text, "rate_limited_total", "tier", "limit") == dict.fromkeys(
        itertools.product(TIERS, refusals), 0.0
    )


AGENT = {"authorization": f"Bearer {AGENT_KEY}"}
BAD_KEY = {"authorization": "Bearer garbage"}
TOO_BIG = [{"role": "user", "content": "x" * BODY_LIMIT}]
ANON_ERROR = ("chat", "anonymous", "error")
ANON_CLIENT_ERROR = ("chat", "anonymous", "client_error")
# (path, what is sent, the status it gets, the one series of api_requests_total it adds to)
ROWS: list[tuple[str, dict[str, Any], int, tuple[str, str, str]]] = [
    (CHAT, {"json": chat_body()}, 200, ("chat", "anonymous", "ok")),
    (CHAT, {"json": chat_body(stream=True)}, 200, ("chat", "anonymous", "ok")),
    (CHAT, {"json": chat_body(), "headers": AGENT}, 200, ("chat", "agent", "ok")),
    (
        "/v1/completions",
        {"json": {"model": ALIAS, "prompt": "hi"}},
        200,
        ("completions", "anonymous", "ok"),
    ),
    (
        "/v1/embeddings",
        {"json": {"model": EMBED, "input": "hi"}},
        200,
        ("embeddings", "anonymous", "ok"),
    ),
    (
        "/v1/responses",
        {"json": {"model": ALIAS, "input": "hi"}},
        200,
        ("responses", "anonymous", "ok"),
    ),
    (CHAT, {"json": {"model": ALIAS}}, 400, ANON_CLIENT_ERROR),
    (CHAT, {"json": chat_body(model="nope")}, 404, ANON_CLIENT_ERROR),
    (CHAT, {"json": chat_body(), "headers": BAD_KEY}, 401, ("chat", "none", "client_error")),
    (CHAT, {"json": chat_body(messages=TOO_BIG)}, 413, ANON_CLIENT_ERROR),
    (CHAT, {"json": chat_body(fake={"status": 500})}, 502, ANON_ERROR),
    (CHAT, {"json": chat_body(fake={"status": 503})}, 503, ("chat", "anonymous", "unavailable")),
    # The stream broke after its first byte: a 200 that failed.
    (CHAT, {"json": chat_body(stream=True, fake={"drop_after": 1})}, 200, ANON_ERROR),
]


async def test_each_request_counts_once_by_api_tier_and_outcome(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    settings = deploy_settings(engine, redis_server.url)
    await add_agent_key(redis_server.url, settings)
    async with running(settings, engine) as gateway:
        for path, send, status, counted in ROWS:
            before = series(await scrape(gateway), *REQUESTS)
            response = await gateway.client.post(path, **send)
            assert response.status_code == status, (path, send, response.text)
            after = series(await scrape(gateway), *REQUESTS)
            assert grew(before, after) == {counted: 1.0}, (path, send)


async def test_the_tier_reaches_route_decisions_and_first_tokens(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    settings = deploy_settings(engine, redis_server.url)
    await add_agent_key(redis_server.url, settings)
    async with running(settings, engine) as gateway:
        before = await scrape(gateway)
        agent = await gateway.client.post(CHAT, json=chat_body(stream=True), headers=AGENT)
        assert agent.status_code == 200
        anonymous = await gateway.client.post(CHAT, json=chat_body())  # no stream: no TTFT
        assert anonymous.status_code == 200
        after = await scrape(gateway)
    assert grew(series(before, *DECIDED), series(after, *DECIDED)) == {
        ("agent", "first"): 1.0,
        ("anonymous", "first"): 1.0,
    }
    assert grew(series(before, *TTFT), series(after, *TTFT)) == {(ALIAS, "cpu", "agent"): 1.0}


async def test_a_refused_request_is_rate_limited_and_never_decided(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    tiers = {tier: TierPolicy(requests=Window(limit=1, window_s=60)) for tier in TIERS}
    settings = deploy_settings(engine, redis_server.url, tiers=tiers)
    async with running(settings, engine) as gateway:
        assert (await gateway.client.post(CHAT, json=chat_body())).status_code == 200
        # A request is counted when its handler ends, just after its last byte went out.
        ok = ("chat", "anonymous", "ok")
        before = await _until(gateway, lambda text: series(text, *REQUESTS).get(ok, 0) >= 1)
        refused = await gateway.client.post(CHAT, json=chat_body(stream=True))
        assert refused.status_code == 429
        after = await scrape(gateway)
    assert grew(series(before, *REQUESTS), series(after, *REQUESTS)) == {
        ("chat", "anonymous", "rate_limited"): 1.0
    }
    assert grew(series(before, *DECIDED), series(after, *DECIDED)) == {}


async def _until(gateway: Gateway, check: Any, timeout_s: float = 5) -> str:
    """Scrape until `check(text)` holds; the last scrape."""
    async with asyncio.timeout(timeout_s):
        while True:
            text = await scrape(gateway)
            if check(text):
                return text
            await asyncio.sleep(0.05)


def in_flight(text: str) -> float:
    return series(text, "in_flight_requests")[()]


async def test_in_flight_counts_a_stream_until_its_last_byte(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    settings = deploy_settings(engine, redis_server.url)
    ok = ("chat", "anonymous", "ok")
    async with running(settings, engine) as gateway:
        assert in_flight(await scrape(gateway)) == 0
        body = chat_body(stream=True, fake={"chunks": 8, "tokens_per_s": 10})
        async with gateway.client.stream("POST", CHAT, json=body) as response:
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("data: "):
                    break
            during = await scrape(gateway)
            assert in_flight(during) == 1
            assert series(during, *REQUESTS)[ok] == 0  # counted when it ends, not before
            rest = [line async for line in lines]
        assert "data: [DONE]" in rest
        after = await _until(gateway, lambda text: in_flight(text) == 0)
    assert series(after, *REQUESTS)[ok] == 1


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_that_leaves_is_client_gone(
    engine: FakeEngine, redis_server: RedisServer, stream: bool
) -> None:
    # Mid-stream (a 200 went out), or while waiting for a whole answer (nothing went out).
    settings = deploy_settings(engine, redis_server.url)
    gone = ("chat", "anonymous", "client_gone")
    async with running(settings, engine) as gateway:
        if stream:
            body = chat_body(stream=True, fake={"chunks": 200, "tokens_per_s": 20})
            async with gateway.client.stream("POST", CHAT, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        break
                assert in_flight(await scrape(gateway)) == 1
        else:
            body = chat_body(fake={"header_delay_s": 1.5})
            with pytest.raises(httpx.ReadTimeout):
                await gateway.client.post(CHAT, json=body, timeout=httpx.Timeout(5, read=0.3))
        await _until(gateway, lambda text: series(text, *REQUESTS)[gone] == 1)
        await asyncio.sleep(0.1)  # a (wrong) second count would show by now
        after = await scrape(gateway)
    assert in_flight(after) == 0
    assert {k: v for k, v in series(after, *REQUESTS).items() if v} == {gone: 1.0}


async def test_cpu_first_while_a_wake_becomes_ready(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.3) as gpu:
        wake = wake_settings(f"{gpu.base_url}/_fake/wake")
        settings = deploy_settings(engine, redis_server.url, gpu=wake)
        async with running(settings, engine) as gateway:
            answer = await gateway.client.post(CHAT, json=chat_body(model=ROUTED))
            assert answer.headers["x-tiergate-upgrade"] == "waking"
            ready = ("gpu", "ready")
            text = await _until(gateway, lambda text: series(text, *WAKES)[ready] == 1)
            later = await gateway.client.post(CHAT, json=chat_body(model=ROUTED))
            assert later.headers["x-tiergate-backend"] == "gpu"
            after = await scrape(gateway)
    assert series(text, *WAKES) == {ready: 1.0, ("gpu", "failed"): 0.0, ("gpu", "timeout"): 0.0}
    assert series(text, "wake_duration_seconds_count", "backend") == {("gpu",): 1.0}
    assert 0.2 < series(text, "wake_duration_seconds_sum", "backend")[("gpu",)] < 5
    assert gpu.wakes == 1
    assert {k: v for k, v in series(after, *DECIDED).items() if v} == {
        ("anonymous", "cpu_first"): 1.0,
        ("anonymous", "first"): 1.0,
    }


@pytest.mark.parametrize("outcome", ["timeout", "failed"])
async def test_a_wake_that_does_not_become_ready(
    engine: FakeEngine, redis_server: RedisServer, outcome: str
) -> None:
    # timeout: the wake call goes through, the engine takes longer than ready_timeout_s;
    # failed: the wake URL refuses the connection.
    async with FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=60) as gpu:
        url = f"{gpu.base_url}/_fake/wake" if outcome == "timeout" else f"{CLOSED_URL}/_fake/wake"
        settings = deploy_settings(
            engine, redis_server.url, gpu=wake_settings(url, ready_timeout_s=0.4)
        )
        async with running(settings, engine) as gateway:
            answer = await gateway.client.post(CHAT, json=chat_body(model=ROUTED))
            assert answer.status_code == 200
            assert answer.headers["x-tiergate-backend"] == "cpu"
            ended = ("gpu", outcome)
            text = await _until(gateway, lambda text: series(text, *WAKES)[ended] == 1)
            await asyncio.sleep(0.2)
            text = await scrape(gateway)
    assert {k: v for k, v in series(text, *WAKES).items() if v} == {ended: 1.0}
    assert series(text, "wake_duration_seconds_count", "backend") == {("gpu",): 0.0}
    assert series(text, *DECIDED)[("anonymous", "cpu_first")] == 1


DOCS = {"limits.md": "# Limits\n\nAnonymous users get twenty requests per fifteen minutes."}


@contextlib.asynccontextmanager
async def grounded_gateway(
    engine: FakeEngine, redis_url: str, tmp_path: Path
) -> AsyncIterator[Gateway]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    rag = RagSettings(index_dir=str(tmp_path / "index"), corpus=[str(corpus)])
    async with serve_in_loop(create_rag(rag)) as rag_url:
        tiers = {tier: TierPolicy(grounding=tier == "anonymous") for tier in TIERS}
        settings = deploy_settings(
            engine, redis_url, tiers=tiers, rag=RagLink(url=rag_url, timeout_s=2)
        )
        async with running(settings, engine) as gateway:
            yield gateway


@pytest.mark.parametrize(
    ("question", "status"),
    [
        ("How many requests do anonymous users get?", "grounded"),
        ("What is the capital of France?", "not_relevant"),
    ],
)
async def test_grounding_is_counted_by_tier_and_status(
    engine: FakeEngine, redis_server: RedisServer, tmp_path: Path, question: str, status: str
) -> None:
    async with grounded_gateway(engine, redis_server.url, tmp_path) as gateway:
        before = await scrape(gateway)
        body = chat_body(messages=[{"role": "user", "content": question}])
        response = await gateway.client.post(CHAT, json=body)
        assert response.status_code == 200
        assert response.headers["x-tiergate-grounding"].endswith(status)
        after = await scrape(gateway)
    assert grew(series(before, *GROUNDED), series(after, *GROUNDED)) == {("anonymous", status): 1.0}
    searches = "rag_search_duration_seconds_count"
    assert grew(series(before, searches), series(after, searches)) == {(): 1.0}


async def test_a_request_without_a_query_is_no_query_and_searches_nothing(
    engine: FakeEngine, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with grounded_gateway(engine, redis_server.url, tmp_path) as gateway:
        before = await scrape(gateway)
        body = chat_body(messages=[{"role": "user", "content": "   "}])
        response = await gateway.client.post(CHAT, json=body)
        assert response.status_code == 200, response.text
        after = await scrape(gateway)
    assert grew(series(before, *GROUNDED), series(after, *GROUNDED)) == {
        ("anonymous", "no_query"): 1.0
    }
    searches = "rag_search_duration_seconds_count"
    assert grew(series(before, searches), series(after, searches)) == {}


async def test_an_unconfigured_tier_is_counted_as_none(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    # A key of a tier this gateway does not configure (403): its name is no label.
    settings = deploy_settings(
        engine, redis_server.url, tiers={"anonymous": TierPolicy(), "user": TierPolicy()}
    )
    await add_agent_key(redis_server.url, settings)
    async with running(settings, engine) as gateway:
        before = series(await scrape(gateway), *REQUESTS)
        response = await gateway.client.post(CHAT, json=chat_body(), headers=AGENT)
        assert response.status_code == 403
        after = series(await scrape(gateway), *REQUESTS)
    assert grew(before, after) == {("chat", "none", "client_error"): 1.0}
    assert {tier for _, tier, _ in after} == {"anonymous", "user", "none"}
