"""Identity lookups under a burst: one lookup per key in flight, a bounded queue to auth.

Issue 10, defect 3: 1,000 concurrent requests with a key not cached yet were 1,000 lookups,
and most became `503 auth_unavailable` (`PoolTimeout`) while auth was healthy. These tests
drive `CachedDirectory` and `AuthServiceDirectory` with in-memory sources.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tiergate_gateway.identity.coalesce import Coalescer
from tiergate_gateway.identity.directory import (
    AuthServiceDirectory,
    CachedDirectory,
    LookupFailed,
)
from tiergate_proto.identity import ApiKeyRecord
from tiergate_runtime.errors import ServiceUnavailable

RECORD = ApiKeyRecord(id="key-1", owner="tests", tier="agent", created_at=0)
N = 1000


class GatedSource:
    """A `Directory` whose lookups wait until `release` is set, counting the calls."""

    def __init__(self, *, fail: bool = False) -> None:
        self.release = asyncio.Event()
        self.key_calls = 0
        self.session_calls = 0
        self.touches = 0
        self.fail = fail

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        self.key_calls += 1
        await self.release.wait()
        if self.fail:
            raise LookupFailed("ConnectError")
        return RECORD if digest.startswith("known") else None

    async def touch_api_key(self, digest: str) -> None:
        self.touches += 1

    async def session_active(self, sid: str) -> bool:
        self.session_calls += 1
        await self.release.wait()
        if self.fail:
            raise LookupFailed("ConnectError")
        return sid != "ended"


async def settle() -> None:
    """Let every task started so far run up to its first wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_burst_with_one_new_key_is_one_lookup() -> None:
    source = GatedSource()
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    waiters = [asyncio.create_task(directory.api_key("known-1")) for _ in range(N)]
    await settle()
    assert source.key_calls == 1
    assert directory.lookups_in_flight == 1
    source.release.set()
    assert await asyncio.gather(*waiters) == [RECORD] * N
    assert (source.key_calls, source.touches) == (1, 1)
    assert directory.lookups_in_flight == 0
    assert await directory.api_key("known-1") == RECORD  # cached now
    assert source.key_calls == 1


async def test_an_unknown_key_is_one_lookup_too() -> None:
    source = GatedSource()
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    waiters = [asyncio.create_task(directory.api_key("unknown")) for _ in range(N)]
    await settle()
    source.release.set()
    assert await asyncio.gather(*waiters) == [None] * N
    assert (source.key_calls, source.touches) == (1, 0)


async def test_distinct_keys_are_looked_up_separately() -> None:
    source = GatedSource()
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    waiters = [asyncio.create_task(directory.api_key(f"known-{i % 10}")) for i in range(100)]
    await settle()
    assert directory.lookups_in_flight == 10
    source.release.set()
    assert await asyncio.gather(*waiters) == [RECORD] * 100
    assert source.key_calls == 10
    assert directory.lookups_in_flight == 0


async def test_a_failed_lookup_is_shared_and_the_next_call_asks_again() -> None:
    source = GatedSource(fail=True)
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    waiters = [asyncio.create_task(directory.api_key("known-1")) for _ in range(N)]
    await settle()
    source.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert source.key_calls == 1
    assert all(isinstance(r, ServiceUnavailable) for r in results)
    assert {r.code for r in results if isinstance(r, ServiceUnavailable)} == {"auth_unavailable"}
    assert directory.lookups_in_flight == 0
    source.fail = False
    assert await directory.api_key("known-1") == RECORD  # a failure is not remembered
    assert source.key_calls == 2


async def test_a_failed_lookup_still_serves_a_stale_answer_to_every_waiter() -> None:
    source = GatedSource()
    source.release.set()
    directory = CachedDirectory(source, ttl_s=0.01, stale_s=900)
    assert await directory.api_key("known-1") == RECORD
    await asyncio.sleep(0.02)  # past the fresh period
    source.fail = True
    source.release.clear()
    waiters = [asyncio.create_task(directory.api_key("known-1")) for _ in range(100)]
    await settle()
    source.release.set()
    assert await asyncio.gather(*waiters) == [RECORD] * 100
    assert source.key_calls == 2


async def test_cancelling_the_first_waiter_does_not_cancel_the_lookup() -> None:
    source = GatedSource()
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    first = asyncio.create_task(directory.api_key("known-1"))
    await settle()
    others = [asyncio.create_task(directory.api_key("known-1")) for _ in range(10)]
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    assert directory.lookups_in_flight == 1  # still running for the others
    source.release.set()
    assert await asyncio.gather(*others) == [RECORD] * 10
    assert source.key_calls == 1
    assert directory.lookups_in_flight == 0


async def test_when_every_waiter_is_cancelled_the_lookup_ends_and_leaves_nothing() -> None:
    source = GatedSource(fail=True)
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    waiters = [asyncio.create_task(directory.api_key("known-1")) for _ in range(10)]
    await settle()
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert directory.lookups_in_flight == 1
    source.release.set()  # the lookup fails with nobody waiting: no "never retrieved" log
    await settle()
    assert directory.lookups_in_flight == 0
    assert source.key_calls == 1


async def test_session_lookups_are_coalesced() -> None:
    source = GatedSource()
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    waiters = [asyncio.create_task(directory.session_active("sid-1")) for _ in range(N)]
    ended = [asyncio.create_task(directory.session_active("ended")) for _ in range(N)]
    await settle()
    assert directory.lookups_in_flight == 2
    source.release.set()
    assert await asyncio.gather(*waiters) == [True] * N
    assert await asyncio.gather(*ended) == [False] * N
    assert source.session_calls == 2
    assert directory.lookups_in_flight == 0


async def test_a_failed_session_lookup_is_shared() -> None:
    source = GatedSource(fail=True)
    directory = CachedDirectory(source, ttl_s=4, stale_s=900)
    waiters = [asyncio.create_task(directory.session_active("sid-1")) for _ in range(100)]
    await settle()
    source.release.set()
    # No earlier answer: the locally verified session counts (see `session_active`).
    assert await asyncio.gather(*waiters) == [True] * 100
    assert source.session_calls == 1


async def test_coalescer_shares_one_call_per_key() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def call(key: str) -> str:
        calls.append(key)
        await release.wait()
        return key.upper()

    coalescer: Coalescer[str, str] = Coalescer("test")
    tasks = [
        asyncio.create_task(coalescer.run(k, lambda k=k: call(k)))  # type: ignore[misc]
        for k in ["a", "b", "a", "b", "a"]
    ]
    await settle()
    assert sorted(calls) == ["a", "b"]
    assert len(coalescer) == 2
    release.set()
    assert await asyncio.gather(*tasks) == ["A", "B", "A", "B", "A"]
    assert len(coalescer) == 0


def key_service(in_flight: list[int], peak: list[int], delay_s: float) -> httpx.MockTransport:
    """The auth service's key lookup, slow by `delay_s`, recording lookups in flight."""

    async def handler(request: httpx.Request) -> httpx.Response:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        try:
            await asyncio.sleep(delay_s)
        finally:
            in_flight[0] -= 1
        digest = json.loads(request.content)["digest"]
        body = {"id": digest, "owner": "tests", "tier": "agent", "created_at": 0}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


async def test_many_new_keys_queue_for_a_bounded_number_of_lookups() -> None:
    in_flight, peak = [0], [0]
    async with httpx.AsyncClient(transport=key_service(in_flight, peak, 0.005)) as client:
        source = AuthServiceDirectory(
            client, "http://auth", "t" * 32, max_concurrent=8, queue_wait_s=10
        )
        directory = CachedDirectory(source, ttl_s=4, stale_s=900)
        records = await asyncio.gather(*(directory.api_key(f"k{i}") for i in range(200)))
    assert [r.id for r in records if r is not None] == [f"k{i}" for i in range(200)]
    assert peak[0] == 8


async def test_a_lookup_that_waits_too_long_for_a_slot_fails_cleanly() -> None:
    in_flight, peak = [0], [0]
    async with httpx.AsyncClient(transport=key_service(in_flight, peak, 0.3)) as client:
        source = AuthServiceDirectory(
            client, "http://auth", "t" * 32, max_concurrent=1, queue_wait_s=0.05
        )
        first = asyncio.create_task(source.api_key("k1"))
        await settle()
        with pytest.raises(LookupFailed, match="queue wait"):
            await source.api_key("k2")
        assert (await first) is not None
        assert await source.api_key("k3") is not None  # the slot was given back
