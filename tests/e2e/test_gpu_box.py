"""End to end: the gateway in front of a gpu-llm box — CPU-first while the box swaps.

gpu-llm runs as a process with two stand-in GPU engines (fake engine processes with a load
time: vLLM and SGLang need a GPU); the gateway runs in this test's loop with a fake CPU model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tiergate_gateway.app import create_app
from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    AuthLink,
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    TierPolicy,
    WakeSettings,
)
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.gpu_box import fake_engine_table
from tiergate_testkit.ports import free_port
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess

ALIAS = "tiergate-small"

pytestmark = pytest.mark.e2e

ADMIN = "gpu-box-admin-token-0123456789abcdefgh"


@pytest.fixture
async def cpu() -> AsyncIterator[FakeEngine]:
    async with FakeEngine(models=["engine-small"]) as fake:
        yield fake


def chat_body(text: str) -> dict[str, object]:
    return {"model": "tiergate", "messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def gpu_box(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[ServiceProcess]:
    config: Path = tmp_path_factory.mktemp("gpu") / "gpu.toml"
    config.write_text(
        f"admin_token = '{ADMIN}'\n[policy]\nmin_dwell_s = 0.5\n"
        f"[engines.qwen]\n{fake_engine_table('qwen-14b', free_port())}"
        f"[engines.mistral]\n{fake_engine_table('mistral-24b', free_port())}"
    )
    # The box publishes its state in Redis, where the gateway reads it.
    env = {"TIERGATE_GPU_LLM_CONFIG": str(config), "TIERGATE_GPU_LLM_STORE__URL": redis_server.url}
    with ServiceProcess("tiergate_gpu_llm", "TIERGATE_GPU_LLM_", env) as box:
        yield box


async def test_cpu_first_while_the_box_wakes_then_swaps(
    cpu: FakeEngine, gpu_box: ServiceProcess, redis_server: RedisServer
) -> None:
    cpu_backend = BackendSettings(
        base_url=f"{cpu.base_url}/v1", health_url=f"{cpu.base_url}/health"
    )
    wake = WakeSettings(kind="supervisor", url=gpu_box.base_url, token=ADMIN, probe_interval_s=0.1)
    gpu = BackendSettings(base_url=f"{gpu_box.base_url}/v1", wake=wake, required_for_ready=False)
    settings = GatewaySettings(
        backends={"cpu": cpu_backend, "qwen": gpu, "mistral": msgspec.structs.replace(gpu)},
        models=[
            ModelAlias(id=ALIAS, backend="cpu", engine_model="engine-small"),
            ModelAlias(id="tiergate-qwen", backend="qwen", engine_model="qwen-14b"),
            ModelAlias(id="tiergate-mistral", backend="mistral", engine_model="mistral-24b"),
            ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
        ],
        routes=[
            RouteRule(workload="code", models=["tiergate-qwen", ALIAS]),
            RouteRule(models=["tiergate-mistral", ALIAS]),
        ],
        tiers={"anonymous": TierPolicy(max_tokens=100)},
        auth=AuthLink(url=None),
        store=StoreSettings(url=redis_server.url),
    )
    code = chat_body("Write a Python loop.")
    prose = chat_body("Tell me about tides.")
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):

        async def until_backend(body: dict[str, object], backend: str) -> httpx.Response:
            for _ in range(200):
                response = await client.post("/v1/chat/completions", json=body)
                assert response.status_code == 200
                if response.headers["x-tiergate-backend"] == backend:
                    return response
                assert response.headers["x-tiergate-backend"] == "cpu"
                assert response.headers["x-tiergate-upgrade"] == "waking"
                await asyncio.sleep(0.1)
            raise AssertionError(f"never answered by {backend}")

        first = await until_backend(code, "qwen")
        assert first.json()["model"] == "tiergate-qwen"
        # Prose wants mistral: the box swaps (after its dwell); meanwhile the CPU answers.
        swapped = await until_backend(prose, "mistral")
        assert swapped.json()["model"] == "tiergate-mistral"
        metrics = (await client.get(f"{gpu_box.base_url}/metrics")).text
        assert 'route="/status"' not in metrics  # readiness came from Redis, not polling
        status = (await client.get(f"{gpu_box.base_url}/status")).json()
        assert status["hot"] == "mistral"
        assert status["engines"]["qwen"]["state"] == "cold"
