"""Shared by tests/deploy/test_compose*.py: deploy/compose's files interpolated from
.env.example the way Compose does it, merged per combination of files and profiles, and each
tiergate service's environment loaded with its real settings type and config file.

The tests import it as `from .compose_files import ...` (tests/deploy/conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tiergate_auth.settings import AuthSettings
from tiergate_auth.settings import validate as auth_validate
from tiergate_cpu_llm.settings import CpuLlmSettings
from tiergate_gateway.settings import GatewaySettings
from tiergate_gateway.settings import validate as gateway_validate
from tiergate_gpu_llm.settings import GpuLlmSettings
from tiergate_gpu_llm.settings import validate as gpu_validate
from tiergate_rag.settings import RagSettings
from tiergate_runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "compose"
FILES = {
    "base": "compose.yaml",
    "gpu": "compose.gpu.yaml",
    "observability": "compose.observability.yaml",
}
COMBOS: dict[str, tuple[list[str], set[str]]] = {  # name: (files, active profiles)
    "cpu": (["base"], set()),
    "dev": (["base"], {"dev"}),
    "gpu": (["base", "gpu"], {"gpu"}),
    "observability": (["base", "observability"], {"observability"}),
    "all": (["base", "gpu", "observability"], {"dev", "gpu", "observability"}),
}
# service (image name) -> (settings type, env prefix, config file, cross-field validation)
SETTINGS: dict[str, tuple[type[Any], str, str, Callable[[Any], Any]]] = {
    "gateway": (GatewaySettings, "TIERGATE_GATEWAY_", "gateway", gateway_validate),
    "auth": (AuthSettings, "TIERGATE_AUTH_", "auth", auth_validate),
    "rag": (RagSettings, "TIERGATE_RAG_", "rag", lambda s: s),
    "cpu-llm": (CpuLlmSettings, "TIERGATE_CPU_LLM_", "cpu-llm", lambda s: s),
    "gpu-llm-engines": (GpuLlmSettings, "TIERGATE_GPU_LLM_", "gpu-llm", gpu_validate),
}
NOT_SETTINGS = {"HF_HOME", "HF_TOKEN"}  # read by the engines, not by tiergate


class InterpolationError(ValueError):
    """A `${VAR}` Compose would refuse (`:?`), or one .env.example does not define."""


def interpolate(value: str, env: Mapping[str, str], seen: set[str] | None = None) -> str:
    """Compose-spec interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR[:]-default}`,
    `${VAR[:]?error}`, `${VAR[:]+alt}`, nested in defaults. Stricter than Compose in one way:
    an undefined variable is an error (Compose warns and uses ""), so every one is documented."""
    out, i = [], 0
    while i < len(value):
        if value[i] != "$":
            out.append(value[i])
            i += 1
        elif value[i + 1 : i + 2] == "$":
            out.append("$")
            i += 2
        elif value[i + 1 : i + 2] == "{":
            depth, j = 1, i + 2
            while j < len(value):
                if value.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= value[j] == "}"
                if not depth:
                    break
                j += 1
            if depth:
                raise InterpolationError(f"unclosed ${{ in {value!r}")
            out.append(_expand(value[i + 2 : j], env, seen))
            i = j + 1
        elif match := re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(value, i + 1):
            out.append(_expand(match.group(), env, seen))
            i = match.end()
        else:
            raise InterpolationError(f"invalid interpolation in {value!r}")
    return "".join(out)


def _expand(expr: str, env: Mapping[str, str], seen: set[str] | None) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expr, re.S)
    if match is None:
        raise InterpolationError(f"invalid interpolation ${{{expr}}}")
    name, op, arg = match.group(1), match.group(2), match.group(3) or ""
    if seen is not None:
        seen.add(name)
    is_set, value = name in env, env.get(name, "")
    present = bool(value) if op and op.startswith(":") else is_set
    if op in (":-", "-"):
        return value if present else interpolate(arg, env, seen)
    if op in (":+", "+"):
        return interpolate(arg, env, seen) if present else ""
    if op in (":?", "?"):
        if not present:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        return value
    if not is_set:
        raise InterpolationError(f"variable {name} is not defined in .env.example")
    return value


def interpolated(node: Any, env: Mapping[str, str], seen: set[str] | None = None) -> Any:
    """A parsed file with every string interpolated; `seen` collects the names referenced."""
    if isinstance(node, dict):
        return {key: interpolated(value, env, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolated(item, env, seen) for item in node]
    return interpolate(node, env, seen) if isinstance(node, str) else node


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (HERE / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def raw(file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((HERE / FILES[file]).read_text())
    return loaded


def required_secrets() -> set[str]:
    """Variables referenced as `${VAR:?... openssl rand ...}`: secrets Compose refuses without."""
    text = "".join((HERE / name).read_text() for name in FILES.values())
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?[^}]*openssl rand", text))


def filled_env() -> dict[str, str]:
    """.env.example with each blank secret given a value of the right shape (64 hex digits)."""
    env = env_example()
    return {k: ("ab" * 32 if k in required_secrets() and not v else v) for k, v in env.items()}


def merged(combo: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The combo's files interpolated and merged (overrides add services and environment keys
    only, as test_compose.py checks), reduced to the services its profiles enable."""
    files, profiles = COMBOS[combo]
    model: dict[str, Any] = {}
    for file in files:
        merge_into(model, interpolated(raw(file), filled_env() if env is None else env))
    model["services"] = {
        name: svc
        for name, svc in model["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }
    return model


def merge_into(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge maps key by key, replace anything else (lists included), in place."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_into(into[key], value)
        else:
            into[key] = value


def tiergate_services(model: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """service -> (image name, service) for our images (interpolated: ghcr.io/tiergate/NAME:TAG)."""
    found = {}
    for name, svc in model["services"].items():
        match = re.fullmatch(r"ghcr\.io/tiergate/([a-z-]+):[\w.-]+", svc.get("image", ""))
        if match:
            found[name] = (match.group(1), svc)
    return found


def service_settings(image: str, environment: Mapping[str, str]) -> Any:
    """The image's settings loaded from `environment` and its config file, then validated;
    every variable but NOT_SETTINGS must carry the service's prefix."""
    settings_type, prefix, config, check = SETTINGS[image]
    env = {k: str(v) for k, v in environment.items()}
    assert set(env) - NOT_SETTINGS <= {k for k in env if k.startswith(prefix)}, env
    loaded = load_settings(
        settings_type,
        env_prefix=prefix,
        environ=env,
        config_path=ROOT / "config" / f"{config}.toml",
    )
    return check(loaded)


def one_shot(svc: Mapping[str, Any]) -> bool:
    """A service that runs a command to completion (auth-migrate): never restarted."""
    return svc.get("restart") == "no"
