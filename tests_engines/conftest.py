"""The engine tier (`make test-engines`): real vLLM and llama.cpp engines under gpu-llm.

Outside tests/ so that `make test` never collects it (pyproject's testpaths). The engine venv
and the converted model come from scripts/engines-setup.sh, which this runs (idempotent: a
second run only prints the model directory). Each test here starts real engine processes;
vLLM takes ~40 s per start on two cores, so the tests share starts where they can and get a
longer timeout than the workspace's 300 s."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiergate_testkit.waiting import wait_until

pytest.register_assert_rewrite("tests_engines.kit")

ROOT = Path(__file__).resolve().parent.parent

_TIMEOUT_S = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(_TIMEOUT_S))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """SmolLM2 as a Hugging Face directory (converted once from the workspace's GGUF)."""
    done = subprocess.run(  # noqa: S603 - our own setup script
        [str(ROOT / "scripts" / "engines-setup.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert done.returncode == 0, f"engines-setup.sh failed:\n{done.stderr[-4000:]}"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert (path / "config.json").is_file(), path
    return path


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_engines() -> Iterator[None]:
    """No process of the engine venv (vLLM's API server, engine core, workers) may outlive a
    test module: each stops what it started (torn down last: autouse, set up first)."""
    assert not _engine_processes(), f"vLLM already running: {_engine_processes()}"
    yield
    assert wait_until(lambda: not _engine_processes(), 20), (
        f"vLLM processes left behind: {_engine_processes()}"
    )


def _engine_processes() -> list[str]:
    own = Path("/proc/self").resolve().name
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == own:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # vLLM renames its children's command lines: VLLM::EngineCore, VLLM::Worker.
        if str(ROOT / ".venv-engines") in argv or argv.startswith("VLLM::"):
            lines.append(f"{entry.name}: {argv[:160]}")
    return lines
