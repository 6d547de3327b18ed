"""CONVENTIONS: a setting the code reads and no shipped config mentions is one nobody finds."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import msgspec
import pytest

from tiergate_auth.settings import AuthSettings
from tiergate_cpu_llm.settings import CpuLlmSettings
from tiergate_gateway.settings import GatewaySettings
from tiergate_gpu_llm.settings import GpuLlmSettings
from tiergate_rag.settings import RagSettings

CONFIG = Path(__file__).resolve().parents[1] / "config"
SERVICES: dict[str, type[msgspec.Struct]] = {
    "gateway": GatewaySettings,
    "auth": AuthSettings,
    "rag": RagSettings,
    "cpu-llm": CpuLlmSettings,
    "gpu-llm": GpuLlmSettings,
}


def _structs_in(annotation: Any) -> Iterator[type[msgspec.Struct]]:
    """The msgspec Structs inside `annotation` (through Annotated, unions, lists, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        yield annotation
        return
    origin = get_origin(annotation)
    if origin is None:
        return
    args = get_args(annotation)
    if origin is Annotated:
        args = args[:1]
    elif origin not in (Union, types.UnionType) and not isinstance(origin, type):
        return
    for arg in args:
        yield from _structs_in(arg)


def field_names(struct: type[msgspec.Struct]) -> set[str]:
    """Every field name of `struct` and of the Structs nested in its fields, recursively."""
    names: set[str] = set()
    seen: set[type[msgspec.Struct]] = set()
    pending = [struct]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        hints = get_type_hints(current, include_extras=True)
        for field in msgspec.structs.fields(current):
            names.add(field.encode_name)
            names.add(field.name)
            pending.extend(_structs_in(hints.get(field.name, field.type)))
    return names


def test_the_walk_finds_nested_settings() -> None:
    names = field_names(GatewaySettings)
    # server (ServerSettings), backends.* (dict values), wake (optional), models (list items)
    assert {"workers", "base_url", "probe_interval_s", "engine_model", "limit"} <= names


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_setting_is_mentioned(service: str) -> None:
    text = (CONFIG / f"{service}.toml").read_text()
    missing = sorted(
        name
        for name in field_names(SERVICES[service])
        if not re.search(rf"\b{re.escape(name)}\b", text)
    )
    assert not missing, f"config/{service}.toml mentions none of: {', '.join(missing)}"
