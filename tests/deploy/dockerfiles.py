"""Shared by tests/deploy/test_images_*.py: the service images' Dockerfiles read without a
Docker engine (dockerfile-parse) into stages, with ARGs and ENV substituted the way Docker
does, .dockerignore's rule, the workspace member each image is of, and the settings a
container would load (its baked config plus its ENV, with the service's own settings type).

The tests import it as `from .dockerfiles import ...` (how that works under importlib mode,
and why its asserts are rewritten: tests/deploy/conftest.py)."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

from tiergate_runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "deploy" / "images"
SERVICES = ("gateway", "auth", "rag", "cpu-llm", "gpu-llm")
SETTINGS_TYPES = {
    "gateway": "GatewaySettings",
    "auth": "AuthSettings",
    "rag": "RagSettings",
    "cpu-llm": "CpuLlmSettings",
    "gpu-llm": "GpuLlmSettings",
}
VARIANTS: list[tuple[str, dict[str, str]]] = [(svc, {}) for svc in SERVICES] + [
    ("cpu-llm", {"MODEL_SOURCE": "file", "MODEL_ID": "my-model"}),
]


# --- reading a Dockerfile into stages -----------------------------------------------------------


def _substitute(text: str, values: dict[str, str]) -> str:
    """Docker's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}`."""

    def one(match: re.Match[str]) -> str:
        name = match.group("name") or match.group("bare")
        value = values.get(name, "")
        if match.group("op") == ":-":
            return value or match.group("word")
        if match.group("op") == ":+":
            return match.group("word") if value else ""
        return value

    pattern = r"\$(?:\{(?P<name>\w+)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}|(?P<bare>\w+))"
    return re.sub(pattern, one, text)


def _pairs(value: str) -> list[tuple[str, str]]:
    out = []
    for token in shlex.split(value):
        name, _, default = token.partition("=")
        out.append((name, default))
    return out


class Stage:
    """One build stage: its base, instructions (ARGs and ENV substituted), ARGs and ENV."""

    def __init__(self, name: str, base: str, env: dict[str, str]) -> None:
        self.name, self.base, self.env = name, base, env
        self.args: dict[str, str] = {}
        self.instructions: list[tuple[str, str]] = []

    def all(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]

    def scope(self) -> dict[str, str]:
        return {**self.args, **self.env}  # ENV wins over an ARG of the same name


def stages(service: str, build_args: dict[str, str] | None = None) -> list[Stage]:
    """The Dockerfile's stages, each ARG at its default unless `build_args` sets it. As in
    Docker, a stage inherits its base stage's ENV, not its ARGs."""
    from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]  # no stubs

    with (IMAGES / f"{service}.Dockerfile").open("rb") as handle:
        parser = DockerfileParser(fileobj=handle)
        structure = parser.structure
    given = build_args or {}
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for item in structure:
        kind, value = item["instruction"], item["value"]
        current = found[-1] if found else None
        if kind == "ARG":
            scope = current.scope() if current else global_args
            for name, default in _pairs(value):
                resolved = given.get(name, _substitute(default, scope))
                (current.args if current else global_args)[name] = resolved
        elif kind == "FROM":
            words = _substitute(value, global_args).split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(found))
            parent = next((s for s in found if s.name == words[0]), None)
            found.append(Stage(name, words[0], dict(parent.env) if parent else {}))
        elif current is not None and kind != "COMMENT":
            if kind == "ENV":
                for name, raw in _pairs(value):
                    current.env[name] = _substitute(raw, current.scope())
            current.instructions.append((kind, _substitute(value, current.scope())))
    return found


def chain(found: list[Stage]) -> list[Stage]:
    """The final stage and the stages it is built on, base first."""
    by_name = {s.name: s for s in found}
    out = [found[-1]]
    while out[0].base in by_name:
        out.insert(0, by_name[out[0].base])
    return out


def final_values(found: list[Stage], instruction: str) -> list[str]:
    return [value for stage in chain(found) for value in stage.all(instruction)]


def final_env(found: list[Stage]) -> dict[str, str]:
    return dict(found[-1].env)


# --- helpers about the repository ---------------------------------------------------------------


def member(service: str) -> dict[str, Any]:
    with (ROOT / "services" / service / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def module_of(service: str) -> str:
    return str(member(service)["tool"]["uv"]["build-backend"]["module-name"])


def settings_module(service: str) -> Any:
    return importlib.import_module(f"{module_of(service)}.settings")


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = os.path.normpath(pattern.removeprefix("!")).lstrip("/")
        regex = ""
        for part in re.split(r"(\*\*/|/\*\*|\*\*|\*|\?)", pattern):
            regex += {"**/": "(.*/)?", "/**": "(/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def load_baked(service: str, build_args: dict[str, str] | None = None) -> Any:
    """The settings the container would load: its baked config plus its ENV."""
    found = stages(service, build_args)
    env = final_env(found)
    module = settings_module(service)
    prefix = module.ENV_PREFIX
    config = env[f"{prefix}CONFIG"]
    copied = {
        shlex.split(v)[-1]: shlex.split(v)[0]
        for v in final_values(found, "COPY")
        if "--from" not in v
    }
    assert config in copied, f"{prefix}CONFIG={config} is no file the image copies"
    assert copied[config] == f"config/{service}.toml"
    settings_type = getattr(module, SETTINGS_TYPES[service])
    return load_settings(
        settings_type, env_prefix=prefix, environ=env, config_path=ROOT / copied[config]
    )
