"""Limits through the gateway, in process: windows, headers, client addresses, Redis outages."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from tiergate_gateway.limits import format_reset
from tiergate_gateway.settings import GatewaySettings, LimitSettings, TierPolicy
from tiergate_proto.identity import Window
from tiergate_state.store import StoreSettings
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.redis_server import RedisServer

from .conftest import ALIAS, chat_body, gateway_settings, running


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def limited(
    engine: FakeEngine, store_url: str | None, policy: TierPolicy, **extra: Any
) -> GatewaySettings:
    base = gateway_settings(engine.base_url)
    store = StoreSettings(url=store_url, key_prefix=f"l{uuid.uuid4().hex[:8]}")
    return msgspec.structs.replace(base, tiers={"anonymous": policy}, store=store, **extra)


SEED = TierPolicy(models=[ALIAS], max_tokens=300, requests=Window(limit=20, window_s=900))


@pytest.mark.parametrize("store", ["redis", "in-process"])
async def test_the_21st_request_in_the_window_is_429(
    engine: FakeEngine, redis_server: RedisServer, store: str
) -> None:
    settings = limited(engine, redis_server.url if store == "redis" else None, SEED)
    async with running(settings, engine) as gateway:
        for index in range(20):
            response = await gateway.client.post("/v1/chat/completions", json=chat_body())
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit-requests"] == "20"
            assert response.headers["x-ratelimit-remaining-requests"] == str(19 - index)
            assert re.fullmatch(r"\d+m\d+s", response.headers["x-ratelimit-reset-requests"])
        refused = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=True))
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "rate_limit_exceeded"
        assert error["type"] == "requests"
        assert 890 <= int(refused.headers["retry-after"]) <= 900
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-tiergate-tier"] == "anonymous"
        chats = [r for r in engine.requests if r.path == "/v1/chat/completions"]
        assert len(chats) == 20  # the refused request never reached the engine


async def test_max_tokens_is_clamped_and_set(engine: FakeEngine) -> None:
    async with running(limited(engine, None, SEED), engine) as gateway:
        for body, expected in (
            (chat_body(max_tokens=5000), 300),
            (chat_body(max_completion_tokens=9000), 300),
            (chat_body(max_tokens=10), 10),
            (chat_body(), 300),
        ):
            response = await gateway.client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            assert response.headers["x-tiergate-max-tokens"] == str(expected)
            sent = [r for r in engine.requests if r.path == "/v1/chat/completions"][-1].body
            assert isinstance(sent, dict)
            caps = [sent[k] for k in ("max_tokens", "max_completion_tokens") if k in sent]
            assert caps
            assert all(cap == expected for cap in caps)


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(engine: FakeEngine) -> None:
    policy = TierPolicy(models=[ALIAS], requests=Window(limit=2, window_s=60))
    async with running(limited(engine, None, policy), engine) as gateway:
        for spoof in ("1.1.1.1", "2.2.2.2"):
            ok = await gateway.client.post(
                "/v1/chat/completions", json=chat_body(), headers={"x-forwarded-for": spoof}
            )
            assert ok.status_code == 200
        # A third made-up address does not buy a fresh budget: the peer's address counts.
        refused = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers={"x-forwarded-for": "3.3.3.3"}
        )
        assert refused.status_code == 429


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(engine: FakeEngine) -> None:
    policy = TierPolicy(models=[ALIAS], requests=Window(limit=1, window_s=60))
    settings = limited(engine, None, policy, trusted_proxies=["127.0.0.0/8"])
    async with running(settings, engine) as gateway:
        for client_ip in ("198.51.100.1", "198.51.100.2"):
            response = await gateway.client.post(
                "/v1/chat/completions",
                json=chat_body(),
                headers={"x-forwarded-for": f"10.9.9.9, {client_ip}"},
            )
            assert response.status_code == 200
        again = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers={"x-forwarded-for": "198.51.100.1"}
        )
        assert again.status_code == 429


async def test_concurrent_streams_per_subject(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    policy = TierPolicy(models=[ALIAS], max_concurrent=2)
    async with running(limited(engine, redis_server.url, policy), engine) as gateway:
        slow = chat_body(stream=True, fake={"chunks": 5, "tokens_per_s": 10})

        async def stream() -> int:
            async with gateway.client.stream("POST", "/v1/chat/completions", json=slow) as response:
                await response.aread()
                return response.status_code

        running_streams = [asyncio.create_task(stream()) for _ in range(2)]
        await asyncio.sleep(0.2)
        refused = await gateway.client.post("/v1/chat/completions", json=chat_body())
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
        assert await asyncio.gather(*running_streams) == [200, 200]
        # Finished streams gave their leases back.
        assert (
            await gateway.client.post("/v1/chat/completions", json=chat_body())
        ).status_code == 200


async def test_tokens_are_reserved_then_charged_at_real_usage(engine: FakeEngine) -> None:
    policy = TierPolicy(models=[ALIAS], max_tokens=300, tokens=Window(limit=1000, window_s=60))
    async with running(limited(engine, None, policy), engine) as gateway:
        first = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(fake={"content": "one two three"})
        )
        assert first.status_code == 200
        used = first.json()["usage"]["total_tokens"]
        # Reserved: prompt estimate + 300; after the call only the real usage is charged.
        second = await gateway.client.post("/v1/chat/completions", json=chat_body())
        remaining_before_second = int(second.headers["x-ratelimit-remaining-tokens"])
        assert second.headers["x-ratelimit-limit-tokens"] == "1000"
        assert remaining_before_second < 1000 - used - 300  # the second's reservation is in
        assert remaining_before_second > 1000 - used - 300 - 200
        # A request that may need more than the whole budget is refused outright.
        huge = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(messages=[{"role": "user", "content": "x" * 3000}]),
        )
        assert huge.status_code == 429
        assert huge.json()["error"]["code"] == "request_too_large"
        assert huge.json()["error"]["type"] == "tokens"


async def test_redis_killed_mid_run_degrades_to_per_process(engine: FakeEngine) -> None:
    server = RedisServer().start()
    policy = TierPolicy(models=[ALIAS], requests=Window(limit=3, window_s=60))
    settings = limited(engine, server.url, policy, limits=LimitSettings(retry_store_s=0.5))
    settings = msgspec.structs.replace(
        settings,
        store=msgspec.structs.replace(settings.store, timeout_s=0.2, connect_timeout_s=0.2),
    )
    try:
        async with running(settings, engine) as gateway:
            assert (
                await gateway.client.post("/v1/chat/completions", json=chat_body())
            ).status_code == 200
            server.kill()
            statuses = [
                (await gateway.client.post("/v1/chat/completions", json=chat_body())).status_code
                for _ in range(4)
            ]
            # Never a 500: served, then limited by the per-process count (3 per window).
            assert statuses == [200, 200, 200, 429]
            metrics = (await gateway.client.get("/metrics")).text
            degraded = re.search(
                r"^tiergate_gateway_limits_degraded_decisions_total (\S+)$", metrics, re.M
            )
            assert degraded is not None
            assert float(degraded.group(1)) >= 4
            server.start()
            await asyncio.sleep(0.6)
            back = await gateway.client.post("/v1/chat/completions", json=chat_body())
            assert back.status_code == 200
            assert (
                back.headers["x-ratelimit-remaining-requests"] == "2"
            )  # a fresh Redis counts anew
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (0, "0ms"), (1, "1s"), (45.2, "46s"), (360, "6m0s"), (3723, "1h2m3s")],
)
def test_reset_durations_read_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


async def test_a_burst_beyond_the_store_pool_waits_instead_of_failing(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    policy = TierPolicy(
        models=[ALIAS], requests=Window(limit=1000, window_s=60), max_concurrent=100
    )
    settings = limited(engine, redis_server.url, policy)
    # A generous wait: what is tested is that the burst queues for the two connections
    # (a non-blocking pool fails at once), not how fast a loaded machine drains the queue.
    store = msgspec.structs.replace(settings.store, max_connections=2, timeout_s=10.0)
    async with running(msgspec.structs.replace(settings, store=store), engine) as gateway:
        responses = await asyncio.gather(
            *(gateway.client.post("/v1/chat/completions", json=chat_body()) for _ in range(30))
        )
        assert [r.status_code for r in responses] == [200] * 30
        assert {r.headers["x-ratelimit-remaining-requests"] for r in responses} == {
            str(n) for n in range(970, 1000)
        }
