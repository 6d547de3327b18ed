"""Shared by tests/deploy/test_k8s_*.py: deploy/k8s rendered with `kubectl kustomize` (once per
target and process), queries over the objects, and each container's settings loaded the way
its service loads them (config file from the mounted ConfigMap, environment with Secrets
replaced by placeholders of the right shape).

The tests import it as `from .k8s_manifests import ...` (how that works under importlib mode,
and why its asserts are rewritten: tests/deploy/conftest.py)."""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tiergate_auth import settings as auth_settings
from tiergate_cpu_llm.settings import CpuLlmSettings
from tiergate_gateway import settings as gateway_settings
from tiergate_gpu_llm import settings as gpu_settings
from tiergate_rag.settings import RagSettings
from tiergate_runtime.settings import load_settings

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ["base", "overlays/dev", "overlays/prod", "overlays/prod-gpu-box"]
OVERLAYS = TARGETS[1:]
SECRET = "tiergate-secrets"  # created by the operator (README), never rendered
SECRET_PLACEHOLDERS = {  # every key the manifests may read, with a value of the right shape
    "pepper": "p" * 40,
    "internal-token": "i" * 40,
    "admin-token": "a" * 40,
    "gpu-admin-token": "g" * 40,
    "redis-url": "redis://redis:6379/0",
    "smtp-username": "tiergate",
    "smtp-password": "secret",
    "auth-signing-key": "(PEM)",
    "hf-token": "hf_x",
    "database-url": "postgresql+asyncpg://tiergate:pw@postgres:5432/tiergate",
    "postgres-password": "pw",
}
EXTRA_ENV = {"gpu-llm": {"HF_HOME", "HF_TOKEN", "HOME"}}  # read by the engines, not settings


def _gateway(env: Mapping[str, str]) -> Any:
    return gateway_settings.load(env)


def _auth(env: Mapping[str, str]) -> Any:
    return auth_settings.load(env)


def _gpu(env: Mapping[str, str]) -> Any:
    return gpu_settings.load(env)


def _rag(env: Mapping[str, str]) -> Any:
    return load_settings(RagSettings, env_prefix="TIERGATE_RAG_", environ=env)


def _cpu(env: Mapping[str, str]) -> Any:
    return load_settings(CpuLlmSettings, env_prefix="TIERGATE_CPU_LLM_", environ=env)


LOADERS: dict[str, tuple[str, Callable[[Mapping[str, str]], Any]]] = {
    "gateway": ("TIERGATE_GATEWAY_", _gateway),
    "auth": ("TIERGATE_AUTH_", _auth),
    "rag": ("TIERGATE_RAG_", _rag),
    "cpu-llm": ("TIERGATE_CPU_LLM_", _cpu),
    "gpu-llm": ("TIERGATE_GPU_LLM_", _gpu),
}


# --- rendering and querying -------------------------------------------------------------


@functools.cache
def render(target: str) -> tuple[Obj, ...]:
    """`kubectl kustomize` of a target, as objects."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return tuple(obj for obj in yaml.safe_load_all(done.stdout) if obj)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [obj for obj in objs if obj["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [obj for obj in of_kind(objs, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(objs: tuple[Obj, ...]) -> list[Obj]:
    return [o for o in objs if o["kind"] in {"Deployment", "StatefulSet"}]


def containers(objs: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    """Every container of every workload, init containers first (auth's `migrate` reads
    settings too)."""
    for work in workloads(objs):
        pod = work["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            yield work, container


def subset(wanted: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in (wanted or {}).items())


# --- a container's environment and settings ---------------------------------------------


def env_of(objs: tuple[Obj, ...], container: Obj) -> dict[str, str]:
    """The container's environment, Secrets replaced by placeholders of the right shape."""
    maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objs, "ConfigMap")}
    env: dict[str, str] = {}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            assert ref["name"] == SECRET, f"{var['name']}: unknown Secret {ref['name']}"
            assert ref["key"] in SECRET_PLACEHOLDERS, f"{var['name']}: undocumented key"
            env[var["name"]] = SECRET_PLACEHOLDERS[ref["key"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["key"] in maps.get(ref["name"], {}), f"{var['name']}: no {ref}"
            env[var["name"]] = maps[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"{var['name']}: unexpected source {source}")
    assert not container.get("envFrom"), "envFrom hides which settings are set"
    return env


def service_of(container: Obj) -> str | None:
    """Which of our services' settings the container reads (None: a third-party image or a
    tool). The auth image's `tiergate` console script (`tiergate db upgrade`) reads auth's."""
    match = re.fullmatch(r"ghcr\.io/tiergate/([a-z-]+?)(-engines)?:.+", container["image"])
    if match is None:
        return None
    command = container.get("command")
    if command and not (match.group(1) == "auth" and command[0] == "tiergate"):
        return None
    return match.group(1)


def settings_of(
    objs: tuple[Obj, ...], work: Obj, container: Obj, tmp_path: Path
) -> tuple[str, Any]:
    """Load the container's settings the way the service does: its config file (from the
    ConfigMap mounted where `<PREFIX>CONFIG` points) and its environment."""
    service = service_of(container)
    assert service in LOADERS, container["image"]
    prefix, loader = LOADERS[service]
    env = env_of(objs, container)
    unknown = {n for n in env if not n.startswith(prefix)} - EXTRA_ENV.get(service, set())
    assert not unknown, f"{service}: variables no setting reads: {unknown}"
    config = env[f"{prefix}CONFIG"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == config)
    volumes = work["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    configmap = named(objs, "ConfigMap", volume["configMap"]["name"])
    assert mount["subPath"] == f"{service}.toml"
    path = tmp_path / f"{service}.toml"
    path.write_text(configmap["data"][mount["subPath"]])
    return service, loader({**env, f"{prefix}CONFIG": str(path)})
