"""Every `[server]` setting is documented in each shipped config that has a `[server]` table.

A setting the code reads and no config mentions is one nobody finds (CONVENTIONS: self-
description is executable). `workers` is documented only where a service supports it.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tiergate_runtime.server import ServerSettings

CONFIG = Path(__file__).resolve().parents[2] / "config"
SHIPPED = sorted(p for p in CONFIG.glob("*.toml") if "[server]" in p.read_text())
ONLY_WHERE_SUPPORTED = {"workers": {"gateway.toml"}}


def server_table(text: str) -> str:
    """The `[server]` table's lines, comments included, up to the next table."""
    lines = text.split("[server]\n", 1)[1].splitlines()
    return "\n".join(line for line in _until_next_table(lines))


def _until_next_table(lines: list[str]) -> list[str]:
    taken: list[str] = []
    for line in lines:
        if line.startswith("["):
            break
        taken.append(line)
    return taken


def test_every_service_ships_a_server_table() -> None:
    assert {p.name for p in SHIPPED} >= {
        "auth.toml",
        "cpu-llm.toml",
        "gateway.toml",
        "gpu-llm.toml",
        "rag.toml",
    }


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_server_settings_are_mentioned(config: Path) -> None:
    table = server_table(config.read_text())
    missing = [
        name
        for name in (f.name for f in msgspec.structs.fields(ServerSettings))
        if config.name in ONLY_WHERE_SUPPORTED.get(name, {config.name}) and name not in table
    ]
    assert not missing, f"{config.name} [server] does not mention {missing}"
