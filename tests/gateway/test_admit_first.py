"""Admission before any side effect (issue 11): a request refused with 429 wakes no GPU,
searches nothing and reaches no engine — on one gateway, and across two gateways that share
their limits in one real redis-server. A held request holds its concurrency lease."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    RagLink,
    TierPolicy,
    WakeSettings,
)
from tiergate_proto.identity import Window
from tiergate_rag.app import create_app as create_rag
from tiergate_rag.settings import RagSettings
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.redis_server import RedisServer

from .conftest import ALIAS, Gateway, chat_body, gateway_settings, running


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


class CountingSearches:
    """The real rag app, counting the searches that reach it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.searches = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/search":
            self.searches += 1
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def rag(tmp_path: Path) -> AsyncIterator[tuple[str, CountingSearches]]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "limits.md").write_text("# Limits\n\nAnonymous users get twenty requests.")
    settings = RagSettings(index_dir=str(tmp_path / "index"), corpus=[str(corpus)])
    counting = CountingSearches(create_rag(settings))
    async with serve_in_loop(counting) as url:
        yield url, counting


def settings_for(
    cpu: FakeEngine, gpu: FakeEngine, redis_url: str, rag_url: str, prefix: str, tier: TierPolicy
) -> GatewaySettings:
    base = gateway_settings(cpu.base_url)
    wake = WakeSettings(url=f"{gpu.base_url}/_fake/wake", probe_interval_s=0.1, lock_ttl_s=30)
    return msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            "gpu": BackendSettings(base_url=f"{gpu.base_url}/v1", kind="vllm", wake=wake),
        },
        models=[
            *base.models,
            ModelAlias(id="tiergate-large", backend="gpu", engine_model="engine-large"),
            ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
        ],
        routes=[RouteRule(models=["tiergate-large", ALIAS], when_cold="cpu_first")],
        tiers={"anonymous": tier},
        rag=RagLink(url=rag_url, timeout_s=2),
        store=StoreSettings(url=redis_url, key_prefix=prefix),
    )


def engine_calls(engine: FakeEngine) -> int:
    return len([r for r in engine.requests if r.path == "/v1/chat/completions"])


ONE_PER_15_MIN = TierPolicy(requests=Window(limit=1, window_s=900), grounding=True)


async def refused_causes_nothing(
    first: Gateway, second: Gateway, cpu: FakeEngine, gpu: FakeEngine, searches: CountingSearches
) -> None:
    # The first request (asking for the small model by name) is admitted and grounded.
    answered = await first.client.post("/v1/chat/completions", json=chat_body())
    assert answered.status_code == 200, answered.text
    assert searches.searches == 1
    calls = engine_calls(cpu)
    # The second would go to the sleeping GPU and be grounded: it is refused first.
    refused = await second.client.post("/v1/chat/completions", json=chat_body(model="tiergate"))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    await asyncio.sleep(0.3)  # a wake task, had one started, would have sent its POST by now
    assert gpu.wakes == 0
    assert searches.searches == 1
    assert engine_calls(cpu) == calls
    assert engine_calls(gpu) == 0


async def test_a_refused_request_neither_wakes_nor_searches(
    engine: FakeEngine, redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"a{uuid.uuid4().hex[:8]}"
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.2) as gpu,
        rag(tmp_path) as (rag_url, searches),
    ):
        settings = settings_for(engine, gpu, redis_server.url, rag_url, prefix, ONE_PER_15_MIN)
        async with running(settings, engine) as gateway:
            await refused_causes_nothing(gateway, gateway, engine, gpu, searches)


async def test_two_gateways_on_one_redis_refuse_before_any_side_effect(
    engine: FakeEngine, redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.2) as gpu,
        rag(tmp_path) as (rag_url, searches),
    ):
        settings = settings_for(engine, gpu, redis_server.url, rag_url, prefix, ONE_PER_15_MIN)
        async with running(settings, engine) as one, running(settings, engine) as two:
            await refused_causes_nothing(one, two, engine, gpu, searches)


async def test_a_held_request_holds_its_lease(
    engine: FakeEngine, redis_server: RedisServer, tmp_path: Path
) -> None:
    """While one request waits for the GPU to wake, the subject's only slot is taken."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    tier = TierPolicy(max_concurrent=1)
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=1.0) as gpu,
        rag(tmp_path) as (rag_url, _),
    ):
        settings = settings_for(engine, gpu, redis_server.url, rag_url, prefix, tier)
        settings = msgspec.structs.replace(
            settings, routes=[RouteRule(models=["tiergate-large", ALIAS], when_cold="hold")]
        )
        async with running(settings, engine) as gateway:
            held = asyncio.create_task(
                gateway.client.post("/v1/chat/completions", json=chat_body(model="tiergate"))
            )
            await asyncio.sleep(0.3)  # the first is holding for the wake
            second = await gateway.client.post("/v1/chat/completions", json=chat_body())
            assert second.status_code == 429
            assert second.json()["error"]["code"] == "concurrency_limit_exceeded"
            first = await held
            assert first.status_code == 200
            assert first.headers["x-tiergate-backend"] == "gpu"
