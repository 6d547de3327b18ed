"""`GET /v1/status` per caller: each tier sees the models its `/v1/models` lists, and a routed
model the state of what its next plain question would get.

A real auth app (sessions, API keys), a real redis-server, the CPU fake engine and a GPU fake
engine scaled to zero behind a platform wake — the shipped GPU config's shape: anonymous
callers may use the small model only, signed-in users and agents everything, and `tiergate`
(routed) sends anonymous callers to the small model and everyone else to the large one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tiergate_auth.sink import MailSink
from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    TierPolicy,
    WakeSettings,
)
from tiergate_state.store import StoreSettings
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.redis_server import RedisServer

from .auth_stack import Stack, auth_stack, linked
from .conftest import ALIAS, ENGINE_MODEL, chat_body, gateway_settings

LARGE = "tiergate-large"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def settings_for(
    engine: FakeEngine, gpu: FakeEngine, auth_url: str, store: StoreSettings
) -> GatewaySettings:
    base = gateway_settings(engine.base_url)
    wake = WakeSettings(url=f"{gpu.base_url}/_fake/wake", probe_interval_s=0.05, lock_ttl_s=30)
    settings = msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            "gpu": BackendSettings(base_url=f"{gpu.base_url}/v1", wake=wake),
        },
        models=[
            *base.models,
            ModelAlias(id=LARGE, backend="gpu", engine_model="engine-large"),
            ModelAlias(id="tiergate", backend="cpu", engine_model=ENGINE_MODEL, routed=True),
        ],
        routes=[
            RouteRule(tier="anonymous", models=[ALIAS]),
            RouteRule(models=[LARGE, ALIAS], when_cold="cpu_first"),
        ],
        tiers={
            "anonymous": TierPolicy(models=[ALIAS, "tiergate"]),
            "user": TierPolicy(models=["*"]),
            "agent": TierPolicy(models=["*"]),
        },
        status_cache_s=0,
    )
    # The browser's access cookie counts as a credential here too.
    link = linked(settings, auth_url, store)
    return msgspec.structs.replace(
        link, auth=msgspec.structs.replace(link.auth, access_cookie="tg_access")
    )


@pytest.fixture
async def stack(
    engine: FakeEngine, gpu: FakeEngine, redis_server: RedisServer, sink: MailSink
) -> AsyncIterator[Stack]:
    def gateway(auth_url: str, store: StoreSettings) -> GatewaySettings:
        return settings_for(engine, gpu, auth_url, store)

    async with auth_stack(engine, redis_server.url, sink, gateway) as running:
        await until(running.gateway.client, ALIAS, "ready")  # its first health probe passed
        yield running


async def page(client: httpx.AsyncClient, **headers: str) -> tuple[httpx.Response, dict[str, Any]]:
    response = await client.get("/v1/status", headers=headers)
    assert response.status_code == 200, response.text
    return response, {e["id"]: e for e in response.json()["data"]}


async def until(client: httpx.AsyncClient, model: str, state: str, **headers: str) -> None:
    for _ in range(500):
        _, models = await page(client, **headers)
        if models[model]["state"] == state:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{model} never became {state}: {models[model]}")


async def test_anonymous_callers_see_their_models_only(stack: Stack) -> None:
    response, models = await page(stack.gateway.client)
    assert list(models) == [ALIAS, "tiergate"]
    assert models["tiergate"]["routes_to"] == ALIAS  # anonymous: the small model, ready
    assert models["tiergate"]["state"] == "ready"
    assert LARGE not in response.text
    assert response.headers["cache-control"] == "public, max-age=0"
    assert response.headers["x-tiergate-tier"] == "anonymous"


async def test_a_signed_in_user_sees_the_large_model_wake_and_the_routed_one_with_it(
    stack: Stack,
) -> None:
    client = stack.gateway.client
    tokens = await stack.sign_in()
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    response, models = await page(client, **auth)
    assert response.headers["cache-control"] == "private, max-age=0"
    assert response.headers["vary"] == "authorization, cookie"
    assert response.headers["x-tiergate-tier"] == "user"
    assert list(models) == [ALIAS, LARGE, "tiergate"]
    assert models[LARGE]["state"] == "asleep"
    assert models["tiergate"] | {"id": LARGE, "routes_to": None} == models[LARGE]
    assert models["tiergate"]["routes_to"] == LARGE
    # The user's question goes to `tiergate`: the small model answers and the large one wakes.
    answered = await client.post(
        "/v1/chat/completions", json=chat_body(model="tiergate"), headers=auth
    )
    assert answered.headers["x-tiergate-upgrade"] == "waking"
    assert answered.headers["x-tiergate-model"] == ALIAS
    _, models = await page(client, **auth)
    assert (models["tiergate"]["state"], models["tiergate"]["answered_by"]) == ("waking", ALIAS)
    # The same, read from the browser's access cookie instead of the header.
    _, by_cookie = await page(client, cookie=f"tg_access={tokens['access_token']}")
    assert by_cookie["tiergate"]["state"] == "waking"
    await until(client, "tiergate", "ready", **auth)
    _, models = await page(client, **auth)
    assert models[LARGE]["state"] == "ready"
    # Meanwhile, anonymous callers still see only the small model.
    _, anonymous = await page(client)
    assert list(anonymous) == [ALIAS, "tiergate"]


async def test_an_api_key_with_its_own_models_sees_those(stack: Stack) -> None:
    key, _ = await stack.create_key(limits={"models": [ALIAS]})
    _, models = await page(stack.gateway.client, authorization=f"Bearer {key}")
    assert list(models) == [ALIAS]
    key, _ = await stack.create_key()
    _, models = await page(stack.gateway.client, authorization=f"Bearer {key}")
    assert list(models) == [ALIAS, LARGE, "tiergate"]


async def test_an_ended_session_or_a_revoked_key_is_a_401(stack: Stack) -> None:
    client = stack.gateway.client
    tokens = await stack.sign_in()
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.post("/v1/auth/logout", headers=auth)).status_code == 200
    ended = await client.get("/v1/status", headers=auth)
    assert ended.status_code == 401
    assert ended.json()["error"]["code"] == "session_ended"
    key, key_id = await stack.create_key()
    await stack.revoke(key_id)
    revoked = await client.get("/v1/status", headers={"authorization": f"Bearer {key}"})
    assert revoked.status_code == 401
    assert set(revoked.json()) == {"error"}
