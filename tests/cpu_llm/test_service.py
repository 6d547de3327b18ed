"""cpu-llm as a real process with the real model: readiness, recovery, no orphan engines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

PREFIX = "TIERGATE_CPU_LLM_"
ENGINE_ENV = {
    f"{PREFIX}ENGINE__THREADS": "1",
    f"{PREFIX}ENGINE__PARALLEL": "2",
    f"{PREFIX}ENGINE__CTX_SIZE": "2048",
    f"{PREFIX}ENGINE__SEED": "42",
    f"{PREFIX}ENGINE__HEALTH_INTERVAL_S": "0.3",
    f"{PREFIX}ENGINE__UNHEALTHY_RESTARTS_AFTER": "3",
    f"{PREFIX}ENGINE__STOP_GRACE_S": "2",
    f"{PREFIX}ENGINE__RESTART_BACKOFF_S": "0.2",
}


def engine_pids(service: ServiceProcess, child: str = "llama-server") -> list[int]:
    """Pids of the engine children named `child` (the chat engine's by default; the embedding
    engine's is `llama-server-embedding`), in start order, from the service's structured log."""
    records = [
        json.loads(line) for line in service.output().splitlines() if '"child_started"' in line
    ]
    return [int(r["pid"]) for r in records if r["child"] == child]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    assert wait_until(predicate, timeout_s), f"timed out after {timeout_s} s waiting for {what}"


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess("tiergate_cpu_llm", PREFIX, ENGINE_ENV) as proc:
        yield proc


def test_health_models_and_chat_through_the_proxy(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        health = client.get("/healthz")
        assert health.content == b'{"status":"ok"}'
        assert client.get("/readyz").content == b'{"status":"ok"}'
        models = client.get("/v1/models").json()
        # The embedding model is listed too once its engine serves (tests/cpu_llm/
        # test_embeddings.py); /readyz waits for the chat engine alone.
        ids = [m["id"] for m in models["data"]]
        assert ids in (["smollm2-135m-instruct"], ["smollm2-135m-instruct", "all-minilm-l6-v2"])
        answer = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "seed": 1},
        )
        assert answer.status_code == 200
        assert answer.json()["usage"]["completion_tokens"] <= 4
        assert answer.headers["x-request-id"]
        metrics = client.get("/metrics").text
        assert "tiergate_cpu_llm_engine_ready 1.0" in metrics


def test_not_ready_until_engine_answers_then_recovers_from_hang_and_crash(
    service: ServiceProcess,
) -> None:
    [first] = engine_pids(service)
    with httpx.Client(base_url=service.base_url, timeout=5) as client:

        def ready() -> bool:
            return client.get("/readyz").status_code == 200

        def chat_refused() -> bool:
            try:
                answer = client.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
                    timeout=1,
                )
            except httpx.TimeoutException:
                return False  # still relayed: the hung engine does not answer
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"]
            return True

        # A hung engine: readiness is withdrawn at the first failed probe; from the second,
        # requests get a 503 envelope at once instead of hanging.
        os.kill(first, signal.SIGSTOP)
        wait_for(lambda: not ready(), 5, "readiness withdrawn from a hung engine")
        refused = client.get("/readyz")
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "not_ready"
        wait_for(chat_refused, 5, "requests refused by a hung engine's service")
        # ...and after repeated failures it is replaced by a new engine.
        wait_for(lambda: len(engine_pids(service)) == 2, 15, "hung engine restarted")
        wait_for(ready, 30, "ready after restart")
        wait_for(lambda: not alive(first), 5, "hung engine gone")

        # A crashed engine is restarted too.
        second = engine_pids(service)[1]
        os.kill(second, signal.SIGKILL)
        wait_for(lambda: len(engine_pids(service)) == 3, 15, "crashed engine restarted")
        wait_for(ready, 30, "ready after crash")
        chat = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
            timeout=30,
        )
        assert chat.status_code == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_service_stops_the_engines(sig: int) -> None:
    service = ServiceProcess("tiergate_cpu_llm", PREFIX, ENGINE_ENV)
    with service:
        [engine] = engine_pids(service)
        wait_for(lambda: len(engine_pids(service, "llama-server-embedding")) == 1, 30, "embedder")
        [embedder] = engine_pids(service, "llama-server-embedding")
        assert alive(engine)
        assert alive(embedder)
        service.signal(sig)
        assert service.proc is not None
        code = service.proc.wait(20)
        # The engines must not outlive the service, even when the service was SIGKILLed.
        wait_for(lambda: not alive(engine), 10, f"engine {engine} to exit")
        wait_for(lambda: not alive(embedder), 10, f"embedding engine {embedder} to exit")
    if sig == signal.SIGTERM:
        # Orderly: the lifespan stopped the engine. uvicorn then re-raises the signal it
        # caught, so the exit status is "terminated by SIGTERM", by design.
        assert code in (0, -signal.SIGTERM)
        assert '"child_stopped"' in service.output()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {f"{PREFIX}ENGINE__MODEL_PATH": "/nonexistent/model.gguf"},
            "model file not found: /nonexistent/model.gguf",
        ),
        ({f"{PREFIX}ENGINE__PARALLEL": "0"}, "invalid setting engine.parallel"),
        ({f"{PREFIX}ENGINE__THREDS": "2"}, "unknown field `threds`"),
    ],
)
def test_bad_startup_config_is_a_clear_error(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tiergate_cpu_llm"],
        env={**os.environ, f"{PREFIX}SERVER__PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_engine_exits_when_service_is_killed_mid_generation() -> None:
    service = ServiceProcess("tiergate_cpu_llm", PREFIX, ENGINE_ENV)
    with service, httpx.Client(base_url=service.base_url, timeout=120) as client:
        [engine] = engine_pids(service)
        body = {
            "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 3000,
            "ignore_eos": True,
            "stream": True,
        }
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if '"content":"' in line:
                    # Still reading the stream: the engine is generating for us right now.
                    busy = client.get("/slots").json()
                    assert any(slot["is_processing"] for slot in busy)
                    service.signal(signal.SIGKILL)
                    break
        wait_for(lambda: not alive(engine), 20, f"generating engine {engine} to exit")
