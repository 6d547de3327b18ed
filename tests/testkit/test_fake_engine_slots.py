"""The fake engine's `slots`: a fixed number served at once, the rest waiting inside (llama.cpp)."""

from __future__ import annotations

import asyncio
import time

import httpx

from tiergate_testkit.fake_engine import FakeEngine

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_at_most_slots_at_once_the_rest_in_line() -> None:
    fake = FakeEngine(models=["m"], slots=2, default_fake={"header_delay_s": 0.3})
    async with fake, httpx.AsyncClient(base_url=fake.base_url, timeout=5) as client:
        started = time.perf_counter()

        async def one() -> float:
            response = await client.post(CHAT, json=BODY)
            assert response.status_code == 200
            return time.perf_counter() - started

        done = sorted(await asyncio.gather(*(one() for _ in range(5))))
        stats = (await client.get("/_fake/stats")).json()
    assert fake.max_busy == 2
    assert (stats["busy"], stats["max_busy"], stats["queued"]) == (0, 2, 0)
    # Three waves of 0.3 s: two, two, one (a fixed service rate of 2 per 0.3 s).
    assert done[1] < 0.55 <= done[2]
    assert done[3] < 0.85 <= done[4]


async def test_props_and_slots_say_how_many() -> None:
    async with (
        FakeEngine(slots=3) as llama,
        FakeEngine() as other,
        httpx.AsyncClient(timeout=5) as client,
    ):
        props = (await client.get(f"{llama.base_url}/props")).json()
        assert props["total_slots"] == 3
        slots = (await client.get(f"{llama.base_url}/slots")).json()
        assert [s["id"] for s in slots] == [0, 1, 2]
        assert not any(s["is_processing"] for s in slots)
        for path in ("/props", "/slots"):
            assert (await client.get(f"{other.base_url}{path}")).status_code == 404


async def test_a_client_leaving_while_in_line_is_never_served() -> None:
    fake = FakeEngine(models=["m"], slots=1)
    async with fake, httpx.AsyncClient(base_url=fake.base_url, timeout=5) as client:
        holder = asyncio.create_task(
            client.post(CHAT, json={**BODY, "fake": {"header_delay_s": 0.4}})
        )
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=fake.base_url, timeout=5) as other:
            leaving = asyncio.create_task(other.post(CHAT, json=BODY))
            await asyncio.sleep(0.1)
            assert fake.queued == 1
            leaving.cancel()
            await asyncio.gather(leaving, return_exceptions=True)
        assert (await holder).status_code == 200
        assert (await client.post(CHAT, json=BODY)).status_code == 200  # the slot is free
        async with asyncio.timeout(1):
            await fake.wait_settled()
    outcomes = [r.outcome for r in fake.requests if r.path == CHAT]
    assert outcomes == ["completed", "client_disconnected", "completed"]
    assert (fake.busy, fake.queued, fake.max_busy) == (0, 0, 1)
