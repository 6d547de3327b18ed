"""`PYTHONPATH=bench python -m tiergate_bench.engines_bench`: the gateway vs a real vLLM, direct.

Opt-in (needs `scripts/engines-setup.sh`: the engine venv and the converted SmolLM2). Real
processes on free ports: redis-server, gpu-llm supervising vLLM (CPU build, --enforce-eager),
and a gateway whose `tiergate-vllm` model is that engine behind gpu-llm. Streaming requests
rotate over vLLM's own port, gpu-llm's proxy and the gateway, one at a time; each asks for exactly
`--tokens` tokens (`ignore_eos`). Reported per path: time to first token and decode tokens per
second (tokens after the first / time from the first to the last). Target: the gateway's
tokens/s p50 at least 0.97 times vLLM's direct.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tiergate_testkit.ports import free_port
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
ADMIN = "bench-engines-admin-0123456789abcdefghij"
MODEL = "smollm2-vllm"
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}


def _model_dir() -> str:
    done = subprocess.run(  # noqa: PLW1510 - checked below
        [str(ROOT / "scripts" / "engines-setup.sh")], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"engines-setup.sh failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def _mesh() -> Iterator[dict[str, str]]:
    """gpu-llm with vLLM (woken and ready) and a gateway in front of it."""
    port = free_port()
    command = [
        str(ROOT / ".venv-engines" / "bin" / "python"), "-m",
        "vllm.entrypoints.openai.api_server", "--model", _model_dir(),
        "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--max-model-len", "2048", "--disable-log-stats",
    ]  # fmt: skip
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        config = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "gpu.toml"
        env_table = "".join(f"{k} = {json.dumps(v)}\n" for k, v in ENV.items())
        config.write_text(
            f"admin_token = '{ADMIN}'\n[policy]\nidle_ttl_s = 3600\n[engines.vllm]\n"
            f"command = {json.dumps(command)}\nport = {port}\nmodels = ['{MODEL}']\n"
            f"ready_timeout_s = 600\nstop_grace_s = 10\n[engines.vllm.env]\n{env_table}"
        )
        gpu = stack.enter_context(
            ServiceProcess(
                "tiergate_gpu_llm",
                "TIERGATE_GPU_LLM_",
                {"TIERGATE_GPU_LLM_CONFIG": str(config), "TIERGATE_GPU_LLM_STORE__URL": redis.url},
            )
        )
        woke = httpx.post(
            f"{gpu.base_url}/v1/engines/vllm/wake",
            headers={"authorization": f"Bearer {ADMIN}"},
            timeout=630,
        ).json()
        if woke["engines"]["vllm"]["state"] != "ready":
            raise SystemExit(f"vLLM did not start: {woke['engines']['vllm']['error']}")
        wake = {"kind": "supervisor", "url": gpu.base_url, "token": ADMIN, "probe_interval_s": 0.2}
        backends = {"gpu": {"base_url": f"{gpu.base_url}/v1", "kind": "vllm", "wake": wake}}
        models = [{"id": "tiergate-vllm", "backend": "gpu", "engine_model": MODEL}]
        env = {
            "TIERGATE_GATEWAY_STORE__URL": redis.url,
            "TIERGATE_GATEWAY_BACKENDS": json.dumps(backends),
            "TIERGATE_GATEWAY_MODELS": json.dumps(models),
            "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}}),
            "TIERGATE_GATEWAY_SERVER__LOG_LEVEL": "warning",
        }
        gateway = stack.enter_context(ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env))
        yield {
            "direct": f"http://127.0.0.1:{port}",
            "gpu-llm": gpu.base_url,
            "gateway": gateway.base_url,
        }


def _has_content(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line.removeprefix("data: ")).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


def _one(client: httpx.Client, base: str, model: str, tokens: int) -> dict[str, float]:
    """One streamed answer: TTFT (ms) and decode tokens/s."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story about the sea."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    stamps: list[float] = []
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if _has_content(line):
                stamps.append(time.perf_counter())  # noqa: PERF401 - the time of arrival
    if len(stamps) < 2:
        raise RuntimeError(f"{base}: {len(stamps)} content chunks")
    return {
        "ttft_ms": (stamps[0] - started) * 1000,
        "tokens_per_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
    }


def _until_served(client: httpx.Client, base: str, model: str) -> None:
    """Wait until the gateway has seen the engine ready (gpu-llm's state, through Redis)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    deadline = time.monotonic() + 60
    while (status := client.post(f"{base}/v1/chat/completions", json=body).status_code) != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway still answers {status} after 60 s")
        time.sleep(0.5)


def _summary(samples: list[dict[str, float]]) -> dict[str, float]:
    ttft = sorted(s["ttft_ms"] for s in samples)
    rate = sorted(s["tokens_per_s"] for s in samples)
    return {
        "ttft_p50_ms": statistics.median(ttft),
        "ttft_p90_ms": ttft[int(0.9 * (len(ttft) - 1))],
        "tokens_per_s_p50": statistics.median(rate),
    }


def run(requests: int, tokens: int) -> dict[str, Any]:
    """Interleave `requests` answers per path, after two warm-up answers each."""
    paths = ("direct", "gpu-llm", "gateway")
    samples: dict[str, list[dict[str, float]]] = {path: [] for path in paths}
    with _mesh() as urls, httpx.Client(timeout=300) as client:
        model = {"direct": MODEL, "gpu-llm": MODEL, "gateway": "tiergate-vllm"}
        _until_served(client, urls["gateway"], model["gateway"])
        for path in paths * 2:
            _one(client, urls[path], model[path], tokens)
        for i in range(len(paths) * requests):
            path = paths[i % len(paths)]
            samples[path].append(_one(client, urls[path], model[path], tokens))
    direct, gateway = _summary(samples["direct"]), _summary(samples["gateway"])
    return {
        "requests_per_path": requests,
        "tokens_per_answer": tokens,
        "direct": direct,
        "gpu-llm": _summary(samples["gpu-llm"]),
        "gateway": gateway,
        "tokens_per_s_ratio": gateway["tokens_per_s_p50"] / direct["tokens_per_s_p50"],
        "ttft_added_ms_p50": gateway["ttft_p50_ms"] - direct["ttft_p50_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run, print a table, write bench/results/engines-*.json and engines-latest.md."""
    parser = argparse.ArgumentParser(prog="python -m tiergate_bench.engines_bench")
    parser.add_argument("--requests", type=int, default=10, help="answers per path (10)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer (64)")
    args = parser.parse_args(argv)
    result = run(args.requests, args.tokens)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"engines-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    d, h, g = result["direct"], result["gpu-llm"], result["gateway"]
    verdict = "PASS" if result["tokens_per_s_ratio"] >= 0.97 else "MISS"
    text = "\n".join(
        [
            f"# Gateway vs vLLM direct (CPU build, SmolLM2 135M) — {stamp}",
            "",
            "| path | TTFT p50 ms | TTFT p90 ms | tokens/s p50 |",
            "|---|--:|--:|--:|",
            f"| vLLM direct | {d['ttft_p50_ms']:.1f} | {d['ttft_p90_ms']:.1f} | "
            f"{d['tokens_per_s_p50']:.1f} |",
            f"| gpu-llm → vLLM | {h['ttft_p50_ms']:.1f} | {h['ttft_p90_ms']:.1f} | "
            f"{h['tokens_per_s_p50']:.1f} |",
            f"| gateway → gpu-llm → vLLM | {g['ttft_p50_ms']:.1f} | {g['ttft_p90_ms']:.1f} | "
            f"{g['tokens_per_s_p50']:.1f} |",
            "",
            f"{verdict} tokens/s ratio >= 0.97: {result['tokens_per_s_ratio']:.3f} "
            f"({args.requests} interleaved answers per path, {args.tokens} tokens each)",
        ]
    )
    (RESULTS / "engines-latest.md").write_text(text + "\n")
    print(text)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
