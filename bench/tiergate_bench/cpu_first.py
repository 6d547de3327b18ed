"""`make bench ARGS="cpu-first"`: what CPU-first costs a signed-in user, and what a swap costs.

1. Time to first token of a signed-in streaming request while the GPU is cold — answered
   CPU-first by the real SmolLM2 — against the same request to the CPU model alone, the two
   interleaved request by request (target: at most 1.1 times).
2. A swap on a gpu-llm box of two stand-in GPU engines (fake engine processes with a fixed
   load time): how long from the wake to the new engine ready, and — with requests flowing
   through the gateway the whole time — that none is lost (every one gets an answer or a
   clean 503 with Retry-After, never a 5xx without it, a reset or a timeout).

Everything runs as real processes on free ports: redis-server, auth, cpu-llm (llama.cpp,
SmolLM2, 1 thread), gpu-llm, the gateway. The GPU engines are the fake engine (vLLM and SGLang
need a GPU).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tiergate_auth.sink import MailSink
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent.parent / "results"
PEPPER = "bench-cpu-first-pepper-0123456789abcdef"
ADMIN = "bench-cpu-first-admin-0123456789abcdefgh"
QUESTION = [{"role": "user", "content": "Name three colours."}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fake_engine(model: str, load_s: float, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tiergate_testkit.fake_engine", "--model", model,
        "--load-time", str(load_s), *extra,
    ]  # fmt: skip


def _ttft_ms(client: httpx.Client, url: str, token: str, model: str) -> tuple[float, str]:
    """ms to the first content chunk of a streamed answer; the backend that answered."""
    body = {"model": model, "messages": QUESTION, "max_tokens": 16, "stream": True, "seed": 1}
    started = time.perf_counter()
    headers = {"authorization": f"Bearer {token}"}
    with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        backend = response.headers["x-tiergate-backend"]
        first = None
        for line in response.iter_lines():
            if first is None and line.startswith("data: {") and '"content"' in line:
                first = (time.perf_counter() - started) * 1000
    if first is None:
        raise RuntimeError("no content chunk")
    return first, backend


@contextmanager
def _mesh(gpu_url: str, gpu_kind: str) -> Iterator[dict[str, Any]]:
    """redis, auth, cpu-llm and a gateway whose `tiergate` model routes GPU-first."""
    with ExitStack() as stack:
        sink = MailSink().start()
        stack.callback(sink.stop)
        redis = stack.enter_context(RedisServer())
        auth = stack.enter_context(
            ServiceProcess(
                "tiergate_auth",
                "TIERGATE_AUTH_",
                {
                    "TIERGATE_AUTH_STORE__URL": redis.url,
                    "TIERGATE_AUTH_PEPPER": PEPPER,
                    "TIERGATE_AUTH_SMTP__PORT": str(sink.port),
                    "TIERGATE_AUTH_SERVER__LOG_LEVEL": "warning",
                },
            )
        )
        cpu = stack.enter_context(
            ServiceProcess(
                "tiergate_cpu_llm",
                "TIERGATE_CPU_LLM_",
                {
                    "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
                    "TIERGATE_CPU_LLM_ENGINE__PARALLEL": "2",
                    "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
                    "TIERGATE_CPU_LLM_ENGINE__MODEL_ID": "smollm2",
                    "TIERGATE_CPU_LLM_SERVER__LOG_LEVEL": "warning",
                },
            )
        )
        wake: dict[str, Any] = {"kind": gpu_kind, "url": gpu_url, "probe_interval_s": 0.2}
        if gpu_kind == "supervisor":
            wake["token"] = ADMIN
        backends = {
            "cpu": {"base_url": f"{cpu.base_url}/v1", "kind": "llamacpp"},
            "gpu": {
                # platform: the engine itself (its wake URL is /_fake/wake); supervisor: gpu-llm
                "base_url": f"{gpu_url.rsplit('/_fake', 1)[0]}/v1",
                "kind": "vllm",
                "required_for_ready": False,
                "wake": wake,
            },
        }
        models = [
            {"id": "tiergate-small", "backend": "cpu", "engine_model": "smollm2"},
            {"id": "tiergate-large", "backend": "gpu", "engine_model": "engine-large"},
            {"id": "tiergate", "backend": "cpu", "engine_model": "smollm2", "routed": True},
        ]
        env = {
            "TIERGATE_GATEWAY_STORE__URL": redis.url,
            "TIERGATE_GATEWAY_AUTH__URL": auth.base_url,
            "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
            "TIERGATE_GATEWAY_BACKENDS": json.dumps(backends),
            "TIERGATE_GATEWAY_MODELS": json.dumps(models),
            "TIERGATE_GATEWAY_ROUTES": json.dumps(
                [{"models": ["tiergate-large", "tiergate-small"], "when_cold": "cpu_first"}]
            ),
            "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}, "user": {}}),
            "TIERGATE_GATEWAY_SERVER__LOG_LEVEL": "warning",
        }
        gateway = stack.enter_context(ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env))
        email = f"bench-{uuid.uuid4().hex[:8]}@example.org"
        httpx.post(f"{gateway.base_url}/v1/auth/otp/start", json={"email": email}, timeout=10)
        code = sink.wait_for(email, 1, 10).code
        tokens = httpx.post(
            f"{gateway.base_url}/v1/auth/otp/verify",
            json={"email": email, "code": code},
            timeout=10,
        ).json()
        yield {"gateway": gateway.base_url, "token": tokens["access_token"]}


def _ttft(requests: int) -> dict[str, Any]:
    gpu_port = _free_port()
    # Loading "forever": every routed request in this phase is answered CPU-first.
    gpu = subprocess.Popen(
        [*_fake_engine("engine-large", 3600, "--scaled-to-zero"), "--port", str(gpu_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with (
            _mesh(f"http://127.0.0.1:{gpu_port}/_fake/wake", "platform") as mesh,
            httpx.Client(timeout=60) as client,
        ):
            url = f"{mesh['gateway']}/v1/chat/completions"
            for _ in range(3):  # warm both paths
                _ttft_ms(client, url, mesh["token"], "tiergate-small")
                _ttft_ms(client, url, mesh["token"], "tiergate")
            alone, first = [], []
            for _ in range(requests):
                ms, backend = _ttft_ms(client, url, mesh["token"], "tiergate-small")
                alone.append(ms)
                ms, backend = _ttft_ms(client, url, mesh["token"], "tiergate")
                if backend != "cpu":
                    raise RuntimeError(f"expected a CPU-first answer, got {backend}")
                first.append(ms)
    finally:
        gpu.kill()
        gpu.wait(10)
    cpu_p50, first_p50 = statistics.median(alone), statistics.median(first)
    return {
        "requests_each": requests,
        "cpu_alone_ttft_ms": {"p50": cpu_p50, "p90": _p(alone, 0.9), "all": alone},
        "cpu_first_ttft_ms": {"p50": first_p50, "p90": _p(first, 0.9), "all": first},
        "ratio_p50": first_p50 / cpu_p50,
    }


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _swap(load_s: float) -> dict[str, Any]:
    """A gpu-llm box with two stand-in engines; the gateway routes GPU-first through it."""
    qwen_port, mistral_port = _free_port(), _free_port()
    config = Path(tempfile.mkdtemp(prefix="tg-bench-gpu-")) / "gpu.toml"
    qwen = [*_fake_engine("engine-large", load_s), "--port", str(qwen_port)]
    mistral = [*_fake_engine("engine-mistral", load_s), "--port", str(mistral_port)]
    config.write_text(
        f"admin_token = '{ADMIN}'\n"
        "[policy]\nmin_dwell_s = 0.5\n"
        "[engines.qwen]\n"
        f"command = {json.dumps(qwen)}\n"
        f"port = {qwen_port}\nmodels = ['engine-large']\nready_timeout_s = 120\n"
        "[engines.mistral]\n"
        f"command = {json.dumps(mistral)}\n"
        f"port = {mistral_port}\nmodels = ['engine-mistral']\nready_timeout_s = 120\n"
    )
    admin = {"authorization": f"Bearer {ADMIN}"}
    with ServiceProcess(
        "tiergate_gpu_llm", "TIERGATE_GPU_LLM_", {"TIERGATE_GPU_LLM_CONFIG": str(config)}
    ) as box:
        started = time.perf_counter()
        httpx.post(f"{box.base_url}/v1/engines/mistral/wake", headers=admin, timeout=120)
        cold_start_s = time.perf_counter() - started
        started = time.perf_counter()
        httpx.post(f"{box.base_url}/v1/engines/qwen/wake", headers=admin, timeout=120)
        swap_s = time.perf_counter() - started
        # Requests through the gateway while the box swaps back to mistral and then to qwen:
        # every one must be answered (CPU-first while qwen is not hot).
        with (
            _mesh(box.base_url, "supervisor") as mesh,
            httpx.Client(timeout=60) as client,
        ):
            url = f"{mesh['gateway']}/v1/chat/completions"
            headers = {"authorization": f"Bearer {mesh['token']}"}
            body = {"model": "tiergate", "messages": QUESTION, "max_tokens": 8}
            httpx.post(f"{box.base_url}/v1/engines/mistral/wake", headers=admin, timeout=120)
            outcomes: dict[str, int] = {}
            deadline = time.monotonic() + load_s * 2 + 20
            served_by_gpu = False
            while time.monotonic() < deadline and not served_by_gpu:
                try:
                    response = client.post(url, json=body, headers=headers)
                    key = f"{response.status_code} {response.headers.get('x-tiergate-backend')}"
                    served_by_gpu = response.headers.get("x-tiergate-backend") == "gpu"
                except httpx.HTTPError as exc:
                    key = f"error {type(exc).__name__}"
                outcomes[key] = outcomes.get(key, 0) + 1
    lost = sum(n for key, n in outcomes.items() if not key.startswith("200"))
    return {
        "engine_load_s": load_s,
        "cold_start_s": cold_start_s,
        "swap_s": swap_s,
        "requests_during_swap": outcomes,
        "lost": lost,
        "reached_gpu": served_by_gpu,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both parts; print and write the results."""
    parser = argparse.ArgumentParser(prog="make bench ARGS='cpu-first ...'")
    parser.add_argument("--requests", type=int, default=40, help="TTFT samples per path (40)")
    parser.add_argument("--load-time", type=float, default=5.0, help="stand-in load seconds (5)")
    args = parser.parse_args(argv)
    ttft = _ttft(args.requests)
    swap = _swap(args.load_time)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {"utc": stamp, "ttft": ttft, "swap": swap}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"cpu-first-{stamp}.json").write_text(json.dumps(document, indent=2) + "\n")
    a, b = ttft["cpu_alone_ttft_ms"], ttft["cpu_first_ttft_ms"]
    verdict = "PASS" if ttft["ratio_p50"] <= 1.1 else "MISS"
    lines = [
        f"# CPU-first — {stamp}",
        "",
        "| path | TTFT p50 ms | TTFT p90 ms |",
        "|---|--:|--:|",
        f"| CPU model alone (`tiergate-small`) | {a['p50']:.1f} | {a['p90']:.1f} |",
        f"| GPU cold, CPU-first (`tiergate`) | {b['p50']:.1f} | {b['p90']:.1f} |",
        "",
        f"{verdict} CPU-first TTFT p50 <= 1.1x CPU alone: {ttft['ratio_p50']:.3f}x "
        f"({args.requests} interleaved requests each, real SmolLM2, 1 thread)",
        "",
        f"Swap on gpu-llm with stand-in engines loading {swap['engine_load_s']:g} s: cold "
        f"start {swap['cold_start_s']:.2f} s, swap {swap['swap_s']:.2f} s. Requests through "
        f"the gateway during a swap: {swap['requests_during_swap']}; lost: {swap['lost']}; "
        f"reached the GPU: {swap['reached_gpu']}.",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "cpu-first-latest.md").write_text(text)
    print(text)
    return 0 if verdict == "PASS" and swap["lost"] == 0 and swap["reached_gpu"] else 1
