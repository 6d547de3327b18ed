"""The systems to measure, read from bench/systems.toml: one entry per variant, plus roles."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

__all__ = ["KINDS", "Kind", "Roles", "Variant", "load_variants"]

Kind = Literal["direct", "nginx", "tiergate", "litellm"]
Identity = Literal["anonymous", "api-key"]
KINDS: tuple[Kind, ...] = ("direct", "nginx", "tiergate", "litellm")
_VARIANT_KEYS = {
    "name",
    "kind",
    "cpus",
    "env",
    "args",
    "connections",
    "slow_streams",
    "enabled",
    "note",
    "identity",
}
_ROLE_KEYS = {"baseline", "reference", "gateway", "gateway_scaled", "gateway_identity"}


@dataclass(frozen=True)
class Variant:
    """One system as measured: what runs, on which CPUs, with which extra settings."""

    name: str
    kind: Kind
    cpus: str | None  # taskset list; None: not pinned
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    connections: tuple[int, ...] | None = None  # None: every connection count
    slow_streams: bool = False
    enabled: bool = True
    note: str = ""
    identity: Identity = "anonymous"
    """tiergate only: `anonymous` (limits off) or `api-key` (an agent key, limits in Redis)."""


@dataclass(frozen=True)
class Roles:
    """Which variants the derived figures and targets compare."""

    baseline: str = "direct"  # added latency is measured over this one
    reference: str = "litellm"  # CPU per request is compared with this one
    gateway: str = "tiergate"  # the targets are about this one
    gateway_scaled: str = "tiergate-w2"  # workers = 2: should roughly double throughput
    gateway_identity: str = "tiergate-key"  # with an API key and limits in Redis (issue 4)


def _fail(path: Path, where: str, message: str) -> ValueError:
    return ValueError(f"{path}: {where}: {message}")


def _identity(path: Path, where: str, value: Any) -> Identity:
    if value not in {"anonymous", "api-key"}:
        raise _fail(path, where, f"identity must be anonymous or api-key, got {value!r}")
    return cast(Identity, value)


def _variant(path: Path, index: int, raw: dict[str, Any]) -> Variant:
    where = f"system[{index}]"
    unknown = set(raw) - _VARIANT_KEYS
    if unknown:
        raise _fail(path, where, f"unknown keys {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(path, where, "needs a name")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(path, f"{where} ({name})", f"kind must be one of {KINDS}, got {kind!r}")
    cpus = raw.get("cpus", "1")
    env = raw.get("env", {})
    if not isinstance(env, dict):
        raise _fail(path, f"{where} ({name})", "env must be a table")
    connections = raw.get("connections")
    return Variant(
        name=name,
        kind=cast(Kind, kind),
        cpus=str(cpus) if cpus else None,
        env={str(key): str(value) for key, value in env.items()},
        args=tuple(str(arg) for arg in raw.get("args", ())),
        connections=tuple(int(c) for c in connections) if connections is not None else None,
        slow_streams=bool(raw.get("slow_streams", False)),
        identity=_identity(path, where, raw.get("identity", "anonymous")),
        enabled=bool(raw.get("enabled", True)),
        note=str(raw.get("note", "")),
    )


def load_variants(path: Path) -> tuple[list[Variant], Roles]:
    """All variants listed in `path` (enabled or not) and the roles; fail on anything unknown."""
    data = tomllib.loads(path.read_text())
    unknown = set(data) - {"system", "roles"}
    if unknown:
        raise _fail(path, "top level", f"unknown keys {sorted(unknown)}")
    variants = [_variant(path, index, raw) for index, raw in enumerate(data.get("system", []))]
    names = [variant.name for variant in variants]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise _fail(path, "system", f"duplicate names {sorted(duplicates)}")
    roles_raw = data.get("roles", {})
    if set(roles_raw) - _ROLE_KEYS:
        raise _fail(path, "roles", f"unknown keys {sorted(set(roles_raw) - _ROLE_KEYS)}")
    return variants, Roles(**{key: str(value) for key, value in roles_raw.items()})
