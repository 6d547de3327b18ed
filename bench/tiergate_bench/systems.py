"""The systems under test: how each kind starts, where it answers, and which processes it is."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tiergate_bench.fixtures import SSE_CHUNKS, chat_request
from tiergate_bench.identity import identity_env, start_identity_store
from tiergate_bench.options import BENCH_DIR
from tiergate_bench.procs import Child, ChildFailed, free_port, pinned, wait_until
from tiergate_bench.upstream import Floor, Upstream, start_floor
from tiergate_bench.variants import Variant

__all__ = ["Endpoint", "System", "start_system"]

REPO_DIR = BENCH_DIR.parent
GATEWAY_PYTHON = REPO_DIR / ".venv" / "bin" / "python"
LITELLM_BIN = BENCH_DIR / ".venv-litellm" / "bin" / "litellm"
MODELS = {"json": "bench-json", "sse": "bench-sse", "drip": "bench-drip"}
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Endpoint:
    """Where to send a chat request, and the model to name in it."""

    url: str
    model: str
    authorization: str = "Bearer anonymous"
    """Sent with every request (tiergate: `anonymous` is the keyless tier)."""


@dataclass
class System:
    """A started system: its variant, its root process, its endpoints."""

    variant: Variant
    root: Child
    endpoints: dict[str, Endpoint]  # "json", "sse", and "drip" where it can hold slow streams
    owns_root: bool = True  # direct's root is the shared upstream, stopped elsewhere
    helpers: list[Child] = field(default_factory=list)  # e.g. its redis-server

    @property
    def name(self) -> str:
        """The variant's name."""
        return self.variant.name

    def stop(self) -> None:
        """Stop the system's processes (not the shared upstream)."""
        if self.owns_root:
            self.root.stop()
        for helper in self.helpers:
            helper.stop()


def _base_env() -> dict[str, str]:
    """The harness's environment without any tiergate or LiteLLM settings of the caller's."""
    drop = ("TIERGATE_", "LITELLM_", "DATABASE_URL", "OTEL_")
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)}


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _check_answers(system: System) -> None:
    """One request per mode, checked for a whole answer; also the warm-up before idle RSS."""
    with httpx.Client(timeout=30.0) as client:
        for mode in ("json", "sse"):
            endpoint = system.endpoints[mode]
            body = chat_request(endpoint.model, stream=mode == "sse")
            headers = {"content-type": "application/json", "authorization": endpoint.authorization}
            response = client.post(endpoint.url, content=body, headers=headers)
            problem = None
            if response.status_code != 200:
                problem = f"status {response.status_code}: {response.text[:300]}"
            elif mode == "json" and not json.loads(response.content).get("choices"):
                problem = f"no choices in {response.text[:300]}"
            elif mode == "sse":
                events = [line for line in response.text.splitlines() if line.startswith("data: {")]
                if not response.text.rstrip().endswith("data: [DONE]") or len(events) < (
                    SSE_CHUNKS
                ):
                    problem = f"{len(events)} events, ends {response.text[-120:]!r}"
            if problem:
                raise ChildFailed(f"{system.name} answered {mode} badly: {problem}")


def _direct(variant: Variant, upstream: Upstream) -> System:
    endpoints = {
        "json": Endpoint(f"{upstream.base_url(upstream.json_port)}/chat/completions", "m"),
        "sse": Endpoint(f"{upstream.base_url(upstream.sse_port)}/chat/completions", "m"),
        "drip": Endpoint(f"{upstream.base_url(upstream.drip_port)}/chat/completions", "m"),
    }
    return System(variant, upstream.child, endpoints, owns_root=False)


def _nginx(variant: Variant, upstream: Upstream, workdir: Path) -> System:
    floor: Floor = start_floor(workdir, variant.cpus, upstream)
    endpoints = {
        "json": Endpoint(f"http://127.0.0.1:{floor.json_port}{CHAT_PATH}", "m"),
        "sse": Endpoint(f"http://127.0.0.1:{floor.sse_port}{CHAT_PATH}", "m"),
    }
    return System(variant, floor.child, endpoints)


def _tiergate(variant: Variant, upstream: Upstream, workdir: Path, max_streams: int) -> System:
    port_file = workdir / f"{variant.name}.port"
    backends = {
        "json": {"base_url": upstream.base_url(upstream.json_port), "kind": "openai"},
        "sse": {"base_url": upstream.base_url(upstream.sse_port), "kind": "openai"},
        # The slow streams need more than the default 1,000 upstream connections.
        "drip": {
            "base_url": upstream.base_url(upstream.drip_port),
            "kind": "openai",
            "max_connections": max(1000, 2 * max_streams),
        },
    }
    models = [{"id": model, "backend": kind, "engine_model": "m"} for kind, model in MODELS.items()]
    env = _base_env() | {
        "TIERGATE_GATEWAY_SERVER__HOST": "127.0.0.1",
        "TIERGATE_GATEWAY_SERVER__PORT": "0",
        "TIERGATE_GATEWAY_SERVER__PORT_FILE": str(port_file),
        "TIERGATE_GATEWAY_SERVER__LOG_LEVEL": "warning",
        "TIERGATE_GATEWAY_BACKENDS": json.dumps(backends),
        "TIERGATE_GATEWAY_MODELS": json.dumps(models),
        # The relay alone: anonymous with no limits and no auth service.
        "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}}),
        "TIERGATE_GATEWAY_AUTH__URL": "",
    }
    helpers: list[Child] = []
    authorization = "Bearer anonymous"
    if variant.identity == "api-key":
        redis, key = start_identity_store(variant.name, workdir)
        helpers.append(redis.child)
        authorization = f"Bearer {key}"
        env |= identity_env(redis.url)
    env |= variant.env
    argv = pinned(variant.cpus, [str(GATEWAY_PYTHON), "-m", "tiergate_gateway", *variant.args])
    child = Child(variant.name, argv, workdir / f"{variant.name}.log", env=env, cwd=workdir)

    def ready() -> bool:
        if not port_file.exists():
            return False
        port = int(port_file.read_text())
        return _get_ok(f"http://127.0.0.1:{port}/readyz")

    try:
        wait_until(ready, 60, "ready", child)
    except ChildFailed:
        for helper in helpers:
            helper.stop()
        raise
    base = f"http://127.0.0.1:{int(port_file.read_text())}{CHAT_PATH}"
    endpoints = {kind: Endpoint(base, model, authorization) for kind, model in MODELS.items()}
    return System(variant, child, endpoints, helpers=helpers)


def _litellm(variant: Variant, upstream: Upstream, workdir: Path) -> System:
    if not LITELLM_BIN.exists():
        raise ChildFailed(f"{LITELLM_BIN} is missing: run bench/setup.sh (make bench does)")
    config = (BENCH_DIR / "litellm" / "config.yaml.in").read_text()
    for name, port in (
        ("JSON", upstream.json_port),
        ("SSE", upstream.sse_port),
        ("DRIP", upstream.drip_port),
    ):
        config = config.replace(f"@{name}_BASE@", upstream.base_url(port))
    config_path = workdir / f"{variant.name}.yaml"
    config_path.write_text(config)
    port = free_port()
    env = _base_env() | {
        "LITELLM_LOG": "ERROR",  # no per-request logging; uvicorn's access log off with it
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map from GitHub
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
        "NO_COLOR": "1",
    }
    env |= variant.env
    argv = pinned(
        variant.cpus,
        [
            str(LITELLM_BIN),
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
            *variant.args,
        ],
    )
    child = Child(variant.name, argv, workdir / f"{variant.name}.log", env=env, cwd=workdir)
    wait_until(lambda: _get_ok(f"http://127.0.0.1:{port}/health/liveliness"), 180, "ready", child)
    base = f"http://127.0.0.1:{port}{CHAT_PATH}"
    endpoints = {kind: Endpoint(base, model) for kind, model in MODELS.items()}
    return System(variant, child, endpoints)


def start_system(variant: Variant, upstream: Upstream, workdir: Path, max_streams: int) -> System:
    """Start `variant`, wait until it answers both modes correctly; ChildFailed if not."""
    if variant.kind == "direct":
        system = _direct(variant, upstream)
    elif variant.kind == "nginx":
        system = _nginx(variant, upstream, workdir)
    elif variant.kind == "tiergate":
        system = _tiergate(variant, upstream, workdir, max_streams)
    else:
        system = _litellm(variant, upstream, workdir)
    try:
        _check_answers(system)
    except Exception:
        system.stop()
        raise
    return system
