"""A stream held for a waking GPU backend: `: waking` keep-alives, then the answer or an error
event; in process, a fake engine scaled to zero behind a platform wake, a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import openai
import pytest
from litestar import Litestar

from tiergate_gateway.app import create_app
from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    RagLink,
    ResilienceSettings,
    TierPolicy,
    WakeSettings,
)
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.redis_server import RedisServer

from .conftest import ALIAS, chat_body, gateway_settings

if TYPE_CHECKING:
    from .conftest import ResponsesSchema

KEEPALIVE_S = 0.1
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def held_settings(
    cpu: FakeEngine,
    gpu: FakeEngine,
    redis_url: str,
    *,
    hold_s: float = 5.0,
    keepalive_s: float = KEEPALIVE_S,
    retries: int = 0,
    tier: TierPolicy | None = None,
    first_token_timeout_s: float | None = None,
) -> GatewaySettings:
    """`tiergate` routes to the GPU model first, holding for its wake (`hold`)."""
    base = gateway_settings(cpu.base_url)
    wake = WakeSettings(url=f"{gpu.base_url}/_fake/wake", probe_interval_s=0.05, lock_ttl_s=30)
    return msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            # vllm: every field (the fake's `fake`) is forwarded
            "gpu": BackendSettings(
                base_url=f"{gpu.base_url}/v1",
                kind="vllm",
                wake=wake,
                first_token_timeout_s=first_token_timeout_s,
            ),
        },
        models=[
            *base.models,
            ModelAlias(id="tiergate-large", backend="gpu", engine_model="engine-large"),
            ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
        ],
        routes=[RouteRule(models=["tiergate-large", ALIAS], when_cold="hold", hold_s=hold_s)],
        tiers={"anonymous": tier or TierPolicy(max_tokens=100)},
        store=StoreSettings(url=redis_url, key_prefix=f"h{uuid.uuid4().hex[:8]}"),
        resilience=ResilienceSettings(retries=retries),
        hold_keepalive_s=keepalive_s,
    )


@dataclass
class Served:
    app: Litestar
    url: str
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def serving(settings: GatewaySettings) -> AsyncIterator[Served]:
    app = create_app(settings)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Served(app, url, client)


def events(text: str) -> list[str]:
    """The stream's events (and comments), in order, without their blank-line ends."""
    assert text.endswith("\n\n"), text[-200:]
    return text[:-2].split("\n\n")


def chat_calls(engine: FakeEngine) -> int:
    return sum(r.path == CHAT for r in engine.requests)


async def test_held_stream_gets_keepalives_then_the_answer(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.6) as gpu,
        serving(held_settings(engine, gpu, redis_server.url)) as gateway,
    ):
        body = chat_body(model="tiergate", stream=True)
        async with gateway.client.stream("POST", CHAT, json=body) as response:
            # The head came with the first keep-alive, long before the engine was ready.
            assert chat_calls(gpu) == 0
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            text = "".join([part async for part in response.aiter_text()])
        headers = response.headers
        assert headers["x-tiergate-model"] == "tiergate-large"
        assert headers["x-tiergate-backend"] == "gpu"
        assert headers["x-tiergate-workload"]
        assert headers["x-request-id"]
        assert "x-tiergate-upgrade" not in headers  # the large model itself answers
        got = events(text)
        waiting = [e for e in got if e.startswith(":")]
        assert set(waiting) == {": waking"}
        assert len(waiting) >= 3  # ~0.6 s of wake at 0.1 s
        assert got[: len(waiting)] == waiting  # keep-alives only before the answer
        data = [e.removeprefix("data: ") for e in got[len(waiting) :]]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert {c["model"] for c in chunks} == {"tiergate-large"}
        assert "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert chat_calls(gpu) == 1


async def test_a_held_stream_is_grounded_before_the_hold(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    """The grounding headers are in the early head (a rag that is down: `ungrounded`)."""
    async with FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.4) as gpu:
        settings = msgspec.structs.replace(
            held_settings(engine, gpu, redis_server.url, tier=TierPolicy(grounding=True)),
            rag=RagLink(url="http://127.0.0.1:9", timeout_s=0.2),
        )
        async with (
            serving(settings) as gateway,
            gateway.client.stream(
                "POST", CHAT, json=chat_body(model="tiergate", stream=True)
            ) as response,
        ):
            assert chat_calls(gpu) == 0  # an early head
            assert response.headers["x-tiergate-grounding"] == "ungrounded; reason=error"
            text = "".join([part async for part in response.aiter_text()])
        assert text.startswith(": waking\n\n")
        assert text.endswith("data: [DONE]\n\n")


async def test_the_openai_sdk_reads_a_held_stream(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.4) as gpu,
        serving(held_settings(engine, gpu, redis_server.url)) as gateway,
        _sdk(gateway.url) as client,
    ):
        stream = await client.chat.completions.create(
            model="tiergate", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text
        assert gpu.wakes == 1


async def test_a_wake_that_times_out_after_the_head_ends_the_stream_with_an_error(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=30) as gpu,
        serving(held_settings(engine, gpu, redis_server.url, hold_s=0.5)) as gateway,
    ):
        body = chat_body(model="tiergate", stream=True)
        async with gateway.client.stream("POST", CHAT, json=body) as response:
            assert response.status_code == 200
            text = "".join([part async for part in response.aiter_text()])
        *waiting, error, done = events(text)
        assert waiting
        assert set(waiting) == {": waking"}
        assert done == "data: [DONE]"
        envelope = json.loads(error.removeprefix("data: "))["error"]
        assert envelope["code"] == "model_waking"
        assert envelope["type"] == "server_error"
        assert "tiergate-large" in envelope["message"]
        assert chat_calls(gpu) == 0
        # The next request is served as before: it holds again (one wake for all).
        metrics = (await gateway.client.get("/metrics")).text
        assert 'outcome="error"' in metrics


async def test_a_wake_faster_than_the_interval_sends_nothing_early(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    """Held for less than one interval: no keep-alive, and a timed-out wake is a real 503."""
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=30) as gpu,
        serving(held_settings(engine, gpu, redis_server.url, hold_s=0.3, keepalive_s=5)) as gw,
    ):
        body = chat_body(model="tiergate", stream=True)
        refused = await gw.client.post(CHAT, json=body)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "model_waking"
        assert int(refused.headers["retry-after"]) >= 1


async def test_an_engine_failing_after_the_head_is_retried_then_an_error_event(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.4) as gpu,
        serving(held_settings(engine, gpu, redis_server.url, retries=1)) as gateway,
    ):
        body = chat_body(model="tiergate", stream=True, fake={"status": 502})
        async with gateway.client.stream("POST", CHAT, json=body) as response:
            assert response.status_code == 200
            text = "".join([part async for part in response.aiter_text()])
        *waiting, error, done = events(text)
        assert set(waiting) == {": waking"}
        assert done == "data: [DONE]"
        assert json.loads(error.removeprefix("data: "))["error"]["message"]
        assert chat_calls(gpu) == 2  # the retry before the first byte still happened


async def test_a_client_leaving_mid_hold_releases_its_lease_and_leaves_no_task(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    one_at_a_time = TierPolicy(max_tokens=100, max_concurrent=1)
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=30) as gpu,
        serving(held_settings(engine, gpu, redis_server.url, tier=one_at_a_time)) as gateway,
    ):
        before = asyncio.all_tasks()
        body = chat_body(model="tiergate", stream=True)
        async with (
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as leaving,
            leaving.stream("POST", CHAT, json=body) as response,
        ):
            assert response.status_code == 200
            first = await anext(response.aiter_raw())
            assert first.startswith(b": waking")
        metrics = gateway.app.state.metrics
        for _ in range(100):
            if metrics.in_flight_requests._value.get() == 0:
                break
            await asyncio.sleep(0.02)
        assert metrics.in_flight_requests._value.get() == 0
        # The lease is back: the one request the tier may have in flight is admitted.
        answered = await gateway.client.post(CHAT, json=chat_body())
        assert answered.status_code == 200, answered.text
        for _ in range(50):  # the answered request's own task ends just after its answer
            left = [
                repr(t.get_coro())
                for t in asyncio.all_tasks() - before
                if t.get_name() != "wake-gpu"  # the shared wake goes on, for the others
                and "HttpServer._on_connect" not in repr(t.get_coro())  # the engine's side
            ]
            if not left:
                break
            await asyncio.sleep(0.02)
        assert left == []
        text = (await gateway.client.get("/metrics")).text
        assert 'api_requests_total{api="chat",outcome="client_gone",tier="anonymous"} 1.0' in text


async def test_a_client_leaving_after_the_head_before_the_first_token_is_counted_gone(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    """The early head has a status already; the call is still settled as the client's."""
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.3) as gpu,
        serving(held_settings(engine, gpu, redis_server.url, first_token_timeout_s=5)) as gw,
    ):
        body = chat_body(model="tiergate", stream=True, fake={"first_token_delay_s": 3})
        async with (
            httpx.AsyncClient(base_url=gw.url, timeout=10) as leaving,
            leaving.stream("POST", CHAT, json=body) as response,
        ):
            chunks = response.aiter_raw()  # kept: a dropped iterator closes the response
            assert (await anext(chunks)).startswith(b": waking")
            for _ in range(100):  # the engine has the request: the lead-in waits for a token
                if chat_calls(gpu):
                    break
                await asyncio.sleep(0.02)
            assert chat_calls(gpu) == 1
        for _ in range(100):
            text = (await gw.client.get("/metrics")).text
            if 'outcome="client_gone",tier="anonymous"} 1.0' in text:
                break
            await asyncio.sleep(0.02)
        assert 'api_requests_total{api="chat",outcome="client_gone",tier="anonymous"} 1.0' in text
        assert 'outcome="client_disconnected"} 1.0' in text  # the upstream call's own count


async def test_a_held_non_stream_request_gets_nothing_until_the_answer(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.5) as gpu,
        serving(held_settings(engine, gpu, redis_server.url)) as gateway,
    ):
        started = time.perf_counter()
        async with gateway.client.stream("POST", CHAT, json=chat_body(model="tiergate")) as r:
            assert chat_calls(gpu) == 1  # the head came with the answer, after the wake
            content = await r.aread()
        assert time.perf_counter() - started >= 0.3
        assert r.headers["content-type"] == "application/json"
        assert json.loads(content)["model"] == "tiergate-large"
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=30) as slow,
        serving(held_settings(engine, slow, redis_server.url, hold_s=0.5)) as gateway,
    ):
        refused = await gateway.client.post(CHAT, json=chat_body(model="tiergate"))
        assert refused.status_code == 503  # held longer than the interval: still a status
        assert refused.json()["error"]["code"] == "model_waking"


async def test_a_held_responses_stream_gets_keepalives_then_its_events(
    engine: FakeEngine, redis_server: RedisServer, responses_schema: ResponsesSchema
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.4) as gpu,
        serving(held_settings(engine, gpu, redis_server.url)) as gateway,
    ):
        body = {"model": "tiergate", "input": "hello there", "stream": True, "store": False}
        async with gateway.client.stream("POST", "/v1/responses", json=body) as response:
            assert response.status_code == 200
            text = "".join([part async for part in response.aiter_text()])
        got = events(text)
        waiting = [e for e in got if e.startswith(":")]
        assert len(waiting) >= 2
        assert got[: len(waiting)] == waiting
        kinds = [_responses_event(e, responses_schema)["type"] for e in got[len(waiting) :]]
        assert kinds[0] == "response.created"
        assert kinds[-1] == "response.completed"
        async with _sdk(gateway.url) as client:  # the SDK skips the comments too
            stream = await client.responses.create(
                model="tiergate", input="hello", stream=True, store=False
            )
            types = [event.type async for event in stream]
        assert types[-1] == "response.completed"


async def test_a_responses_stream_whose_wake_times_out_fails(
    engine: FakeEngine, redis_server: RedisServer, responses_schema: ResponsesSchema
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=30) as gpu,
        serving(held_settings(engine, gpu, redis_server.url, hold_s=0.5)) as gateway,
    ):
        body = {"model": "tiergate", "input": "hello there", "stream": True}
        async with gateway.client.stream("POST", "/v1/responses", json=body) as response:
            assert response.status_code == 200
            text = "".join([part async for part in response.aiter_text()])
        got = [e for e in events(text) if not e.startswith(":")]
        parsed = [_responses_event(e, responses_schema) for e in got]
        types = [p["type"] for p in parsed]
        assert types == ["response.created", "response.in_progress", "error", "response.failed"]
        assert "waking" in parsed[-1]["response"]["error"]["message"]


def _responses_event(event: str, schema: ResponsesSchema) -> Any:
    lines = dict(line.split(": ", 1) for line in event.split("\n"))
    value = schema.validate_event(lines["data"])
    assert lines["event"] == value["type"]
    return value


@contextlib.asynccontextmanager
async def _sdk(url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client, as an anonymous caller (the SDK insists on a key: not sent)."""

    async def anonymous(request: httpx.Request) -> None:
        request.headers.pop("authorization", None)

    async with httpx.AsyncClient(event_hooks={"request": [anonymous]}) as http:
        yield openai.AsyncOpenAI(
            base_url=f"{url}/v1",
            api_key="unused",
            # The SDK takes a legacy httpx client as well as an httpx2 one; typed for httpx2.
            http_client=http,  # type: ignore[arg-type]
            max_retries=0,
        )
