"""Through the gateway: a signed-in `json` request reaches the real vLLM behind gpu-llm.

Real processes on ephemeral ports: redis-server, auth, cpu-llm (llama.cpp with SmolLM2, the
CPU tier), gpu-llm supervising the real vLLM engine, and two gateway replicas. The first
answers come from the CPU while vLLM cold-starts (CPU-first, one wake for both replicas); once
gpu-llm reports vLLM ready, both replicas answer from it, with JSON valid against the
request's schema (vLLM's structured-output backend, even from a 135M model).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import pytest

from tiergate_auth.sink import MailSink
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess

from .kit import ADMIN, VLLM_MODEL, VLLM_START_S, vllm_engine

SMALL = "tiergate-small"
PEPPER = "engines-gw-pepper-0123456789abcdefghij"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


@dataclass
class Mesh:
    gateways: list[ServiceProcess]
    gpu: ServiceProcess
    token: str

    def ask_json(self, replica: int) -> httpx.Response:
        body = {
            "model": "tiergate",
            "messages": [{"role": "user", "content": "A city as JSON: city and population."}],
            "max_tokens": 60,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": SCHEMA, "strict": True},
            },
        }
        return httpx.post(
            f"{self.gateways[replica].base_url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {self.token}"},
            timeout=120,
        )


def sign_in(gateway: str, sink: MailSink) -> str:
    email = f"engines-{uuid.uuid4().hex[:8]}@example.org"
    httpx.post(f"{gateway}/v1/auth/otp/start", json={"email": email}, timeout=10)
    code = sink.wait_for(email, 1, 10).code
    tokens = httpx.post(
        f"{gateway}/v1/auth/otp/verify", json={"email": email, "code": code}, timeout=10
    ).json()
    token: str = tokens["access_token"]
    return token


def _gpu_config(path: Path, model_dir: Path, store: str) -> dict[str, str]:
    engine = vllm_engine(model_dir)
    env_table = "".join(f"{key} = {json.dumps(value)}\n" for key, value in engine.env.items())
    path.write_text(
        f"admin_token = '{ADMIN}'\n"
        "[policy]\nidle_ttl_s = 3600\n"
        "[engines.vllm]\n"
        f"command = {json.dumps(engine.command)}\n"
        f"port = {engine.port}\n"
        f"models = ['{VLLM_MODEL}']\n"
        f"ready_timeout_s = {engine.ready_timeout_s}\n"
        f"stop_grace_s = {engine.stop_grace_s}\n"
        f"[engines.vllm.env]\n{env_table}"
    )
    return {"TIERGATE_GPU_LLM_CONFIG": str(path), "TIERGATE_GPU_LLM_STORE__URL": store}


def _gateway_env(redis: str, auth: str, cpu: str, gpu: str) -> dict[str, str]:
    backends = {
        "cpu": {"base_url": f"{cpu}/v1", "kind": "llamacpp"},
        "gpu": {
            "base_url": f"{gpu}/v1",
            "kind": "vllm",
            "required_for_ready": False,
            "wake": {"kind": "supervisor", "url": gpu, "token": ADMIN, "probe_interval_s": 0.5},
        },
    }
    models = [
        {"id": SMALL, "backend": "cpu", "engine_model": "smollm2"},
        {"id": "tiergate-vllm", "backend": "gpu", "engine_model": VLLM_MODEL},
        {"id": "tiergate", "backend": "cpu", "engine_model": "smollm2", "routed": True},
    ]
    routes = [
        {"tier": "anonymous", "models": [SMALL]},
        {"workload": "json", "models": ["tiergate-vllm", SMALL], "when_cold": "cpu_first"},
        {"models": [SMALL]},
    ]
    return {
        "TIERGATE_GATEWAY_STORE__URL": redis,
        "TIERGATE_GATEWAY_AUTH__URL": auth,
        "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
        "TIERGATE_GATEWAY_BACKENDS": json.dumps(backends),
        "TIERGATE_GATEWAY_MODELS": json.dumps(models),
        "TIERGATE_GATEWAY_ROUTES": json.dumps(routes),
        "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}, "user": {}}),
    }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Mesh]:
    sink = MailSink().start()
    cpu_env = {
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__PARALLEL": "2",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
        "TIERGATE_CPU_LLM_ENGINE__MODEL_ID": "smollm2",
    }
    config = tmp_path_factory.mktemp("gpu") / "gpu.toml"
    try:
        with RedisServer() as redis:
            auth_env = {
                "TIERGATE_AUTH_STORE__URL": redis.url,
                "TIERGATE_AUTH_PEPPER": PEPPER,
                "TIERGATE_AUTH_SMTP__PORT": str(sink.port),
                "TIERGATE_AUTH_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            }
            gpu_env = _gpu_config(config, model_dir, redis.url)
            with (
                ServiceProcess("tiergate_auth", "TIERGATE_AUTH_", auth_env) as auth,
                ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", cpu_env) as cpu,
                ServiceProcess("tiergate_gpu_llm", "TIERGATE_GPU_LLM_", gpu_env) as gpu,
            ):
                env = _gateway_env(redis.url, auth.base_url, cpu.base_url, gpu.base_url)
                with (
                    ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as first,
                    ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as second,
                ):
                    yield Mesh([first, second], gpu, sign_in(first.base_url, sink))
    finally:
        sink.stop()


def test_json_goes_cpu_first_then_to_vllm_valid_against_its_schema(mesh: Mesh) -> None:
    first = mesh.ask_json(0)
    assert first.status_code == 200, first.text
    assert first.headers["x-tiergate-tier"] == "user"
    assert first.headers["x-tiergate-workload"].startswith("json")
    assert first.headers["x-tiergate-backend"] == "cpu"  # vLLM is cold-starting
    assert first.headers["x-tiergate-upgrade"] == "waking"
    for replica in (0, 1):
        deadline = time.monotonic() + VLLM_START_S
        while (answer := mesh.ask_json(replica)).headers["x-tiergate-backend"] != "gpu":
            assert answer.status_code == 200, answer.text
            assert time.monotonic() < deadline, f"replica {replica} never reached vLLM"
            time.sleep(1)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "tiergate-vllm"
        content = answer.json()["choices"][0]["message"]["content"]
        jsonschema.validate(json.loads(content), SCHEMA)
    status = httpx.get(f"{mesh.gpu.base_url}/status", timeout=5).json()
    assert status["hot"] == "vllm"
    assert status["engines"]["vllm"]["restarts"] == 0
