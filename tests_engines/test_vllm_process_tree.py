"""vLLM's process tree under gpu-llm: nothing survives a SIGKILLed supervisor, and sleep mode.

gpu-llm runs as a real process here (`python -m tiergate_gpu_llm`), so that it can be killed
with SIGKILL: its engine reaper gets the parent-death signal and takes the whole engine group
down (API server, engine core, worker, resource tracker). Sleep mode is refused by vLLM on the
CPU in this build (`Sleep mode is not supported on current platform.`): the GPU box uses it
(`sleep = "vllm"` plus `--enable-sleep-mode`), this tier can only stop and start. The test
below pins that down, so that a build that accepts it shows up as a failure to act on.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx

from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

from .kit import ADMIN, VLLM_MODEL, alive, box, cmdline, descendants, running, vllm_engine


def _toml_table(name: str, value: dict[str, str]) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {json.dumps(v)}\n" for key, v in value.items())


def test_a_killed_supervisor_leaves_no_vllm_process(tmp_path: Path, model_dir: Path) -> None:
    engine = vllm_engine(model_dir)
    config = tmp_path / "gpu.toml"
    config.write_text(
        f"admin_token = '{ADMIN}'\n"
        "[engines.vllm]\n"
        f"command = {json.dumps(engine.command)}\n"
        f"port = {engine.port}\n"
        f"models = ['{VLLM_MODEL}']\n"
        f"ready_timeout_s = {engine.ready_timeout_s}\n"
        f"stop_grace_s = {engine.stop_grace_s}\n" + _toml_table("engines.vllm.env", engine.env)
    )
    env = {"TIERGATE_GPU_LLM_CONFIG": str(config)}
    with ServiceProcess("tiergate_gpu_llm", "TIERGATE_GPU_LLM_", env) as service:
        assert service.proc is not None
        woke = httpx.post(
            f"{service.base_url}/v1/engines/vllm/wake",
            headers={"authorization": f"Bearer {ADMIN}"},
            timeout=engine.ready_timeout_s + 30,
        )
        assert woke.json()["engines"]["vllm"]["state"] == "ready", woke.text
        tree = descendants(service.proc.pid)
        titles = [cmdline(pid) for pid in tree]
        assert any("vllm.entrypoints.openai.api_server" in t for t in titles), titles
        assert any(t.startswith("VLLM::EngineCore") for t in titles), titles
        # One process group, led by the reaper: what lets one killpg take every one of them.
        reapers = [pid for pid in tree if "tiergate_gpu_llm.reaper" in cmdline(pid)]
        assert len(reapers) == 1, titles
        assert {os.getpgid(pid) for pid in descendants(reapers[0])} == {reapers[0]}
        service.proc.send_signal(signal.SIGKILL)  # no chance to stop anything itself
        service.proc.wait(10)
    assert wait_until(lambda: not alive(tree), 30), [cmdline(p) for p in alive(tree)]
    try:
        httpx.get(f"{engine.base_url}/health", timeout=1)
    except httpx.HTTPError:
        pass
    else:
        raise AssertionError("vLLM still answers after its supervisor was killed")


async def test_vllm_sleep_mode_is_refused_on_the_cpu(model_dir: Path) -> None:
    settings = box({"vllm": vllm_engine(model_dir, sleep=True)})
    async with running(settings) as gpu:
        await gpu.client.post("/v1/engines/vllm/wake", headers={"authorization": f"Bearer {ADMIN}"})
        status = (await gpu.client.get("/status")).json()["engines"]["vllm"]
        assert status["state"] == "failed", status
        assert "Sleep mode is not supported on current platform" in status["error"], status
        assert not gpu.supervisor.engines["vllm"].running
