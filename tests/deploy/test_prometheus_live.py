"""A real Prometheus scrapes a running mesh: every series the rules and the dashboard use exists.

Real processes on ephemeral ports: redis-server, auth, rag (a one-document corpus), cpu-llm
(llama.cpp with the real SmolLM2 and the embedding engine), gpu-llm with one fake engine
standing in for vLLM (no GPU here), the gateway (CPU backend, and the GPU backend woken
through the supervisor, CPU-first meanwhile), and Debian's `prometheus` scraping all five
every second with both shipped rule files loaded unchanged. A little traffic makes the
event-only series exist: a grounded CPU-first stream, a stream from the woken GPU, an
upstream 500 (a 5xx and an upstream error), a shed request and a 429. Then every selector
of every rule and dashboard query must match series carrying the labels it matches or groups
by, every dashboard query must return data, and every rule must be loaded and healthy.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tiergate_testkit.gpu_box import fake_engine_table
from tiergate_testkit.ports import free_port
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

from . import observability_files as obs

pytestmark = pytest.mark.e2e

ADMIN = "live-prometheus-admin-token-0123456789"
PEPPER = "live-prometheus-pepper-0123456789abcdef"
DOC = """# Tiergate limits

## Anonymous tier

Anonymous visitors may send twenty requests per fifteen minutes, and each answer is capped at
three hundred tokens.
"""
QUESTION = "How many requests may anonymous visitors send?"
REQUESTS_PER_WINDOW = 6  # the anonymous tier's limit: the traffic below reaches it


@dataclass
class Mesh:
    gateway: ServiceProcess
    gpu_box: ServiceProcess
    targets: dict[str, str]  # job → host:port

    def chat(self, model: str, *, stream: bool = False, **extra: object) -> httpx.Response:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 8,
            "stream": stream,
            **extra,
        }
        url = f"{self.gateway.base_url}/v1/chat/completions"
        return httpx.post(url, json=body, timeout=60)


def gateway_env(redis: str, auth: str, rag: str, cpu: str, gpu: str) -> dict[str, str]:
    wake = {"kind": "supervisor", "url": gpu, "token": ADMIN, "probe_interval_s": 0.2}
    backends = {
        "cpu": {"base_url": f"{cpu}/v1", "kind": "llamacpp", "health_url": f"{cpu}/readyz"},
        # One slot, no queue: a second request while one streams is shed (503).
        "gpu": {"base_url": f"{gpu}/v1", "kind": "vllm", "wake": wake, "required_for_ready": False,
                "slots": 1, "max_queue": 0, "connect_retries": 0},
    }  # fmt: skip
    models = [
        {"id": "tiergate-small", "backend": "cpu", "engine_model": "smollm2"},
        {"id": "tiergate-large", "backend": "gpu", "engine_model": "qwen-14b"},
        {"id": "tiergate", "backend": "cpu", "engine_model": "smollm2", "routed": True},
    ]
    routes = [{"models": ["tiergate-large", "tiergate-small"], "when_cold": "cpu_first"}]
    window = {"limit": REQUESTS_PER_WINDOW, "window_s": 900}
    return {
        "TIERGATE_GATEWAY_STORE__URL": redis,
        "TIERGATE_GATEWAY_AUTH__URL": auth,
        "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
        "TIERGATE_GATEWAY_RAG__URL": rag,
        "TIERGATE_GATEWAY_RAG__TIMEOUT_S": "2",
        "TIERGATE_GATEWAY_BACKENDS": json.dumps(backends),
        "TIERGATE_GATEWAY_MODELS": json.dumps(models),
        "TIERGATE_GATEWAY_ROUTES": json.dumps(routes),
        "TIERGATE_GATEWAY_TIERS": json.dumps(
            {"anonymous": {"grounding": True, "requests": window}, "user": {}}
        ),
        "TIERGATE_GATEWAY_RESILIENCE": json.dumps({"retries": 0}),
    }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    work: Path = tmp_path_factory.mktemp("live")
    (work / "corpus").mkdir()
    (work / "corpus" / "limits.md").write_text(DOC)
    gpu_config = work / "gpu.toml"
    gpu_config.write_text(
        f"admin_token = '{ADMIN}'\n[policy]\nmin_dwell_s = 0.5\n"
        f"[engines.qwen]\n{fake_engine_table('qwen-14b', free_port())}"
    )
    with RedisServer() as redis, ExitStack() as stack:
        services = {
            "auth": ServiceProcess("tiergate_auth", "TIERGATE_AUTH_", {
                "TIERGATE_AUTH_STORE__URL": redis.url, "TIERGATE_AUTH_PEPPER": PEPPER,
                "TIERGATE_AUTH_SMTP__PORT": str(free_port()),
            }),
            "rag": ServiceProcess("tiergate_rag", "TIERGATE_RAG_", {
                "TIERGATE_RAG_INDEX_DIR": str(work / "index"),
                "TIERGATE_RAG_CORPUS": json.dumps([str(work / "corpus")]),
            }),
            "cpu-llm": ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", {
                "TIERGATE_CPU_LLM_ENGINE__THREADS": "1", "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
                "TIERGATE_CPU_LLM_ENGINE__MODEL_ID": "smollm2",
            }),
            "gpu-llm": ServiceProcess("tiergate_gpu_llm", "TIERGATE_GPU_LLM_", {
                "TIERGATE_GPU_LLM_CONFIG": str(gpu_config),
                "TIERGATE_GPU_LLM_STORE__URL": redis.url,
            }),
        }  # fmt: skip
        for service in services.values():  # all start at once; then each is waited for
            stack.callback(service.stop)
            service.start()
        urls = {job: service.base_url for job, service in services.items()}
        env = gateway_env(redis.url, urls["auth"], urls["rag"], urls["cpu-llm"], urls["gpu-llm"])
        services["gateway"] = ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env)
        stack.callback(services["gateway"].stop)
        services["gateway"].start()
        for service in services.values():
            service.wait_ready()
        targets = {job: f"127.0.0.1:{service.port}" for job, service in services.items()}
        yield Mesh(services["gateway"], services["gpu-llm"], targets)


@pytest.fixture(scope="module")
def prometheus(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work: Path = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(obs.RECORDING), str(obs.ALERTS)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in mesh.targets.items()
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (work / "output.log").open("wb") as log:
        server = subprocess.Popen(
            [
                "prometheus", f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _answers(f"{url}/-/ready"), 30), (work / "output.log").read_text()
        yield url
    finally:
        server.terminate()
        server.wait(15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _metric_line(mesh: Mesh, line: str) -> bool:
    return line in httpx.get(f"{mesh.gateway.base_url}/metrics", timeout=5).text


@pytest.fixture(scope="module")
def traffic(mesh: Mesh, prometheus: str) -> dict[str, httpx.Response]:
    """The requests that make the event-only series exist (Prometheus is already scraping)."""
    done = {"cpu_first": mesh.chat("tiergate", stream=True)}  # cold GPU: the CPU answers
    woken = 'tiergate_gateway_wakes_total{backend="gpu",outcome="ready"} 1.0'
    assert wait_until(lambda: _metric_line(mesh, woken), 30, 0.2), "the GPU never woke"
    done["gpu"] = mesh.chat("tiergate", stream=True)
    done["upstream_500"] = mesh.chat("tiergate-large", fake={"status": 500})
    with ThreadPoolExecutor(1) as pool:  # one stream holds the GPU's only slot ...
        slow = pool.submit(
            mesh.chat, "tiergate-large", stream=True, fake={"first_token_delay_s": 2}
        )
        holding = 'tiergate_gateway_backend_in_flight{backend="gpu"} 1.0'
        assert wait_until(lambda: _metric_line(mesh, holding), 10, 0.1), "no stream on the GPU"
        done["shed"] = mesh.chat("tiergate-large")  # ... so this one is shed
        done["slow"] = slow.result()
    for _ in range(REQUESTS_PER_WINDOW):
        done["limited"] = mesh.chat("tiergate-large")
        if done["limited"].status_code == 429:
            break
    return done


def test_the_traffic_took_the_paths_the_series_come_from(
    traffic: dict[str, httpx.Response],
) -> None:
    first, gpu = traffic["cpu_first"], traffic["gpu"]
    assert first.status_code == 200, first.text
    assert (first.headers["x-tiergate-backend"], first.headers["x-tiergate-upgrade"]) == (
        "cpu",
        "waking",
    )
    assert first.headers["x-tiergate-grounding"] == "grounded"
    assert gpu.status_code == 200, gpu.text
    assert gpu.headers["x-tiergate-backend"] == "gpu"
    assert traffic["upstream_500"].status_code >= 500, traffic["upstream_500"].text
    assert traffic["slow"].status_code == 200
    assert traffic["shed"].status_code == 503, traffic["shed"].text
    assert traffic["limited"].status_code == 429, traffic["limited"].text


def _get(prometheus: str, path: str, **params: str) -> Any:
    answer = httpx.get(f"{prometheus}{path}", params=params, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]


def _polled(check: Callable[[], list[str]], timeout_s: float = 20.0) -> list[str]:
    """The check's problems once it has none, or its last problems after `timeout_s`."""
    problems = check()
    deadline = time.monotonic() + timeout_s
    while problems and time.monotonic() < deadline:
        time.sleep(0.5)
        problems = check()
    return problems


def test_every_target_is_up(mesh: Mesh, prometheus: str) -> None:
    def check() -> list[str]:
        targets = _get(prometheus, "/api/v1/targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return [f"{job}: {health.get(job)}" for job in mesh.targets if health.get(job) != "up"]

    assert not _polled(check)


def test_every_rule_is_loaded_and_healthy(prometheus: str) -> None:
    shipped = {r.get("record") or r["alert"] for p in (obs.RECORDING, obs.ALERTS)
               for r in obs.rules(p)}  # fmt: skip

    def check() -> list[str]:
        groups = _get(prometheus, "/api/v1/rules")["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        problems = [f"{name}: not loaded" for name in shipped - set(loaded)]
        return problems + [
            f"{name}: {rule['health']} {rule.get('lastError', '')}"
            for name, rule in loaded.items()
            if rule["health"] != "ok"
        ]

    assert not _polled(check)


def _expressions() -> dict[str, str]:
    found: dict[str, str] = obs.expressions()
    return found


def test_every_selector_matches_series_with_the_labels_it_uses(
    traffic: dict[str, httpx.Response], prometheus: str
) -> None:
    needed: dict[str, tuple[Any, set[str], set[str]]] = {}  # selector → labels, users
    for where, expr in _expressions().items():
        for selector in obs.selectors(expr):
            entry = needed.setdefault(selector.promql(), (selector, set(), set()))
            entry[1].update(label for label, _, _ in selector.matchers)
            entry[2].add(where)
        for selector, label in obs.groupings(expr):
            needed.setdefault(selector.promql(), (selector, set(), set()))[1].add(label)

    def check() -> list[str]:
        problems = []
        for promql, (_, labels, users) in sorted(needed.items()):
            found = _get(prometheus, "/api/v1/series", **{"match[]": promql})
            present = {label for series in found for label in series}
            if not found:
                problems.append(f"no series {promql} (used by {sorted(users)[0]})")
            elif labels - present:
                problems.append(f"{promql}: no label {sorted(labels - present)} on its series")
        return problems

    problems = _polled(check)
    assert not problems, "\n".join(problems)


def test_every_dashboard_query_and_recording_rule_returns_data(
    traffic: dict[str, httpx.Response], prometheus: str
) -> None:
    queries = {f"record {name}": name for name in obs.recorded()}
    for panel in obs.panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in obs.GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries[f"panel {panel['title']!r} {target['refId']}"] = expr

    def check() -> list[str]:
        return [
            f"{where}: no data for {expr}"
            for where, expr in queries.items()
            if not _get(prometheus, "/api/v1/query", query=expr)["result"]
        ]

    problems = _polled(check)
    assert not problems, "\n".join(problems)
