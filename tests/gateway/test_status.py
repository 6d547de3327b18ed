"""`GET /v1/status`: the pure status function as a table, then the endpoint in process (a fake
GPU engine scaled to zero behind a platform wake, the CPU fake engine, a real redis-server)."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tiergate_gateway.app import create_app
from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    TierPolicy,
    WakeSettings,
)
from tiergate_gateway.status import (
    BackendView,
    ListedModel,
    ModelStatus,
    StatusModel,
    model_statuses,
    status_models,
)
from tiergate_proto.identity import Window
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.redis_server import RedisServer

from .conftest import ALIAS, ENGINE_MODEL, chat_body, gateway_settings

NOW = 1000.0
LARGE = StatusModel("large", "gpu", cold_fallbacks=("small",), fallbacks=("small",))
HELD = StatusModel("held", "gpu2", cold_fallbacks=(), fallbacks=("small",))
SMALL = StatusModel("small", "cpu")


def status(state: str, eta: int | None = None, by: str | None = None) -> tuple[Any, ...]:
    return (state, eta, by)


@pytest.mark.parametrize(
    ("view", "small_view", "expected"),
    [
        (BackendView(), BackendView(), status("ready")),
        (BackendView(sleeps=True, ready=True), BackendView(), status("ready")),
        (BackendView(sleeps=True, ready=False), BackendView(), status("asleep", by="small")),
        # waking: measured wake time minus the time since this wake began, rounded up
        (
            BackendView(sleeps=True, ready=False, waking_since=NOW - 10, wake_s=52.5),
            BackendView(),
            status("waking", 43, "small"),
        ),
        (  # overdue: expected any moment
            BackendView(sleeps=True, ready=False, waking_since=NOW - 90, wake_s=60),
            BackendView(),
            status("waking", 0, "small"),
        ),
        (  # never measured: no estimate
            BackendView(sleeps=True, ready=False, waking_since=NOW - 1),
            BackendView(),
            status("waking", None, "small"),
        ),
        (  # the last wake timed out, none under way
            BackendView(sleeps=True, ready=False, wake_failed=True),
            BackendView(),
            status("down", by="small"),
        ),
        (  # ... a new one is under way: waking again
            BackendView(sleeps=True, ready=False, wake_failed=True, waking_since=NOW, wake_s=5),
            BackendView(),
            status("waking", 5, "small"),
        ),
        (BackendView(breaker_open=True), BackendView(), status("down", by="small")),
        (BackendView(healthy=False), BackendView(), status("down", by="small")),
        (  # asleep, a failing health check says nothing (it fails while asleep) ...
            BackendView(sleeps=True, ready=False, healthy=False),
            BackendView(),
            status("asleep", by="small"),
        ),
        (  # ... a refusing breaker does
            BackendView(sleeps=True, ready=False, breaker_open=True),
            BackendView(),
            status("down", by="small"),
        ),
        # nothing answers meanwhile when the fallback is not ready itself
        (
            BackendView(sleeps=True, ready=False),
            BackendView(healthy=False),
            status("asleep"),
        ),
        (BackendView(breaker_open=True), BackendView(breaker_open=True), status("down")),
    ],
)
def test_state_of_a_model(view: BackendView, small_view: BackendView, expected: Any) -> None:
    got = model_statuses([LARGE, SMALL], {"gpu": view, "cpu": small_view}, NOW)[0]
    assert (got.state, got.eta_s, got.answered_by) == expected
    assert got.id == "large"


def test_a_hold_rule_names_no_model_while_waking_but_one_while_down() -> None:
    views = {"gpu2": BackendView(sleeps=True, ready=False, waking_since=NOW)}
    assert model_statuses([HELD, SMALL], views, NOW)[0] == ModelStatus(
        id="held", state="waking", eta_s=None, answered_by=None
    )
    views = {"gpu2": BackendView(breaker_open=True)}
    assert model_statuses([HELD, SMALL], views, NOW)[0].answered_by == "small"


def test_a_fallback_that_is_not_public_is_never_named() -> None:
    views = {"gpu": BackendView(sleeps=True, ready=False)}
    assert model_statuses([LARGE], views, NOW)[0].answered_by is None  # "small" is not listed


LISTED = [
    ListedModel("large", "gpu"),
    ListedModel("small", "cpu"),
    ListedModel("mid", "cpu2"),
    ListedModel("auto", "cpu", routed=True),
]


@pytest.mark.parametrize(
    ("rules", "tier", "expected"),
    [
        ([], "user", StatusModel("large", "gpu")),
        (
            [RouteRule(models=["large", "small"])],
            "user",
            StatusModel("large", "gpu", ("small",), ("small",)),
        ),
        (  # a hold rule: nobody while it wakes; the first rule starting with it while down
            [
                RouteRule(models=["small"]),
                RouteRule(models=["large", "mid"], when_cold="hold"),
                RouteRule(workload="json", models=["large", "small"]),
            ],
            "user",
            StatusModel("large", "gpu", ("small",), ("mid",)),
        ),
        ([RouteRule(models=["small", "large"])], "user", StatusModel("large", "gpu")),
        (  # another tier's rule says nothing of this tier's fallbacks
            [
                RouteRule(tier="agent", models=["large", "mid"]),
                RouteRule(tier="user", models=["large", "small"]),
            ],
            "user",
            StatusModel("large", "gpu", ("small",), ("small",)),
        ),
        (  # a fallback the tier may not use is left out
            [RouteRule(models=["large", "secret", "small"])],
            "user",
            StatusModel("large", "gpu", ("small",), ("small",)),
        ),
    ],
)
def test_fallbacks_from_the_route_table(
    rules: list[RouteRule], tier: str, expected: StatusModel
) -> None:
    assert status_models(LISTED, rules, tier)[0] == expected


@pytest.mark.parametrize(
    ("rules", "tier", "expected"),
    [
        (  # no rule: the routed model's own backend
            [],
            "user",
            StatusModel("auto", "cpu"),
        ),
        (  # the tier's plain chat rule: it stands for the first model, with its fallbacks
            [
                RouteRule(tier="anonymous", models=["small"]),
                RouteRule(workload="code", models=["mid", "small"]),
                RouteRule(language="de", models=["mid", "small"]),
                RouteRule(models=["large", "small"]),
            ],
            "user",
            StatusModel("auto", "gpu", ("small",), ("small",), routes_to="large"),
        ),
        (
            [
                RouteRule(tier="anonymous", models=["small"]),
                RouteRule(models=["large", "small"]),
            ],
            "anonymous",
            StatusModel("auto", "cpu", routes_to="small"),
        ),
        (  # a hold rule: nobody answers while it wakes
            [RouteRule(models=["large", "small"], when_cold="hold")],
            "user",
            StatusModel("auto", "gpu", (), ("small",), routes_to="large"),
        ),
        (  # models the tier may not use are skipped, as the router skips them
            [RouteRule(models=["secret", "mid", "small"])],
            "user",
            StatusModel("auto", "cpu2", ("small",), ("small",), routes_to="mid"),
        ),
        (  # nothing it may use: its own backend
            [RouteRule(models=["secret"])],
            "user",
            StatusModel("auto", "cpu"),
        ),
    ],
)
def test_a_routed_model_stands_for_the_tiers_plain_chat_choice(
    rules: list[RouteRule], tier: str, expected: StatusModel
) -> None:
    assert status_models(LISTED, rules, tier)[3] == expected


def test_a_routed_model_reads_waking_while_its_choice_wakes() -> None:
    models = status_models(LISTED, [RouteRule(models=["large", "small"])], "user")
    views = {"gpu": BackendView(sleeps=True, ready=False, waking_since=NOW, wake_s=30)}
    auto = model_statuses(models, views, NOW)[3]
    assert auto == ModelStatus(
        id="auto", state="waking", eta_s=30, answered_by="small", routes_to="large"
    )


# The endpoint


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def status_settings(
    cpu: FakeEngine,
    gpu: FakeEngine,
    redis_url: str,
    *,
    cache_s: float = 0,
    ready_timeout_s: float = 900,
    hidden: bool = False,
) -> GatewaySettings:
    base = gateway_settings(cpu.base_url)
    wake = WakeSettings(
        url=f"{gpu.base_url}/_fake/wake",
        probe_interval_s=0.05,
        lock_ttl_s=30,
        ready_timeout_s=ready_timeout_s,
    )
    public = ["tiergate-large", ALIAS, "tiergate"]
    return msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            # Probed for health too: asleep, it fails, which must not make it `down`.
            "gpu": BackendSettings(
                base_url=f"{gpu.base_url}/v1",
                kind="vllm",
                wake=wake,
                health_url=f"{gpu.base_url}/health",
            ),
        },
        models=[
            *base.models,
            ModelAlias(id="tiergate-large", backend="gpu", engine_model="engine-large"),
            ModelAlias(id="tiergate", backend="cpu", engine_model=ENGINE_MODEL, routed=True),
            ModelAlias(id="tiergate-secret", backend="gpu", engine_model="engine-large"),
        ],
        routes=[RouteRule(models=["tiergate-large", ALIAS], when_cold="cpu_first")],
        tiers={
            # one request per quarter hour: /v1/status must not count against it
            "anonymous": TierPolicy(
                models=public[1:] if hidden else public, requests=Window(limit=1, window_s=900)
            ),
        },
        store=StoreSettings(url=redis_url, key_prefix=f"s{uuid.uuid4().hex[:8]}"),
        status_cache_s=cache_s,
    )


@pytest.fixture
def app_settings(engine: FakeEngine, gpu: FakeEngine, redis_server: RedisServer) -> GatewaySettings:
    return status_settings(engine, gpu, redis_server.url)


async def states(client: httpx.AsyncClient) -> dict[str, tuple[Any, ...]]:
    response = await client.get("/v1/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "list"
    for entry in body["data"]:
        assert set(entry) == {"id", "object", "state", "eta_s", "answered_by", "routes_to"}
        assert entry["object"] == "model.status"
    return {e["id"]: (e["state"], e["eta_s"], e["answered_by"]) for e in body["data"]}


async def until(client: httpx.AsyncClient, model: str, state: str) -> tuple[Any, ...]:
    for _ in range(200):
        got = (await states(client))[model]
        if got[0] == state:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"{model} never became {state}: {got}")


async def test_asleep_waking_ready_with_an_estimate_from_the_last_wake(
    engine: FakeEngine, gpu: FakeEngine, app_settings: GatewaySettings
) -> None:
    app = create_app(app_settings)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
        await until(client, ALIAS, "ready")  # down until its first health probe passed
        assert await states(client) == {
            "tiergate-large": ("asleep", None, ALIAS),
            ALIAS: ("ready", None, None),
            "tiergate": ("asleep", None, ALIAS),  # routed: it stands for tiergate-large
        }
        routed = (await client.get("/v1/status")).json()["data"][2]
        assert (routed["id"], routed["routes_to"]) == ("tiergate", "tiergate-large")
        # A request for the routed model answers from the CPU and wakes the GPU.
        answered = await client.post("/v1/chat/completions", json=chat_body(model="tiergate"))
        assert answered.headers["x-tiergate-upgrade"] == "waking"
        assert (await states(client))["tiergate-large"] == ("waking", None, ALIAS)  # unmeasured
        assert (await states(client))["tiergate"] == ("waking", None, ALIAS)
        assert await until(client, "tiergate-large", "ready") == ("ready", None, None)
        assert (await states(client))["tiergate"] == ("ready", None, None)
        # It goes cold again (a failed call, as after the platform scaled it to zero).
        gpu.scaled_to_zero = True
        app.state.wake.mark_cold("gpu")
        assert (await states(client))["tiergate-large"] == ("asleep", None, ALIAS)
        view = app.state.wake.view("gpu")
        assert view is not None
        assert view.wake_s is not None  # the first wake was measured
        app.state.wake.wake("gpu")
        state, eta, by = (await states(client))["tiergate-large"]
        assert (state, by) == ("waking", ALIAS)
        assert isinstance(eta, int)
        # The measured time (~0.3 s idle, more on a busy machine), rounded up, less what has
        # passed since this wake began: never more than the measured time's ceiling.
        assert 0 <= eta <= math.ceil(view.wake_s)


async def test_down_when_health_fails_or_the_wake_timed_out(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=30) as slow:
        settings = status_settings(engine, slow, redis_server.url, ready_timeout_s=0.3)
        app = create_app(settings)
        async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
            app.state.wake.wake("gpu")
            assert (await states(client))["tiergate-large"][0] == "waking"
            assert await until(client, "tiergate-large", "down") == ("down", None, ALIAS)
            await client.post(f"{engine.base_url}/_fake/health", json={"ok": False})
            assert await until(client, ALIAS, "down") == ("down", None, None)
            assert (await states(client))["tiergate-large"] == ("down", None, None)


async def test_cached_public_and_without_internals(
    engine: FakeEngine, gpu: FakeEngine, redis_server: RedisServer
) -> None:
    settings = status_settings(engine, gpu, redis_server.url, cache_s=30, hidden=True)
    app = create_app(settings)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
        await app.state.prober.probe_once()  # before it, the CPU backend counts as down
        first = await client.get("/v1/status")
        assert first.headers["cache-control"] == "public, max-age=30"
        # One URL, a body per tier: a shared cache must key on the credential.
        assert first.headers["vary"] == "authorization, cookie"
        await client.post(f"{engine.base_url}/_fake/health", json={"ok": False})
        await app.state.prober.probe_once()  # the CPU model is down now, but cached as ready
        polls = [await client.get("/v1/status") for _ in range(5)]
        assert {p.status_code for p in polls} == {200}  # nothing counted
        assert {p.content for p in polls} == {first.content}
        assert not any(k.startswith("x-ratelimit") for p in polls for k in p.headers)
        text = first.text
        for internal in (
            engine.base_url,
            gpu.base_url,
            "127.0.0.1",
            "engine-large",
            ENGINE_MODEL,
            '"gpu"',
            '"cpu"',
            "backend",
        ):
            assert internal not in text, internal
        # Only the models an anonymous /v1/models lists.
        ids = [e["id"] for e in first.json()["data"]]
        assert ids == [ALIAS, "tiergate"]
        listed = (await client.get("/v1/models")).json()["data"]
        assert ids == [m["id"] for m in listed]
        head = await client.head("/v1/status")
        assert head.status_code == 200
        assert head.content == b""
        refused = await client.post("/v1/status", json={})
        assert refused.status_code == 405
        assert refused.json()["error"]["type"] == "invalid_request_error"
        # A credential is read: a bad one is a 401, as on /v1/models.
        for bad in ("Bearer not-a-key", "Bearer tg-nope", "Bearer a.b.c"):
            unauthorized = await client.get("/v1/status", headers={"authorization": bad})
            assert unauthorized.status_code == 401, bad
            assert unauthorized.json()["error"]["type"] == "authentication_error"


async def test_the_contact_line_is_the_operators_or_null(
    engine: FakeEngine, gpu: FakeEngine, redis_server: RedisServer
) -> None:
    base = status_settings(engine, gpu, redis_server.url)
    contact = "Talk to a person: support@example.org, weekdays 9-17 CET"
    for configured, expected in ((None, None), (contact, contact)):
        app = create_app(msgspec.structs.replace(base, contact=configured))
        async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
            body = (await client.get("/v1/status")).json()
            assert body["contact"] == expected
            assert set(body) == {"object", "data", "contact"}
