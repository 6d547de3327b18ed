"""Load shedding through the real gateway, in front of a fake engine with a fixed service rate.

The fake serves two requests at once (like llama.cpp with `--parallel 2`), each in 0.8 s; the
gateway's backend has 2 slots and lets 4 more wait. Past that, a 503 with Retry-After comes in
milliseconds; below it, every request is answered (issue 10, defect 6).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import BackendSettings, GatewaySettings, ModelAlias, TierPolicy
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import ALIAS, ENGINE_MODEL, Gateway, chat_body, gateway_settings, running

SERVICE_S = 0.8  # long enough that a whole burst reaches the gateway before the first ends
SLOTS = 2
MAX_QUEUE = 4
WAIT_S = 5.0


@dataclass
class Answer:
    status: int
    head_s: float
    """Seconds from sending to the response head (time to first byte)."""
    total_s: float
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@pytest.fixture
async def slow_engine() -> AsyncIterator[FakeEngine]:
    fake = FakeEngine(
        models=[ENGINE_MODEL], slots=SLOTS, default_fake={"header_delay_s": SERVICE_S}
    )
    async with fake:
        yield fake


def bounded(engine: FakeEngine, **backend: object) -> GatewaySettings:
    fields: dict[str, object] = {
        "slots": SLOTS,
        "max_queue": MAX_QUEUE,
        "max_queue_wait_s": WAIT_S,
    }
    settings = gateway_settings(engine.base_url, **(fields | backend))
    # The engine never queues behind a bounded backend, so its answers come in SERVICE_S;
    # a roomy read timeout keeps a slow machine from turning that into a 504.
    cpu = msgspec.structs.replace(settings.backends["cpu"], read_timeout_s=10.0)
    return msgspec.structs.replace(settings, backends={"cpu": cpu})


async def ask(gateway: Gateway, *, stream: bool = False, **extra: Any) -> Answer:
    started = time.perf_counter()
    body = chat_body(stream=stream, **extra)
    async with gateway.client.stream("POST", "/v1/chat/completions", json=body) as response:
        head_s = time.perf_counter() - started
        content = await response.aread()
    return Answer(
        response.status_code, head_s, time.perf_counter() - started, response.headers, content
    )


async def burst(gateway: Gateway, count: int, **extra: Any) -> list[Answer]:
    return list(await asyncio.gather(*(ask(gateway, **extra) for _ in range(count))))


def chats(engine: FakeEngine) -> int:
    return sum(1 for r in engine.requests if r.path == "/v1/chat/completions")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (backend "cpu" unless told otherwise)."""
    wanted = {"backend": "cpu", **labels}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return float(sample.value)
    raise AssertionError(f"{name}{wanted} not in /metrics")


def total(text: str, name: str) -> float:
    """The sum of every sample named `name` (the series exist from the start, at 0)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def assert_shed(answer: Answer, reason_code: str = "backend_overloaded") -> None:
    assert answer.status == 503
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", reason_code)
    assert "overloaded" in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_past_the_queue_bound_503_in_milliseconds_the_rest_answered(
    slow_engine: FakeEngine, stream: bool
) -> None:
    async with running(bounded(slow_engine), slow_engine) as gateway:
        assert (await ask(gateway, stream=stream)).status == 200  # first-use costs go here
        slow_engine.reset()
        answers = await burst(gateway, 20, stream=stream)
        metrics = (await gateway.client.get("/metrics")).text
    ok = [a for a in answers if a.status == 200]
    shed = [a for a in answers if a.status != 200]
    assert (len(ok), len(shed)) == (SLOTS + MAX_QUEUE, 20 - SLOTS - MAX_QUEUE)
    for answer in shed:
        assert_shed(answer)
    refused_ms = sorted(a.total_s * 1000 for a in shed)
    ttfb_s = sorted(a.head_s for a in ok)
    print(
        f"\nshedding ({'stream' if stream else 'json'}): {len(ok)} answered, {len(shed)} shed; "
        f"503 latency ms min {refused_ms[0]:.1f} median {statistics.median(refused_ms):.1f} "
        f"max {refused_ms[-1]:.1f}; accepted TTFB s {[round(t, 2) for t in ttfb_s]}"
    )
    assert refused_ms[-1] < 500  # in practice a few ms; generous so a busy CI cannot flake
    assert refused_ms[-1] / 1000 < ttfb_s[0]  # every refusal came before any answer
    # The engine never had more than its slots: the rest waited in the gateway, in line, and
    # the last two of the six began after two services (1.6 s), well within the wait.
    assert slow_engine.max_busy <= SLOTS
    assert chats(slow_engine) == SLOTS + MAX_QUEUE
    assert ttfb_s[-1] < WAIT_S + SERVICE_S
    for answer in ok:
        assert answer.headers["x-tiergate-queue-wait-ms"].isdigit()
        if stream:
            assert answer.body.rstrip().endswith(b"data: [DONE]")
        else:
            assert answer.json()["model"] == ALIAS
    shed_total = metric(metrics, "tiergate_gateway_shed_total", reason="queue_full")
    assert shed_total == len(shed)
    waits = metric(metrics, "tiergate_gateway_backend_queue_wait_seconds_count")
    assert waits == len(ok) + 1  # and the first request
    assert metric(metrics, "tiergate_gateway_backend_queue_depth") == 0
    assert metric(metrics, "tiergate_gateway_backend_in_flight") == 0
    assert metric(metrics, "tiergate_gateway_backend_slots") == SLOTS
    # Overload is not failure: the breaker stays closed, nothing counts as an upstream error.
    assert total(metrics, "tiergate_gateway_upstream_errors_total") == 0
    assert 'tiergate_gateway_breaker_state{backend="cpu"} 1.0' not in metrics
    assert metric(
        metrics,
        "tiergate_gateway_upstream_calls_total",
        api="chat",
        model=ALIAS,
        mode=("stream" if stream else "json"),
        outcome="overloaded",
    ) == len(shed)


async def test_below_the_bound_every_request_is_answered(slow_engine: FakeEngine) -> None:
    async with running(bounded(slow_engine), slow_engine) as gateway:
        for stream in (False, True):
            answers = await burst(gateway, SLOTS + MAX_QUEUE, stream=stream)
            assert [a.status for a in answers] == [200] * (SLOTS + MAX_QUEUE)
        metrics = (await gateway.client.get("/metrics")).text
    waited = metric(metrics, "tiergate_gateway_backend_queue_wait_seconds_sum")
    assert waited > 0  # four of each six waited for a slot
    assert total(metrics, "tiergate_gateway_shed_total") == 0
    assert slow_engine.max_busy <= SLOTS


async def test_a_wait_past_max_queue_wait_is_a_503_and_bounds_time_to_first_byte(
    slow_engine: FakeEngine,
) -> None:
    settings = bounded(slow_engine, max_queue_wait_s=0.3)
    async with running(settings, slow_engine) as gateway:
        answers = await burst(gateway, 4, stream=True)
        metrics = (await gateway.client.get("/metrics")).text
    assert sorted(a.status for a in answers) == [200, 200, 503, 503]
    for answer in answers:
        if answer.status == 503:
            assert_shed(answer)
            # Refused at the configured wait, not at the read timeout (1.5 s here) or later.
            assert 0.25 <= answer.head_s < 1.2
    assert metric(metrics, "tiergate_gateway_shed_total", reason="wait_timeout") == 2
    assert chats(slow_engine) == 2


async def test_a_client_that_leaves_while_waiting_gives_its_place_back(
    slow_engine: FakeEngine,
) -> None:
    settings = bounded(slow_engine, slots=1, max_queue=1)
    async with running(settings, slow_engine) as gateway:
        holder = asyncio.create_task(ask(gateway, fake={"header_delay_s": 1.0}))
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as leaving_client:
            leaving = asyncio.create_task(
                leaving_client.post("/v1/chat/completions", json=chat_body())
            )
            await asyncio.sleep(0.15)  # it waits in line now (the one queue place)
            metrics = (await gateway.client.get("/metrics")).text
            assert metric(metrics, "tiergate_gateway_backend_queue_depth") == 1
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
        await asyncio.sleep(0.1)
        # Its place is free again: the next request waits instead of being refused.
        after = await ask(gateway)
        assert (await holder).status == 200
        assert after.status == 200
        metrics = (await gateway.client.get("/metrics")).text
    assert metric(metrics, "tiergate_gateway_backend_queue_depth") == 0
    assert metric(metrics, "tiergate_gateway_backend_in_flight") == 0
    assert total(metrics, "tiergate_gateway_shed_total") == 0
    assert chats(slow_engine) == 2  # the one that left never reached the engine


async def test_an_overloaded_backend_falls_back_to_the_next_model_and_keeps_its_breaker(
    slow_engine: FakeEngine,
) -> None:
    base = bounded(slow_engine, slots=1, max_queue=0)
    settings = msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            "spare": BackendSettings(base_url=f"{slow_engine.base_url}/v1", read_timeout_s=5),
        },
        models=[
            *base.models,
            ModelAlias(id="tiergate-spare", backend="spare", engine_model=ENGINE_MODEL),
            ModelAlias(id="tiergate", backend="cpu", engine_model=ENGINE_MODEL, routed=True),
        ],
        routes=[RouteRule(models=[ALIAS, "tiergate-spare"])],
        tiers={"anonymous": TierPolicy(max_tokens=100)},
    )
    async with running(settings, slow_engine) as gateway:
        answers = await burst(gateway, 3, model="tiergate")
        metrics = (await gateway.client.get("/metrics")).text
    assert [a.status for a in answers] == [200, 200, 200]
    backends = sorted(a.headers["x-tiergate-backend"] for a in answers)
    assert backends == ["cpu", "spare", "spare"]
    fallen = [a for a in answers if a.headers["x-tiergate-backend"] == "spare"]
    assert all(a.headers["x-tiergate-fallback-from"] == "cpu" for a in fallen)
    assert metric(metrics, "tiergate_gateway_shed_total", reason="queue_full") == 2
    assert 'tiergate_gateway_breaker_state{backend="cpu"} 1.0' not in metrics


async def test_slots_are_learned_from_a_llamacpp_engine(slow_engine: FakeEngine) -> None:
    base = gateway_settings(slow_engine.base_url)
    settings = msgspec.structs.replace(
        base,
        backends={
            "cpu": msgspec.structs.replace(
                base.backends["cpu"], kind="llamacpp", max_queue=1, max_queue_wait_s=WAIT_S
            )
        },
    )
    async with running(settings, slow_engine) as gateway:
        for _ in range(100):
            metrics = (await gateway.client.get("/metrics")).text
            if metric(metrics, "tiergate_gateway_backend_slots") == SLOTS:
                break
            await asyncio.sleep(0.05)
        assert metric(metrics, "tiergate_gateway_backend_slots") == SLOTS  # 4 before
        answers = await burst(gateway, 5)
    assert sorted(a.status for a in answers) == [200, 200, 200, 503, 503]
    assert slow_engine.max_busy <= SLOTS


async def in_flight_drops_to_zero(gateway: Gateway) -> bool:
    for _ in range(100):
        metrics = (await gateway.client.get("/metrics")).text
        if metric(metrics, "tiergate_gateway_backend_in_flight") == 0:
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize(
    "ending", ["engine error", "client left mid-stream", "client left before the answer"]
)
async def test_the_slot_is_given_back_however_the_call_ends(
    slow_engine: FakeEngine, ending: str
) -> None:
    settings = bounded(slow_engine, slots=1, max_queue=0)  # one slot, nobody may wait
    async with running(settings, slow_engine) as gateway:
        if ending == "engine error":
            assert (await ask(gateway, fake={"status": 500})).status == 502
        elif ending == "client left mid-stream":
            body = chat_body(stream=True, fake={"tokens_per_s": 4, "chunks": 40})
            async with gateway.client.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                async for _ in r.aiter_bytes():
                    break  # leave after the first bytes: the stream had the slot until now
        else:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as leaving_client:
                leaving = asyncio.create_task(
                    leaving_client.post(
                        "/v1/chat/completions", json=chat_body(fake={"header_delay_s": 1.0})
                    )
                )
                await asyncio.sleep(0.2)
                leaving.cancel()
                await asyncio.gather(leaving, return_exceptions=True)
        assert await in_flight_drops_to_zero(gateway)
        # The one slot is free again: the next request is answered, not refused.
        assert (await ask(gateway)).status == 200
        metrics = (await gateway.client.get("/metrics")).text
    assert total(metrics, "tiergate_gateway_shed_total") == 0
