"""Shared by the engine tier: engine settings for real vLLM and llama.cpp, a gpu-llm box run in
the test's loop, and the process tree walked through /proc (vLLM is several processes).

The tests import it as `from .kit import ...` (namespace package under importlib mode; its
asserts are rewritten: conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

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

ROOT = Path(__file__).resolve().parent.parent
ENGINES_PYTHON = ROOT / ".venv-engines" / "bin" / "python"
ADMIN = "engine-tier-admin-token-0123456789abcdef"
VLLM_MODEL = "smollm2-vllm"
LLAMA_MODEL = "smollm2-llama"
VLLM_START_S = 300.0
"""Generous: ~40 s to /health on two idle cores with --enforce-eager, several times that when
the other core is busy with a neighbour's tests."""


def vllm_command(model_dir: Path, port: int, *, sleep: bool = False) -> list[str]:
    """The real vLLM OpenAI server on the CPU, as gpu-llm starts it (not `vllm serve`: this
    repackage looks up its own metadata under the wrong name there)."""
    command = [
        str(ENGINES_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", VLLM_MODEL,
        "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--max-model-len", "2048", "--max-num-seqs", "4",
        "--disable-log-stats", "--uvicorn-log-level", "warning",
    ]  # fmt: skip
    if sleep:
        command.append("--enable-sleep-mode")
    return command


VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def vllm_engine(model_dir: Path, *, sleep: bool = False) -> EngineSettings:
    """gpu-llm's table for the real vLLM engine."""
    port = free_port()
    return EngineSettings(
        command=vllm_command(model_dir, port, sleep=sleep),
        port=port,
        models=[VLLM_MODEL],
        sleep="vllm" if sleep else "none",
        ready_timeout_s=VLLM_START_S,
        stop_grace_s=10,
        env=VLLM_ENV,
    )


def llama_engine() -> EngineSettings:
    """gpu-llm's table for the real llama.cpp engine (the workspace's SmolLM2 GGUF)."""
    port = free_port()
    launch = {
        "model_path": str(resolve_model_path(None)),
        "model_id": LLAMA_MODEL,
        "ctx_size": 2048,
        "parallel": 1,
        "threads": 1,
        "threads_batch": 1,
        "batch_size": 512,
        "seed": 42,
        "port": port,
    }
    return EngineSettings(
        command=[sys.executable, "-m", "tiergate_cpu_llm.engine_main", json.dumps(launch)],
        port=port,
        models=[LLAMA_MODEL],
        ready_timeout_s=120,
        stop_grace_s=10,
    )


def box(engines: dict[str, EngineSettings], **policy: Any) -> GpuLlmSettings:
    """A box whose swap rule hands the GPU over on the first request (no dwell to speak of)."""
    return GpuLlmSettings(
        engines=engines,
        admin_token=ADMIN,
        policy=PolicySettings(
            **{"min_dwell_s": 0.5, "idle_ttl_s": 600, "demand_window_s": 30, **policy}
        ),
        health=HealthSettings(probe_interval_s=1, probe_timeout_s=2, start_attempts=1),
    )


# --- processes --------------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid → ppid of every process now (from /proc/PID/stat)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # comm may hold spaces and parentheses: the fields after the last ')' are fixed.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` that still exist and are not zombies."""
    living = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                living.add(pid)
    return living


def cmdline(pid: int) -> str:
    """The process's command line ('' if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- a gpu-llm box in the test's loop --------------------------------------------------------


class Box:
    """gpu-llm's app and its supervisor, with a watcher asserting the one-engine-hot mutex."""

    def __init__(self, url: str, client: httpx.AsyncClient, supervisor: Supervisor) -> None:
        self.url = url
        self.client = client
        self.supervisor = supervisor
        self.running_together = 0

    async def chat(self, model: str, **extra: Any) -> httpx.Response:
        """One short chat completion through gpu-llm."""
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 8,
            "temperature": 0,
            **extra,
        }
        return await self.client.post("/v1/chat/completions", json=body)

    async def state(self, engine: str) -> str:
        """The engine's state from /status."""
        status = (await self.client.get("/status")).json()
        state: str = status["engines"][engine]["state"]
        return state

    async def until(self, engine: str, state: str, within_s: float = VLLM_START_S) -> None:
        """Wait for `engine` to reach `state`."""
        deadline = asyncio.get_running_loop().time() + within_s
        while (now := await self.state(engine)) != state:
            assert asyncio.get_running_loop().time() < deadline, f"{engine} {now}, never {state}"
            await asyncio.sleep(0.1)

    def reaper_pid(self, engine: str) -> int:
        """The pid of the reaper that leads the engine's process group."""
        pid = self.supervisor.engines[engine].pid
        assert pid is not None, f"{engine} is not running"
        return pid

    async def watch(self) -> None:
        """The mutex, checked from outside: never two engines awake at once."""
        while True:
            awake = [e for e in self.supervisor.engines.values() if e.running and not e.asleep]
            if len(awake) > 1:
                self.running_together += 1
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running(settings: GpuLlmSettings) -> AsyncIterator[Box]:
    """Serve gpu-llm in this loop; on exit assert the mutex held throughout."""
    app = create_app(settings, tick_s=0.05)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as client:
        gpu = Box(url, client, app.state.supervisor)
        watcher = asyncio.create_task(gpu.watch())
        try:
            yield gpu
        finally:
            watcher.cancel()
    assert gpu.running_together == 0, "two engines held the GPU at once"


async def eventually(predicate: Callable[[], bool], timeout_s: float) -> None:
    """Poll without blocking the loop gpu-llm runs in."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.1)
