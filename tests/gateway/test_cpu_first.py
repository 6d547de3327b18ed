"""CPU-first and hold, in process: a GPU platform backend that scales to zero (a fake engine
that is down until woken), the CPU model as the fallback, a real redis-server for the wake lock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import msgspec
import pytest

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

from .conftest import ALIAS, chat_body, gateway_settings, running


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def gpu_settings(
    cpu: FakeEngine,
    gpu: FakeEngine,
    redis_url: str,
    when_cold: str = "cpu_first",
    hold_s: float = 0,
) -> GatewaySettings:
    base = gateway_settings(cpu.base_url)
    wake = WakeSettings(url=f"{gpu.base_url}/_fake/wake", probe_interval_s=0.1, lock_ttl_s=30)
    return msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            "gpu": BackendSettings(base_url=f"{gpu.base_url}/v1", wake=wake),
        },
        models=[
            *base.models,
            ModelAlias(id="tiergate-large", backend="gpu", engine_model="engine-large"),
            ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
        ],
        routes=[
            RouteRule(
                models=["tiergate-large", ALIAS],
                when_cold=when_cold,  # type: ignore[arg-type]
                hold_s=hold_s,
            ),
        ],
        tiers={"anonymous": TierPolicy(max_tokens=100)},
        store=StoreSettings(url=redis_url, key_prefix=f"w{uuid.uuid4().hex[:8]}"),
    )


async def test_cold_gpu_answers_from_cpu_and_wakes_once(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with (
        FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.5) as gpu,
        running(gpu_settings(engine, gpu, redis_server.url), engine) as gateway,
    ):
        body = chat_body(model="tiergate")
        answers = await asyncio.gather(
            *(gateway.client.post("/v1/chat/completions", json=body) for _ in range(20))
        )
        assert [a.status_code for a in answers] == [200] * 20
        assert {a.headers["x-tiergate-backend"] for a in answers} == {"cpu"}
        assert {a.headers["x-tiergate-upgrade"] for a in answers} == {"waking"}
        assert {a.json()["model"] for a in answers} == {ALIAS}
        await asyncio.sleep(0.3)
        assert gpu.wakes == 1  # twenty requests, one wake
        for _ in range(100):  # the GPU becomes ready; later requests go there
            response = await gateway.client.post("/v1/chat/completions", json=body)
            if response.headers["x-tiergate-backend"] == "gpu":
                break
            await asyncio.sleep(0.05)
        assert response.headers["x-tiergate-backend"] == "gpu"
        assert "x-tiergate-upgrade" not in response.headers
        assert response.json()["model"] == "tiergate-large"
        assert gpu.wakes == 1


async def test_hold_waits_for_the_wake_then_503(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    async with FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.3) as gpu:
        settings = gpu_settings(engine, gpu, redis_server.url, when_cold="hold", hold_s=3)
        async with running(settings, engine) as gateway:
            held = await gateway.client.post(
                "/v1/chat/completions", json=chat_body(model="tiergate")
            )
            assert held.status_code == 200
            assert held.headers["x-tiergate-backend"] == "gpu"  # waited for the wake
    async with FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=5) as slow:
        settings = gpu_settings(engine, slow, redis_server.url, when_cold="hold", hold_s=0.5)
        async with running(settings, engine) as gateway:
            refused = await gateway.client.post(
                "/v1/chat/completions", json=chat_body(model="tiergate")
            )
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "model_waking"
