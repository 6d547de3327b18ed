"""Fallbacks before the first byte, and the circuit breaker, in process."""

from __future__ import annotations

import asyncio
import socket

import httpx
import msgspec
import pytest

from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    ResilienceSettings,
    TierPolicy,
)
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import ALIAS, chat_body, gateway_settings, running


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more


def with_dead_gpu(engine: FakeEngine) -> GatewaySettings:
    base = gateway_settings(engine.base_url)
    return msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            "gpu": BackendSettings(base_url=dead_url(), connect_retries=0, connect_timeout_s=0.5),
        },
        models=[
            *base.models,
            ModelAlias(id="tiergate-large", backend="gpu", engine_model="engine-large"),
            ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
        ],
        routes=[RouteRule(models=["tiergate-large", ALIAS])],
        tiers={"anonymous": TierPolicy(max_tokens=100)},
        resilience=ResilienceSettings(retries=0, breaker_threshold=3, breaker_cooldown_s=60),
    )


async def test_a_dead_backend_falls_back_and_its_breaker_opens(engine: FakeEngine) -> None:
    async with running(with_dead_gpu(engine), engine) as gateway:
        for _ in range(3):
            response = await gateway.client.post(
                "/v1/chat/completions", json=chat_body(model="tiergate")
            )
            assert response.status_code == 200
            assert response.headers["x-tiergate-backend"] == "cpu"
            assert response.headers["x-tiergate-fallback-from"] == "gpu"
        metrics = (await gateway.client.get("/metrics")).text
        assert 'tiergate_gateway_breaker_state{backend="gpu"} 1.0' in metrics
        # Open: the dead backend is not even tried (no fallback header, no connect error).
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(model="tiergate")
        )
        assert response.headers["x-tiergate-backend"] == "cpu"
        assert "x-tiergate-fallback-from" not in response.headers
        after = (await gateway.client.get("/metrics")).text
        connect_errors = 'tiergate_gateway_upstream_errors_total{backend="gpu",kind="connect"} 3.0'
        assert connect_errors in after


async def test_no_fallback_after_the_first_byte(engine: FakeEngine) -> None:
    async with running(with_dead_gpu(engine), engine) as gateway:
        body = chat_body(model=ALIAS, stream=True, fake={"drop_after": 1})
        async with gateway.client.stream("POST", "/v1/chat/completions", json=body) as response:
            text = (await response.aread()).decode()
        assert response.status_code == 200
        assert '"error"' in text  # ends with an error event; never retried elsewhere
        chats = [r for r in engine.requests if r.path == "/v1/chat/completions"]
        assert len(chats) == 1


async def test_no_first_token_in_time_falls_back_before_the_first_byte(engine: FakeEngine) -> None:
    async with FakeEngine(models=["engine-large"], default_fake={"first_token_delay_s": 5}) as slow:
        base = gateway_settings(engine.base_url)
        settings = msgspec.structs.replace(
            base,
            backends={
                **base.backends,
                "gpu": BackendSettings(base_url=f"{slow.base_url}/v1", first_token_timeout_s=0.5),
            },
            models=[
                *base.models,
                ModelAlias(id="tiergate-large", backend="gpu", engine_model="engine-large"),
                ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
            ],
            routes=[RouteRule(models=["tiergate-large", ALIAS])],
            tiers={"anonymous": TierPolicy(max_tokens=100)},
            resilience=ResilienceSettings(retries=0),
        )
        async with running(settings, engine) as gateway:
            body = chat_body(model="tiergate", stream=True)
            response = await gateway.client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            assert response.headers["x-tiergate-backend"] == "cpu"
            assert response.headers["x-tiergate-fallback-from"] == "gpu"
            assert response.text.endswith("data: [DONE]\n\n")
            assert '"model":"tiergate-small"' in response.text
            # The slow engine's stream was closed, not left generating.
            slow_chat = [r for r in slow.requests if r.path == "/v1/chat/completions"][-1]
            await slow.wait_settled()
            assert slow_chat.outcome == "client_disconnected"


async def test_first_token_timeout_relays_a_timely_stream_whole(engine: FakeEngine) -> None:
    base = gateway_settings(engine.base_url, first_token_timeout_s=2)
    async with running(base, engine) as gateway:
        body = chat_body(stream=True, fake={"chunks": 4, "first_token_delay_s": 0.2})
        response = await gateway.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        events = [e for e in response.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        contents = [e for e in events if '"content"' in e]
        assert len(contents) >= 4


async def test_client_leaving_during_the_lead_in_closes_the_upstream(engine: FakeEngine) -> None:
    base = gateway_settings(engine.base_url, first_token_timeout_s=3)
    async with running(base, engine) as gateway:
        body = chat_body(stream=True, fake={"first_token_delay_s": 2})
        with pytest.raises(httpx.ReadTimeout):
            await gateway.client.post(
                "/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.3)
            )
        # Nothing reached the client; the engine must still see the close before its token.
        async with asyncio.timeout(1.5):
            await engine.wait_settled()
        chat = [r for r in engine.requests if r.path == "/v1/chat/completions"][-1]
        assert chat.outcome == "client_disconnected"


async def test_a_half_open_backend_not_tried_keeps_its_probe() -> None:
    """Issue 11: looking at a candidate claims nothing. Backend `b` is half-open; requests
    answered by `a` before it must leave `b`'s probe free, so that the next request whose
    plan puts `b` first probes it (and closes its breaker) instead of skipping it forever."""
    async with FakeEngine(models=["m"]) as a, FakeEngine(models=["m"]) as b:
        base = gateway_settings(a.base_url)
        code = {"role": "user", "content": "```python\ndef f(x):\n    return x\n```\nfix it"}
        settings = msgspec.structs.replace(
            base,
            backends={
                "a": BackendSettings(base_url=f"{a.base_url}/v1", kind="vllm"),
                "b": BackendSettings(base_url=f"{b.base_url}/v1", kind="vllm"),
            },
            models=[
                ModelAlias(id="via-a", backend="a", engine_model="m"),
                ModelAlias(id="via-b", backend="b", engine_model="m"),
                ModelAlias(id="routed", backend="a", engine_model="m", routed=True),
            ],
            routes=[
                RouteRule(workload="code", models=["via-b", "via-a"]),
                RouteRule(models=["via-a", "via-b"]),
            ],
            resilience=ResilienceSettings(retries=0, breaker_threshold=1, breaker_cooldown_s=0.3),
        )
        async with running(settings, a) as gateway:
            broken = await gateway.client.post(
                "/v1/chat/completions", json=chat_body(model="via-b", fake={"status": 503})
            )
            assert broken.status_code == 503  # b's breaker opens
            await asyncio.sleep(0.4)  # ... and is half-open now
            for _ in range(3):  # chat: a answers first; b is only looked at
                answered = await gateway.client.post(
                    "/v1/chat/completions", json=chat_body(model="routed")
                )
                assert answered.headers["x-tiergate-backend"] == "a"
            probe = await gateway.client.post(
                "/v1/chat/completions", json=chat_body(model="routed", messages=[code])
            )
            assert probe.status_code == 200
            assert probe.headers["x-tiergate-workload"].startswith("code")
            assert probe.headers["x-tiergate-backend"] == "b"  # probed, not skipped
            metrics = (await gateway.client.get("/metrics")).text
            assert 'tiergate_gateway_breaker_state{backend="b"} 0.0' in metrics


async def test_a_probe_that_ends_in_a_4xx_is_given_back(engine: FakeEngine) -> None:
    settings = msgspec.structs.replace(
        gateway_settings(engine.base_url),
        resilience=ResilienceSettings(retries=0, breaker_threshold=1, breaker_cooldown_s=0.3),
    )
    async with running(settings, engine) as gateway:
        broken = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(fake={"status": 503})
        )
        assert broken.status_code == 503
        await asyncio.sleep(0.4)
        refused = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(fake={"status": 400})
        )
        assert refused.status_code == 400  # the probe's answer says nothing of the backend
        answered = await gateway.client.post("/v1/chat/completions", json=chat_body())
        assert answered.status_code == 200  # the probe was free again, and it succeeded
        metrics = (await gateway.client.get("/metrics")).text
        assert 'tiergate_gateway_breaker_state{backend="cpu"} 0.0' in metrics
