"""`python -m tiergate_gpu_llm`: supervise the box's GPU engines until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from tiergate_gpu_llm.app import create_app
from tiergate_gpu_llm.settings import GpuLlmSettings, load
from tiergate_runtime.entry import run_service


def _describe(settings: GpuLlmSettings) -> dict[str, object]:
    return {
        "box": settings.box,
        "engines": {name: engine.models for name, engine in settings.engines.items()},
    }


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    return run_service("gpu-llm", load, create_app, describe=_describe)


if __name__ == "__main__":
    sys.exit(main())
