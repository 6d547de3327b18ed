"""gpu-llm config for tests: an `[engines.<name>]` table whose engine is the fake one
(`python -m tiergate_testkit.fake_engine`), standing in for vLLM or SGLang (no GPU here)."""

from __future__ import annotations

import json
import sys

__all__ = ["fake_engine_table"]


def fake_engine_table(model: str, port: int, *, load_time: float = 1) -> str:
    """The body of an engine table (TOML) serving `model` on `port` after `load_time` s."""
    command = [
        sys.executable, "-m", "tiergate_testkit.fake_engine", "--model", model,
        "--port", str(port), "--load-time", str(load_time),
    ]  # fmt: skip
    return (
        f"command = {json.dumps(command)}\nport = {port}\nmodels = ['{model}']\n"
        "ready_timeout_s = 30\nstop_grace_s = 3\n"
    )
