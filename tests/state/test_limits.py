"""The limits script, on a real redis-server and on the in-process store alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tiergate_proto.identity import Window
from tiergate_state.limits import Limiter, LimitPolicy, ResilientLimiter
from tiergate_state.store import StoreSettings, connect, in_process_store
from tiergate_testkit.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["redis", "in-process"])
async def store(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[aioredis.Redis]:
    client = (
        connect(StoreSettings(url=redis_server.url))
        if request.param == "redis"
        else in_process_store()
    )
    yield client
    await client.aclose()


def rid() -> str:
    return uuid.uuid4().hex


def bucket() -> str:
    return f"test:{uuid.uuid4().hex[:8]}"


async def test_requests_window_admits_the_limit_then_refuses(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(requests=Window(limit=3, window_s=60))
    name = bucket()
    remaining = []
    for _ in range(3):
        decision = await limiter.admit(name, policy, rid(), 0)
        assert decision.allowed
        remaining.append(decision.requests_remaining)
    assert remaining == [2, 1, 0]
    refused = await limiter.admit(name, policy, rid(), 0)
    assert refused.verdict == "requests"
    assert 59 <= refused.retry_after_s <= 60
    assert 59 <= refused.requests_reset_s <= 60
    # A refused request is not counted: still refused, not further behind.
    again = await limiter.admit(name, policy, rid(), 0)
    assert again.verdict == "requests"
    assert again.requests_remaining == 0


async def test_window_slides(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(requests=Window(limit=2, window_s=1))
    name = bucket()
    assert (await limiter.admit(name, policy, rid(), 0)).allowed
    assert (await limiter.admit(name, policy, rid(), 0)).allowed
    refused = await limiter.admit(name, policy, rid(), 0)
    assert not refused.allowed
    await asyncio.sleep(refused.retry_after_s + 0.05)
    assert (await limiter.admit(name, policy, rid(), 0)).allowed


async def test_buckets_are_independent(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(requests=Window(limit=1, window_s=60))
    first, second = bucket(), bucket()
    assert (await limiter.admit(first, policy, rid(), 0)).allowed
    assert not (await limiter.admit(first, policy, rid(), 0)).allowed
    assert (await limiter.admit(second, policy, rid(), 0)).allowed


async def test_tokens_reserved_then_reconciled(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(tokens=Window(limit=1000, window_s=60))
    name = bucket()
    first = rid()
    decision = await limiter.admit(name, policy, first, 700)
    assert decision.allowed
    assert decision.tokens_remaining == 300
    # 700 reserved: another 400 does not fit ...
    refused = await limiter.admit(name, policy, rid(), 400)
    assert refused.verdict == "tokens"
    assert 59 <= refused.retry_after_s <= 60
    # ... until the first call reports it really used 100.
    await limiter.finish(name, first, 100)
    admitted = await limiter.admit(name, policy, rid(), 400)
    assert admitted.allowed
    assert admitted.tokens_remaining == 500


async def test_a_request_larger_than_the_whole_budget_is_too_large(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(tokens=Window(limit=1000, window_s=60))
    decision = await limiter.admit(bucket(), policy, rid(), 1001)
    assert decision.verdict == "too_large"


async def test_unknown_usage_keeps_the_reservation(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(tokens=Window(limit=1000, window_s=60))
    name = bucket()
    first = rid()
    await limiter.admit(name, policy, first, 600)
    await limiter.finish(name, first, None)
    assert (await limiter.admit(name, policy, rid(), 500)).verdict == "tokens"


async def test_tokens_leave_the_window(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(tokens=Window(limit=100, window_s=1))
    name = bucket()
    assert (await limiter.admit(name, policy, rid(), 80)).allowed
    refused = await limiter.admit(name, policy, rid(), 80)
    assert refused.verdict == "tokens"
    await asyncio.sleep(refused.retry_after_s + 0.05)
    decision = await limiter.admit(name, policy, rid(), 80)
    assert decision.allowed
    assert decision.tokens_remaining == 20


async def test_concurrency_leases_are_released_and_expire(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(max_concurrent=2, lease_s=0.5)
    name = bucket()
    first, second = rid(), rid()
    assert (await limiter.admit(name, policy, first, 0)).allowed
    assert (await limiter.admit(name, policy, second, 0)).allowed
    refused = await limiter.admit(name, policy, rid(), 0)
    assert refused.verdict == "concurrency"
    assert refused.in_flight == 2
    await limiter.finish(name, first, None)
    assert (await limiter.admit(name, policy, rid(), 0)).allowed
    # Nobody releases these two (their process "died"): the leases run out by themselves.
    await asyncio.sleep(0.6)
    assert (await limiter.admit(name, policy, rid(), 0)).allowed


async def test_a_renewed_lease_survives_its_first_expiry(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(max_concurrent=1, lease_s=0.4)
    name = bucket()
    held = rid()
    assert (await limiter.admit(name, policy, held, 0)).allowed
    for _ in range(3):
        await asyncio.sleep(0.2)
        assert await limiter.renew(name, held, 0.4)
    assert (await limiter.admit(name, policy, rid(), 0)).verdict == "concurrency"
    await limiter.finish(name, held, None)
    assert not await limiter.renew(name, held, 0.4)  # released: nothing to renew


async def test_all_limits_decide_together(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(
        requests=Window(limit=5, window_s=60),
        tokens=Window(limit=100, window_s=60),
        max_concurrent=5,
    )
    name = bucket()
    assert (await limiter.admit(name, policy, rid(), 90)).allowed
    refused = await limiter.admit(name, policy, rid(), 20)
    assert refused.verdict == "tokens"
    # The refused request took neither a request slot nor a lease.
    decision = await limiter.admit(name, policy, rid(), 5)
    assert decision.allowed
    assert decision.requests_remaining == 3
    assert decision.in_flight == 2


async def test_parallel_admissions_never_exceed_the_limit(store: aioredis.Redis) -> None:
    limiter = Limiter(store)
    policy = LimitPolicy(requests=Window(limit=10, window_s=60))
    name = bucket()
    decisions = await asyncio.gather(*(limiter.admit(name, policy, rid(), 0) for _ in range(40)))
    assert sum(d.allowed for d in decisions) == 10


async def test_keys_share_one_hash_tag() -> None:
    keys = Limiter(in_process_store()).keys("anonymous:2001:db8::{1}")
    tags = {key[key.index("{") + 1 : key.index("}")] for key in keys}
    assert len(tags) == 1
    assert all(key.count("{") == 1 and key.count("}") == 1 for key in keys)


async def test_resilient_limiter_degrades_to_per_process_and_recovers() -> None:
    server = RedisServer().start()
    client = connect(StoreSettings(url=server.url, timeout_s=0.2, connect_timeout_s=0.2))
    fallbacks: list[int] = []
    clock = [0.0]
    limiter = ResilientLimiter(
        Limiter(client), retry_s=5, on_fallback=lambda: fallbacks.append(1), clock=lambda: clock[0]
    )
    policy = LimitPolicy(requests=Window(limit=2, window_s=60))
    try:
        assert not (await limiter.admit("t:x", policy, rid(), 0)).local
        server.kill()
        local = await limiter.admit("t:x", policy, rid(), 0)
        assert local.allowed
        assert local.local
        assert limiter.degraded
        assert (await limiter.admit("t:x", policy, rid(), 0)).allowed  # local count: 2
        refused = await limiter.admit("t:x", policy, rid(), 0)
        assert refused.verdict == "requests"  # the per-process limit still holds
        assert len(fallbacks) == 3
        await limiter.finish("t:x", rid(), 10, local=False)  # store down: logged, not raised
        server.start()
        clock[0] += 6  # past retry_s: Redis is tried again
        back = await limiter.admit("t:x", policy, rid(), 0)
        assert not back.local
        assert back.verdict == "ok"  # a fresh server: its own count
    finally:
        await client.aclose()
        server.stop()
