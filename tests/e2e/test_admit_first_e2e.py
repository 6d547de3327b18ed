"""End to end: a request refused with 429 wakes nothing and searches nothing (issue 11).

Real processes on ephemeral ports: one redis-server shared by two gateway replicas (so a
limit counts across both), the rag service over a one-file corpus, and the fake engine as
both backends — as the CPU model (no model is needed to see side effects) and, started
`--scaled-to-zero`, as a GPU service the platform keeps at zero until its wake URL is called.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from tiergate_testkit.ports import free_port
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

SMALL = "tiergate-small"


def fake_engine(stack: ExitStack, model: str, *flags: str) -> str:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "tiergate_testkit.fake_engine",
            "--port", str(port), "--model", model, *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stack.callback(process.wait, 10)
    stack.callback(process.kill)
    url = f"http://127.0.0.1:{port}"
    assert wait_until(lambda: _answers(f"{url}/_fake/stats"), 15)
    return url


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Mesh:
    gateways: list[str]
    cpu: str
    gpu: str
    rag: str

    def searches(self) -> float:
        metrics = httpx.get(f"{self.rag}/metrics", timeout=5).text
        pattern = (
            r'tiergate_rag_http_requests_total\{method="POST",route="/v1/search",[^}]*\} (\S+)'
        )
        return sum(float(value) for value in re.findall(pattern, metrics))

    def engine_calls(self, engine: str) -> int:
        listed = httpx.get(f"{engine}/_fake/requests", timeout=5).json()
        return len([r for r in listed if str(r["path"]).startswith("/v1/chat")])

    def wakes(self) -> int:
        return int(httpx.get(f"{self.gpu}/_fake/stats", timeout=5).json()["wakes"])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("admit-first")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "limits.md").write_text("# Limits\n\nAnonymous visitors get twenty requests.")
    with ExitStack() as stack:
        cpu = fake_engine(stack, "engine-small")
        gpu = fake_engine(stack, "engine-large", "--scaled-to-zero", "--load-time", "0.2")
        redis = stack.enter_context(RedisServer())
        rag_env = {
            "TIERGATE_RAG_INDEX_DIR": str(root / "index"),
            "TIERGATE_RAG_CORPUS": json.dumps([str(corpus)]),
        }
        rag = stack.enter_context(ServiceProcess("tiergate_rag", "TIERGATE_RAG_", rag_env))
        env = {
            "TIERGATE_GATEWAY_STORE__URL": redis.url,
            "TIERGATE_GATEWAY_AUTH__URL": "",
            "TIERGATE_GATEWAY_RAG__URL": rag.base_url,
            "TIERGATE_GATEWAY_RAG__TIMEOUT_S": "2",
            "TIERGATE_GATEWAY_BACKENDS": json.dumps(
                {
                    "cpu": {"base_url": f"{cpu}/v1", "kind": "vllm"},
                    "gpu": {
                        "base_url": f"{gpu}/v1",
                        "kind": "vllm",
                        "required_for_ready": False,
                        "wake": {"url": f"{gpu}/_fake/wake", "probe_interval_s": 0.1},
                    },
                }
            ),
            "TIERGATE_GATEWAY_MODELS": json.dumps(
                [
                    {"id": SMALL, "backend": "cpu", "engine_model": "engine-small"},
                    {"id": "tiergate-large", "backend": "gpu", "engine_model": "engine-large"},
                    {
                        "id": "tiergate", "backend": "cpu", "engine_model": "engine-small",
                        "routed": True,
                    },
                ]
            ),
            "TIERGATE_GATEWAY_ROUTES": json.dumps(
                [{"models": ["tiergate-large", SMALL], "when_cold": "cpu_first"}]
            ),
            "TIERGATE_GATEWAY_TIERS": json.dumps(
                {"anonymous": {"requests": {"limit": 1, "window_s": 900}, "grounding": True}}
            ),
        }  # fmt: skip
        first = stack.enter_context(ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env))
        second = stack.enter_context(ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env))
        yield Mesh([first.base_url, second.base_url], cpu, gpu, rag.base_url)


def chat(gateway: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "How many requests?"}]}
    return httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=30)


def test_refused_on_the_other_replica_before_any_side_effect(mesh: Mesh) -> None:
    answered = chat(mesh.gateways[0], SMALL)  # admitted: grounded, answered by the CPU
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-tiergate-grounding"] == "grounded"
    assert mesh.searches() == 1
    cpu_calls = mesh.engine_calls(mesh.cpu)
    # The same visitor on the other replica, for the routed model whose first choice is the
    # sleeping GPU: the shared limit refuses it before it wakes or searches anything.
    refused = chat(mesh.gateways[1], "tiergate")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "requests"
    time.sleep(0.5)  # a wake task, had one started, would have called the wake URL by now
    assert mesh.wakes() == 0
    assert mesh.searches() == 1
    assert mesh.engine_calls(mesh.cpu) == cpu_calls
    assert mesh.engine_calls(mesh.gpu) == 0
