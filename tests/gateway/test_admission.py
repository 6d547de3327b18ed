"""Per-backend slots and wait queue (upstream/admission.py) as tables, without any HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tiergate_gateway.breaker import Breakers
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.settings import BackendSettings, GatewaySettings, validate
from tiergate_gateway.upstream.admission import (
    Admission,
    BackendOverloaded,
    BackendQueue,
    Permit,
    engine_slots,
)
from tiergate_runtime.settings import SettingsError
from tiergate_testkit.fake_engine import FakeEngine


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_queue(
    slots: int = 1, max_queue: int | None = 2, wait_s: float = 5.0, clock: Clock | None = None
) -> tuple[BackendQueue, GatewayMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    queue = BackendQueue("cpu", slots, max_queue, wait_s, metrics=metrics, clock=clock or Clock())
    return queue, metrics, registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"backend": "cpu", **labels})


async def queued(queue: BackendQueue, count: int) -> list[asyncio.Task[Permit]]:
    """`count` callers waiting in line (each started after the previous one queued)."""
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(queue.acquire()))
        await asyncio.sleep(0)
    return tasks


async def test_free_slots_at_once_then_first_come_first_served() -> None:
    queue, _, registry = make_queue(slots=2, max_queue=3)
    first, second = await queue.acquire(), await queue.acquire()
    assert (first.waited_s, second.waited_s, queue.in_flight) == (0.0, 0.0, 2)
    waiters = await queued(queue, 3)
    assert queue.waiting == 3
    assert sample(registry, "tiergate_gateway_backend_queue_depth") == 3
    first.release()
    await asyncio.sleep(0)
    assert [t.done() for t in waiters] == [True, False, False]  # the oldest, not any
    second.release()
    await asyncio.sleep(0)
    assert [t.done() for t in waiters] == [True, True, False]
    assert (queue.in_flight, queue.waiting) == (2, 1)
    for task in waiters[:2]:
        task.result().release()
    (await waiters[2]).release()
    assert (queue.in_flight, queue.waiting) == (0, 0)
    assert sample(registry, "tiergate_gateway_backend_in_flight") == 0
    assert sample(registry, "tiergate_gateway_backend_queue_wait_seconds_count") == 5


async def test_past_the_queue_bound_refused_at_once_with_retry_after() -> None:
    queue, _, registry = make_queue(slots=1, max_queue=2)
    holder = await queue.acquire()
    waiters = await queued(queue, 2)
    with pytest.raises(BackendOverloaded) as refused:
        await queue.acquire()
    error = refused.value
    assert (error.status, error.code, error.reason, error.backend) == (
        503,
        "backend_overloaded",
        "queue_full",
        "cpu",
    )
    assert error.response_headers()["retry-after"] == "5"  # nothing measured yet
    assert sample(registry, "tiergate_gateway_shed_total", reason="queue_full") == 1
    holder.release()
    for task in waiters:
        (await task).release()


async def test_no_slot_within_the_wait_is_refused_and_leaves_the_line() -> None:
    queue, _, registry = make_queue(slots=1, max_queue=4, wait_s=0.05)
    holder = await queue.acquire()
    with pytest.raises(BackendOverloaded) as refused:
        await queue.acquire()
    assert refused.value.reason == "wait_timeout"
    assert queue.waiting == 0
    assert sample(registry, "tiergate_gateway_shed_total", reason="wait_timeout") == 1
    holder.release()
    assert queue.in_flight == 0


async def _served(queue: BackendQueue) -> None:
    permit = await queue.acquire()
    permit.release(served=True)


async def _failed(queue: BackendQueue) -> None:
    async def call() -> None:
        raise RuntimeError("the call failed")

    permit = await queue.acquire()
    try:
        await call()
    except RuntimeError:
        permit.release(served=False)


async def _cancelled_holding(queue: BackendQueue) -> None:
    async def hold() -> None:
        permit = await queue.acquire()
        try:
            await asyncio.sleep(60)
        finally:
            permit.release(served=False)

    task = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _client_left_while_waiting(queue: BackendQueue) -> None:
    holder = await queue.acquire()
    [waiter] = await queued(queue, 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.waiting == 0
    holder.release()


async def _timed_out_waiting(queue: BackendQueue) -> None:
    holder = await queue.acquire()
    queue.max_wait_s = 0.02
    with pytest.raises(BackendOverloaded):
        await queue.acquire()
    holder.release()


async def _refused_queue_full(queue: BackendQueue) -> None:
    holder = await queue.acquire()
    waiters = await queued(queue, queue.max_queue)
    with pytest.raises(BackendOverloaded):
        await queue.acquire()
    holder.release()
    for task in waiters:
        (await task).release()


async def _released_twice(queue: BackendQueue) -> None:
    permit = await queue.acquire()
    permit.release()
    permit.release()  # a second release must not free a slot someone else holds


ENDINGS: dict[str, Callable[[BackendQueue], Awaitable[None]]] = {
    "served": _served,
    "failed": _failed,
    "cancelled while holding": _cancelled_holding,
    "client left while waiting": _client_left_while_waiting,
    "timed out while waiting": _timed_out_waiting,
    "refused, queue full": _refused_queue_full,
    "released twice": _released_twice,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_the_slot_is_given_back_on_every_ending(ending: str) -> None:
    queue, _, registry = make_queue(slots=1, max_queue=2)
    await ENDINGS[ending](queue)
    assert (queue.in_flight, queue.waiting) == (0, 0)
    assert sample(registry, "tiergate_gateway_backend_in_flight") == 0
    assert sample(registry, "tiergate_gateway_backend_queue_depth") == 0
    # The slot is really free: the next caller gets it at once, and only one caller does.
    permit = queue.try_acquire()
    assert permit is not None
    assert queue.try_acquire() is None
    permit.release()


async def test_a_slot_handed_to_a_caller_that_just_left_goes_to_the_next() -> None:
    queue, _, _ = make_queue(slots=1, max_queue=2)
    holder = await queue.acquire()
    leaving, next_one = await queued(queue, 2)
    holder.release()  # handed to `leaving`, which has not run yet ...
    leaving.cancel()  # ... and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await leaving
    permit = await asyncio.wait_for(next_one, 1)
    assert (queue.in_flight, queue.waiting) == (1, 0)
    permit.release()
    assert queue.in_flight == 0


@pytest.mark.parametrize(
    ("slots", "holds_s", "waiting", "retry_after"),
    [
        (2, [], 0, 5),  # nothing measured yet: the default
        (2, [2.0], 0, 1),  # 1 call/s: the next slot within a second
        (2, [2.0], 3, 4),  # four ahead (three waiting, and this one) at 1/s
        (1, [0.1, 0.1], 3, 1),  # fast: never below 1
        (1, [30.0], 3, 60),  # slow: never above 60
    ],
)
async def test_retry_after_from_the_measured_service_rate(
    slots: int, holds_s: list[float], waiting: int, retry_after: int
) -> None:
    clock = Clock()
    queue, _, _ = make_queue(slots=slots, max_queue=10, clock=clock)
    for hold in holds_s:
        permit = await queue.acquire()
        clock.now += hold
        permit.release(served=True)
    permits = [await queue.acquire() for _ in range(slots)]
    waiters = await queued(queue, waiting)
    assert queue.retry_after() == retry_after
    for permit in permits:
        permit.release()
    for task in waiters:
        (await task).release()


async def test_failed_calls_do_not_change_the_measured_rate() -> None:
    clock = Clock()
    queue, _, _ = make_queue(slots=1, clock=clock)
    permit = await queue.acquire()
    clock.now += 0.001
    permit.release(served=False)  # an instant error says nothing about the service rate
    assert queue.retry_after() == 5


async def test_more_slots_admit_waiters_at_once_and_fewer_drain_first() -> None:
    queue, _, registry = make_queue(slots=1, max_queue=None)
    assert queue.max_queue == 4  # 4 per slot when unset
    holder = await queue.acquire()
    waiters = await queued(queue, 2)
    queue.set_slots(3)
    await asyncio.sleep(0)
    assert all(t.done() for t in waiters)
    assert (queue.in_flight, queue.max_queue) == (3, 12)
    assert sample(registry, "tiergate_gateway_backend_slots") == 3
    queue.set_slots(1)
    holder.release()
    waiters[0].result().release()
    assert queue.in_flight == 1
    assert queue.try_acquire() is None  # still one in flight: the smaller bound holds
    waiters[1].result().release()
    assert queue.in_flight == 0


def backend(**fields: object) -> BackendSettings:
    return BackendSettings(base_url="http://127.0.0.1:1/v1", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "workers", "bound"),
    [
        (backend(kind="openai"), 1, None),  # vLLM, SGLang, others: their scheduler queues
        (backend(kind="vllm", slots=8), 1, (8, 32)),
        (backend(kind="llamacpp"), 1, (4, 16)),  # until learned: llama.cpp's default
        (backend(kind="llamacpp", slots=2, max_queue=3), 1, (2, 3)),
        (backend(kind="llamacpp", slots=4, max_queue=0), 1, (4, 0)),
        (backend(kind="sglang", slots=5, max_queue=7), 2, (3, 4)),  # a share per worker
        (backend(kind="openai", slots=1), 4, (1, 4)),
    ],
)
def test_which_backends_are_bounded_and_how(
    settings: BackendSettings, workers: int, bound: tuple[int, int] | None
) -> None:
    admission = Admission({"cpu": settings}, GatewayMetrics(CollectorRegistry()), workers=workers)
    queue = admission.queue("cpu")
    assert (None if queue is None else (queue.slots, queue.max_queue)) == bound


def test_max_queue_needs_slots_where_they_cannot_be_learned() -> None:
    settings = GatewaySettings(backends={"gpu": backend(kind="vllm", max_queue=4)}, models=[])
    with pytest.raises(SettingsError, match=r"backends\.gpu\.max_queue: needs backends\.gpu"):
        validate(settings)


async def test_engine_slots_from_props_or_slots_or_nothing() -> None:
    async with (
        FakeEngine(slots=3) as llama,
        FakeEngine() as other,
        httpx.AsyncClient(timeout=2) as client,
    ):
        assert await engine_slots(client, f"{llama.base_url}/v1") == 3
        assert await engine_slots(client, f"{other.base_url}/v1") is None

    def slots_only(request: httpx.Request) -> httpx.Response:
        # An older llama.cpp whose /props has no total_slots: the slot list tells.
        if request.url.path == "/props":
            return httpx.Response(200, json={"model_path": "m.gguf"})
        return httpx.Response(200, json=[{"id": 0}, {"id": 1}])

    transport = httpx.MockTransport(slots_only)
    async with httpx.AsyncClient(transport=transport) as client:
        assert await engine_slots(client, "http://engine:8080/v1") == 2


async def test_slots_are_learned_from_the_engine_and_split_across_workers() -> None:
    async with FakeEngine(slots=3) as llama:
        settings = {"cpu": BackendSettings(base_url=f"{llama.base_url}/v1", kind="llamacpp")}
        admission = Admission(settings, GatewayMetrics(CollectorRegistry()), workers=2)
        admission.start()
        try:
            for _ in range(100):
                if admission.learned:
                    break
                await asyncio.sleep(0.02)
        finally:
            await admission.stop()
    assert admission.learned == {"cpu": 3}
    queue = admission.queue("cpu")
    assert queue is not None
    assert (queue.slots, queue.max_queue) == (2, 8)


def test_a_shed_probe_is_given_back_not_counted() -> None:
    now = [0.0]
    breakers = Breakers(threshold=1, cooldown_s=10, clock=lambda: now[0])
    first = breakers.acquire("cpu")
    assert first is not None
    first.failure()
    now[0] = 11.0
    probe = breakers.acquire("cpu")  # the half-open probe, claimed ...
    assert probe is not None
    assert probe.probe
    assert breakers.acquire("cpu") is None
    probe.neutral()  # ... and shed before the engine saw it
    assert breakers.state("cpu") == "half_open"
    assert breakers.acquire("cpu") is not None  # the next request may probe
