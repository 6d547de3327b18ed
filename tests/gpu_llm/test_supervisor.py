"""The gpu-llm supervisor against engine processes it really starts.

The GPU engines (vLLM, SGLang) cannot run here, so their stand-in is the fake engine process
(with vLLM's and SGLang's health, sleep and wake endpoints and a configurable load time); one
test puts the real llama.cpp server with SmolLM2 under the supervisor as an engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tiergate_cpu_llm.model import resolve_model_path
from tiergate_gpu_llm.app import create_app
from tiergate_gpu_llm.settings import (
    EngineSettings,
    GpuLlmSettings,
    HealthSettings,
    PolicySettings,
)
from tiergate_gpu_llm.supervisor import Supervisor
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.ports import free_port
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

ADMIN = "gpu-admin-token-for-tests-0123456789abc"


async def eventually(predicate: Callable[[], bool], timeout_s: float) -> None:
    """Poll without blocking the loop the supervisor runs in."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


def fake_engine(
    model: str, *, load_time: float = 0.3, sleep: str = "none", ready_file: str | None = None
) -> EngineSettings:
    port = free_port()
    command = [
        sys.executable, "-m", "tiergate_testkit.fake_engine",
        "--port", str(port), "--model", model, "--load-time", str(load_time),
    ]  # fmt: skip
    if ready_file:
        command += ["--ready-file", ready_file]
    return EngineSettings(
        command=command,
        port=port,
        models=[model],
        sleep=sleep,  # type: ignore[arg-type]
        ready_timeout_s=20,
        stop_grace_s=3,
    )


def box(engines: dict[str, EngineSettings], **policy: Any) -> GpuLlmSettings:
    return GpuLlmSettings(
        engines=engines,
        admin_token=ADMIN,
        policy=PolicySettings(
            **{"min_dwell_s": 0.5, "idle_ttl_s": 600, "demand_window_s": 30, **policy}
        ),
        health=HealthSettings(probe_interval_s=0.2, probe_timeout_s=1, start_attempts=1),
    )


class Box:
    def __init__(self, url: str, client: httpx.AsyncClient, supervisor: Supervisor) -> None:
        self.url = url
        self.client = client
        self.supervisor = supervisor
        self.running_together = 0
        self._watch: asyncio.Task[None] | None = None

    async def chat(self, model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        return await self.client.post("/v1/chat/completions", json=body)

    async def state(self, engine: str) -> str:
        status = (await self.client.get("/status")).json()
        state: str = status["engines"][engine]["state"]
        return state

    async def until(self, engine: str, state: str, within_s: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + within_s
        while await self.state(engine) != state:
            assert asyncio.get_running_loop().time() < deadline, f"{engine} never {state}"
            await asyncio.sleep(0.05)

    async def watch(self) -> None:
        # The mutex, checked from outside: never two engine processes alive at once.
        while True:
            alive = [e for e in self.supervisor.engines.values() if e.running and not e.asleep]
            if len(alive) > 1:
                self.running_together += 1
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running(settings: GpuLlmSettings) -> AsyncIterator[Box]:
    app = create_app(settings, tick_s=0.05)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        gpu = Box(url, client, app.state.supervisor)
        watcher = asyncio.create_task(gpu.watch())
        try:
            yield gpu
        finally:
            watcher.cancel()
    assert gpu.running_together == 0, "two engines held the GPU at once"


def assert_503(response: httpx.Response, text: str) -> None:
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "model_loading"
    assert text in error["message"]


async def test_swap_both_ways_one_engine_at_a_time() -> None:
    settings = box({"qwen": fake_engine("qwen-14b"), "mistral": fake_engine("mistral-24b")})
    async with running(settings) as gpu:
        first = await gpu.chat("qwen-14b")
        assert_503(first, "qwen-14b")  # cold: demand starts the engine, never an empty body
        await gpu.until("qwen", "ready")
        assert (await gpu.chat("qwen-14b")).status_code == 200
        await asyncio.sleep(0.6)  # past the dwell
        assert_503(await gpu.chat("mistral-24b"), "held by 'qwen'")
        await gpu.until("mistral", "ready")
        assert await gpu.state("qwen") == "cold"
        assert not gpu.supervisor.engines["qwen"].running
        assert (await gpu.chat("mistral-24b")).status_code == 200
        await asyncio.sleep(0.6)
        assert_503(await gpu.chat("qwen-14b"), "held by 'mistral'")
        await gpu.until("qwen", "ready")
        assert (await gpu.chat("qwen-14b")).status_code == 200
        metrics = (await gpu.client.get("/metrics")).text
        assert 'tiergate_gpu_llm_swaps_total{previous="mistral",target="qwen"} 1.0' in metrics


async def test_unknown_model_and_bad_bodies() -> None:
    async with running(box({"qwen": fake_engine("qwen-14b")})) as gpu:
        unknown = await gpu.chat("nope")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["param"] == "model"
        bad = await gpu.client.post(
            "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
        missing = await gpu.client.post("/v1/chat/completions", json={"messages": []})
        assert missing.json()["error"]["param"] == "model"
        models = (await gpu.client.get("/v1/models")).json()["data"]
        assert models[0]["id"] == "qwen-14b"
        assert models[0]["tiergate"] == {"engine": "qwen", "state": "cold"}


async def test_idle_engine_stops_but_never_while_starting_or_serving() -> None:
    slow = fake_engine("qwen-14b", load_time=1.5)
    async with running(box({"qwen": slow}, idle_ttl_s=0.5)) as gpu:
        assert_503(await gpu.chat("qwen-14b"), "qwen-14b")
        await gpu.until("qwen", "starting")
        await asyncio.sleep(1.0)  # longer than the idle TTL while still loading
        assert await gpu.state("qwen") == "starting"
        await gpu.until("qwen", "ready")
        # A stream that lasts longer than the TTL keeps the engine.
        body = {
            "model": "qwen-14b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "fake": {"chunks": 8, "tokens_per_s": 8},
        }
        async with gpu.client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            await response.aread()
        assert await gpu.state("qwen") == "ready"
        await gpu.until("qwen", "cold", within_s=5)  # then idle: released
        assert not gpu.supervisor.engines["qwen"].running


async def test_hung_engine_restarts_after_two_failed_probes() -> None:
    engine = fake_engine("qwen-14b")
    async with running(box({"qwen": engine})) as gpu:
        await gpu.client.post("/v1/engines/qwen/wake", headers={"authorization": f"Bearer {ADMIN}"})
        assert await gpu.state("qwen") == "ready"
        pid = gpu.supervisor.engines["qwen"].pid
        async with httpx.AsyncClient() as direct:
            await direct.post(f"{engine.base_url}/_fake/health", json={"ok": False})
        await eventually(lambda: gpu.supervisor.status["qwen"].restarts == 1, 10)
        await gpu.until("qwen", "ready")
        assert gpu.supervisor.engines["qwen"].pid != pid
        assert (await gpu.chat("qwen-14b")).status_code == 200


async def test_killed_engine_is_restarted() -> None:
    async with running(box({"qwen": fake_engine("qwen-14b")})) as gpu:
        await gpu.client.post("/v1/engines/qwen/wake", headers={"authorization": f"Bearer {ADMIN}"})
        pid = gpu.supervisor.engines["qwen"].pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        await eventually(lambda: gpu.supervisor.status["qwen"].restarts == 1, 10)
        await gpu.until("qwen", "ready")
        assert (await gpu.chat("qwen-14b")).status_code == 200


async def test_an_engine_that_never_gets_ready_fails_and_a_later_wake_recovers(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "weights-present"
    engine = fake_engine("qwen-14b", ready_file=str(ready))
    # The same deadline covers the recovery's fresh start: two Python interpreters (the reaper
    # and the engine) start and answer /health in ~0.7 s here, with the other core busy ~0.8 s.
    # 1 s failed when this file ran alone on a loaded 2-core machine (issue 10); 5 s holds with
    # a margin of 5x and costs 4 s more for the failure to show.
    never = msgspec.structs.replace(engine, ready_timeout_s=5.0, stop_grace_s=2)
    async with running(box({"qwen": never})) as gpu:
        assert_503(await gpu.chat("qwen-14b"), "qwen-14b")
        await gpu.until("qwen", "failed")
        status = (await gpu.client.get("/status")).json()["engines"]["qwen"]
        assert "not ready within" in status["error"]
        assert not gpu.supervisor.engines["qwen"].running
        ready.touch()
        assert_503(await gpu.chat("qwen-14b"), "failed")  # demand tries again
        await gpu.until("qwen", "ready")
        assert (await gpu.chat("qwen-14b")).status_code == 200


async def test_sleep_mode_keeps_the_process_and_gives_the_gpu_back() -> None:
    settings = box(
        {
            "qwen": fake_engine("qwen-14b", sleep="vllm"),
            "mistral": fake_engine("mistral-24b", sleep="sglang"),
        }
    )
    admin = {"authorization": f"Bearer {ADMIN}"}
    async with running(settings) as gpu:
        await gpu.client.post("/v1/engines/qwen/wake", headers=admin)
        qwen = gpu.supervisor.engines["qwen"]
        pid = qwen.pid
        await gpu.client.post("/v1/engines/mistral/wake", headers=admin)
        assert await gpu.state("qwen") == "cold"
        assert qwen.running
        assert qwen.asleep  # slept in place, GPU released
        await gpu.client.post("/v1/engines/qwen/wake", headers=admin)
        assert qwen.pid == pid  # woken, not restarted
        assert gpu.supervisor.engines["mistral"].asleep
        assert (await gpu.chat("qwen-14b")).status_code == 200


async def test_admin_endpoints_need_the_token() -> None:
    async with running(box({"qwen": fake_engine("qwen-14b")})) as gpu:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            response = await gpu.client.post("/v1/engines/qwen/wake", headers=headers)
            assert response.status_code == 401
        missing = await gpu.client.post(
            "/v1/engines/nope/wake", headers={"authorization": f"Bearer {ADMIN}"}
        )
        assert missing.status_code == 404
        assert await gpu.state("qwen") == "cold"


@pytest.mark.e2e
async def test_real_llama_cpp_as_an_engine() -> None:
    port = free_port()
    launch = {
        "model_path": str(resolve_model_path(None)),
        "model_id": "smollm2",
        "ctx_size": 2048,
        "parallel": 1,
        "threads": 1,
        "threads_batch": 1,
        "batch_size": 512,
        "seed": 42,
        "port": port,
    }
    llama = EngineSettings(
        command=[sys.executable, "-m", "tiergate_cpu_llm.engine_main", json.dumps(launch)],
        port=port,
        models=["smollm2"],
        ready_timeout_s=120,
        stop_grace_s=10,
    )
    settings = box({"llama": llama, "mistral": fake_engine("mistral-24b")})
    async with running(settings) as gpu:
        assert_503(await gpu.chat("smollm2"), "smollm2")
        await gpu.until("llama", "ready", within_s=120)
        answer = await gpu.chat("smollm2")
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"]
        await asyncio.sleep(0.6)
        assert_503(await gpu.chat("mistral-24b"), "held by 'llama'")
        await gpu.until("mistral", "ready", within_s=60)
        assert not gpu.supervisor.engines["llama"].running


@pytest.mark.e2e
def test_killing_the_supervisor_leaves_no_engine(tmp_path: Path) -> None:
    engine = fake_engine("qwen-14b")
    config = tmp_path / "gpu.toml"
    config.write_text(
        f"admin_token = '{ADMIN}'\n"
        "[engines.qwen]\n"
        f"command = {json.dumps(engine.command)}\n"
        f"port = {engine.port}\n"
        "models = ['qwen-14b']\n"
    )
    env = {"TIERGATE_GPU_LLM_CONFIG": str(config)}
    with ServiceProcess("tiergate_gpu_llm", "TIERGATE_GPU_LLM_", env) as service:
        woke = httpx.post(
            f"{service.base_url}/v1/engines/qwen/wake",
            headers={"authorization": f"Bearer {ADMIN}"},
            timeout=30,
        )
        assert woke.json()["engines"]["qwen"]["state"] == "ready"
        assert httpx.get(f"{engine.base_url}/health").status_code == 200
        assert service.proc is not None
        service.proc.kill()  # SIGKILL: no chance to stop anything itself
        service.proc.wait(10)

    def gone() -> bool:
        try:
            httpx.get(f"{engine.base_url}/health", timeout=0.5)
        except httpx.HTTPError:
            return True
        return False

    assert wait_until(gone, 10), "the engine outlived its supervisor"


async def test_state_is_published_to_redis_for_the_gateways() -> None:
    from tiergate_gpu_llm.publish import status_key
    from tiergate_state.store import StoreSettings, connect
    from tiergate_testkit.redis_server import RedisServer

    with RedisServer() as redis_server:
        store_settings = StoreSettings(url=redis_server.url)
        settings = msgspec.structs.replace(
            box({"qwen": fake_engine("qwen-14b")}), store=store_settings
        )
        reader = connect(store_settings)
        try:
            async with running(settings) as gpu:
                await gpu.client.post(
                    "/v1/engines/qwen/wake", headers={"authorization": f"Bearer {ADMIN}"}
                )

                async def published_state() -> str | None:
                    raw = await reader.get(status_key("tg", "gpu0"))
                    if raw is None:
                        return None
                    state: str = json.loads(raw)["engines"]["qwen"]["state"]
                    return state

                deadline = asyncio.get_running_loop().time() + 5
                while await published_state() != "ready":
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                document = json.loads(await reader.get(status_key("tg", "gpu0")) or b"{}")
                assert document["hot"] == "qwen"
                assert 0 < await reader.pttl(status_key("tg", "gpu0")) <= 15_000
        finally:
            await reader.aclose()
