"""gpu-llm supervises a real vLLM engine and a real llama.cpp engine on the one-engine-hot mutex.

One box for the whole module (a vLLM start costs ~40 s here): the tests run in file order and
each leaves the box as the next expects it. vLLM runs as an API server, an engine core and
their multiprocessing helpers: every one of them must be gone whenever gpu-llm stops vLLM
(swap, restart, idle). The watcher in `running()` asserts that the two engines are never up
at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from .kit import (
    LLAMA_MODEL,
    VLLM_MODEL,
    Box,
    alive,
    box,
    cmdline,
    descendants,
    eventually,
    llama_engine,
    running,
    vllm_engine,
)

IDLE_TTL_S = 20.0
"""Long enough that no step of a test leaves the engine idle that long, short enough to wait
for in the last test."""

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
async def gpu(model_dir: Path) -> AsyncIterator[Box]:
    settings = box({"vllm": vllm_engine(model_dir), "llama": llama_engine()}, idle_ttl_s=IDLE_TTL_S)
    async with running(settings) as gpu:
        yield gpu


def assert_503(response: httpx.Response, text: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "model_loading"
    assert text in error["message"]


def vllm_tree(gpu: Box) -> set[int]:
    """The reaper and every vLLM process below it."""
    reaper = gpu.reaper_pid("vllm")
    return {reaper} | descendants(reaper)


def api_server(gpu: Box) -> int:
    """The API server: the reaper's one direct child."""
    reaper = gpu.reaper_pid("vllm")
    children = [pid for pid in descendants(reaper) if _ppid(pid) == reaper]
    assert len(children) == 1, children
    assert "vllm.entrypoints.openai.api_server" in cmdline(children[0])
    return children[0]


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def gone(pids: set[int], within_s: float = 30) -> None:
    await eventually(lambda: not alive(pids), within_s)


async def test_a_cold_vllm_starts_on_demand_and_answers(gpu: Box) -> None:
    assert_503(await gpu.chat(VLLM_MODEL), VLLM_MODEL)  # cold: the request starts it
    await gpu.until("vllm", "ready")
    tree = vllm_tree(gpu)
    # reaper, API server, engine core (and multiprocessing's resource tracker)
    assert len(tree) >= 3, [cmdline(pid) for pid in tree]
    answer = await gpu.chat(VLLM_MODEL)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == VLLM_MODEL
    assert answer.json()["choices"][0]["message"]["content"]
    structured = await gpu.chat(
        VLLM_MODEL,
        messages=[{"role": "user", "content": "A person as JSON: name and age."}],
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}},
    )
    assert structured.status_code == 200, structured.text
    jsonschema.validate(json.loads(structured.json()["choices"][0]["message"]["content"]), SCHEMA)


async def test_swap_to_llama_stops_every_vllm_process(gpu: Box) -> None:
    tree = vllm_tree(gpu)
    await asyncio.sleep(0.6)  # past the dwell
    assert_503(await gpu.chat(LLAMA_MODEL), "held by 'vllm'")
    await gpu.until("llama", "ready", within_s=120)
    assert await gpu.state("vllm") == "cold"
    assert not gpu.supervisor.engines["vllm"].running
    await gone(tree)
    answer = await gpu.chat(LLAMA_MODEL)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]


async def test_swap_back_to_vllm(gpu: Box) -> None:
    await asyncio.sleep(0.6)
    assert_503(await gpu.chat(VLLM_MODEL), "held by 'llama'")
    await gpu.until("vllm", "ready")
    assert await gpu.state("llama") == "cold"
    assert not gpu.supervisor.engines["llama"].running
    answer = await gpu.chat(VLLM_MODEL, stream=True)
    assert answer.status_code == 200, answer.text
    assert answer.text.rstrip().endswith("data: [DONE]")


async def test_a_hung_api_server_is_restarted_after_two_failed_probes(gpu: Box) -> None:
    tree = vllm_tree(gpu)
    os.kill(api_server(gpu), signal.SIGSTOP)  # alive but silent: only probes can tell
    await eventually(lambda: gpu.supervisor.status["vllm"].restarts == 1, 30)
    await gone(tree)  # stopped processes too (SIGKILL after the grace period)
    await gpu.until("vllm", "ready")
    assert not tree & vllm_tree(gpu)
    assert (await gpu.chat(VLLM_MODEL)).status_code == 200


async def test_a_killed_api_server_is_restarted_and_its_engine_core_goes_too(gpu: Box) -> None:
    tree = vllm_tree(gpu)
    os.kill(api_server(gpu), signal.SIGKILL)
    await eventually(lambda: gpu.supervisor.status["vllm"].restarts == 2, 30)
    await gone(tree)
    await gpu.until("vllm", "ready")
    assert (await gpu.chat(VLLM_MODEL)).status_code == 200


async def test_an_idle_vllm_is_stopped_with_all_its_processes(gpu: Box) -> None:
    tree = vllm_tree(gpu)
    assert await gpu.state("vllm") == "ready"
    await gpu.until("vllm", "cold", within_s=IDLE_TTL_S + 15)
    assert not gpu.supervisor.engines["vllm"].running
    await gone(tree)
