"""End to end: CPU-first answers while a GPU platform backend wakes, across two replicas.

Real processes on ephemeral ports: redis-server, the auth service, two gateway replicas,
cpu-llm running llama.cpp with the real SmolLM2 (the CPU tier), and — standing in for a GPU
service the platform scales to zero, which cannot run here — the fake engine started
`--scaled-to-zero`: down until its wake URL is called, then loading for a few seconds.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tiergate_auth.sink import MailSink
from tiergate_testkit.ports import free_port
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

SMALL = "tiergate-small"
PEPPER = "e2e-gpu-pepper-0123456789abcdefghijkl"


@dataclass
class Mesh:
    gateways: list[ServiceProcess]
    gpu_url: str
    gpu: subprocess.Popen[bytes]
    token: str

    def chat(self, replica: int, **extra: object) -> httpx.Response:
        body = {
            "model": "tiergate",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
            **extra,
        }
        return httpx.post(
            f"{self.gateways[replica].base_url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def gpu_stats(self) -> dict[str, object]:
        stats: dict[str, object] = httpx.get(f"{self.gpu_url}/_fake/stats", timeout=5).json()
        return stats


def sign_in(gateway: str, sink: MailSink) -> str:
    email = f"gpu-{uuid.uuid4().hex[:8]}@example.org"
    httpx.post(f"{gateway}/v1/auth/otp/start", json={"email": email}, timeout=10)
    code = sink.wait_for(email, 1, 10).code
    tokens = httpx.post(
        f"{gateway}/v1/auth/otp/verify", json={"email": email, "code": code}, timeout=10
    ).json()
    token: str = tokens["access_token"]
    return token


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    sink = MailSink().start()
    gpu_port = free_port()
    gpu = subprocess.Popen(
        [
            sys.executable, "-m", "tiergate_testkit.fake_engine", "--port", str(gpu_port),
            "--model", "engine-large", "--scaled-to-zero", "--load-time", "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    gpu_url = f"http://127.0.0.1:{gpu_port}"
    assert wait_until(lambda: _listening(gpu_port), 15)
    cpu_env = {
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__PARALLEL": "4",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
        "TIERGATE_CPU_LLM_ENGINE__MODEL_ID": "smollm2",
    }
    try:
        with RedisServer() as redis:
            auth_env = {
                "TIERGATE_AUTH_STORE__URL": redis.url,
                "TIERGATE_AUTH_PEPPER": PEPPER,
                "TIERGATE_AUTH_SMTP__PORT": str(sink.port),
                # The gateways relay /v1/auth/* from here (auth trusts no proxy by default).
                "TIERGATE_AUTH_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            }
            with (
                ServiceProcess("tiergate_auth", "TIERGATE_AUTH_", auth_env) as auth,
                ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", cpu_env) as cpu,
            ):
                env = {
                    "TIERGATE_GATEWAY_STORE__URL": redis.url,
                    "TIERGATE_GATEWAY_AUTH__URL": auth.base_url,
                    "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
                    "TIERGATE_GATEWAY_BACKENDS": json.dumps(
                        {
                            "cpu": {"base_url": f"{cpu.base_url}/v1", "kind": "llamacpp"},
                            "gpu": {
                                "base_url": f"{gpu_url}/v1",
                                "kind": "vllm",
                                "required_for_ready": False,
                                "connect_retries": 0,
                                "wake": {
                                    "url": f"{gpu_url}/_fake/wake",
                                    "probe_interval_s": 0.2,
                                },
                            },
                        }
                    ),
                    "TIERGATE_GATEWAY_MODELS": json.dumps(
                        [
                            {"id": SMALL, "backend": "cpu", "engine_model": "smollm2"},
                            {
                                "id": "tiergate-large",
                                "backend": "gpu",
                                "engine_model": "engine-large",
                                "vision": True,
                            },
                            {
                                "id": "tiergate",
                                "backend": "cpu",
                                "engine_model": "smollm2",
                                "routed": True,
                            },
                        ]
                    ),
                    "TIERGATE_GATEWAY_ROUTES": json.dumps(
                        [
                            {"tier": "anonymous", "models": [SMALL]},
                            {
                                "workload": "vision",
                                "models": ["tiergate-large"],
                                "when_cold": "hold",
                                "hold_s": 0.5,
                            },
                            {"models": ["tiergate-large", SMALL], "when_cold": "cpu_first"},
                        ]
                    ),
                    "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}, "user": {}}),
                    "TIERGATE_GATEWAY_RESILIENCE": json.dumps(
                        {"retries": 0, "breaker_threshold": 1, "breaker_cooldown_s": 60}
                    ),
                }  # fmt: skip
                with (
                    ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as first,
                    ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as second,
                ):
                    token = sign_in(first.base_url, sink)
                    yield Mesh([first, second], gpu_url, gpu, token)
    finally:
        gpu.kill()
        gpu.wait(10)
        sink.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_cold_gpu_cpu_first_one_wake_then_gpu_then_fallback(mesh: Mesh) -> None:
    # 20 signed-in requests at once, spread over both replicas, while the GPU is at zero.
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: mesh.chat(i % 2), range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.headers["x-tiergate-tier"] for a in answers} == {"user"}
    assert {a.headers["x-tiergate-backend"] for a in answers} == {"cpu"}
    assert {a.headers["x-tiergate-upgrade"] for a in answers} == {"waking"}
    assert all(a.json()["choices"][0]["message"]["content"] for a in answers)  # real SmolLM2

    # The GPU becomes ready (2 s of "loading"); both replicas see it and send requests there.
    for replica in (0, 1):
        deadline = time.monotonic() + 20
        while (response := mesh.chat(replica)).headers["x-tiergate-backend"] != "gpu":
            # A failed CPU answer here would open its breaker and change what follows.
            assert response.status_code == 200, response.text
            assert time.monotonic() < deadline, f"replica {replica} never used the GPU"
            time.sleep(0.2)
        assert "x-tiergate-upgrade" not in response.headers
        assert response.json()["model"] == "tiergate-large"
    assert mesh.gpu_stats()["wakes"] == 1  # exactly one wake for all of it

    # A stream whose GPU engine dies mid-way: an error event and [DONE], no fallback.
    broken = mesh.chat(0, stream=True, fake={"chunks": 6, "drop_after": 2, "tokens_per_s": 50})
    assert broken.headers["x-tiergate-backend"] == "gpu"
    events = [e for e in broken.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "upstream_stream_error"
    assert "x-tiergate-fallback-from" not in broken.headers

    # The GPU service dies: the next request falls back to the CPU before its first byte, the
    # backend counts as cold again (woken before it is trusted), later requests are CPU-first.
    mesh.gpu.kill()
    mesh.gpu.wait(10)
    first = mesh.chat(0)
    assert first.status_code == 200, first.text
    assert first.headers["x-tiergate-backend"] == "cpu"
    assert first.headers["x-tiergate-fallback-from"] == "gpu"
    later = mesh.chat(0)
    assert later.status_code == 200
    assert later.headers["x-tiergate-backend"] == "cpu"
    assert later.headers["x-tiergate-upgrade"] == "waking"
    metrics = httpx.get(f"{mesh.gateways[0].base_url}/metrics", timeout=5).text
    assert 'tiergate_gateway_upstream_errors_total{backend="gpu",kind="connect"} 1.0' in metrics
    assert 'tiergate_gateway_breaker_state{backend="gpu"} 1.0' in metrics  # open

    # A vision request has no text-only fallback: its rule holds 0.5 s for the wake, then 503.
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    held = mesh.chat(0, messages=image)
    assert held.status_code == 503
    assert int(held.headers["retry-after"]) >= 1
    assert held.headers["x-tiergate-workload"].startswith("vision")
    assert held.json()["error"]["code"] == "model_waking"
