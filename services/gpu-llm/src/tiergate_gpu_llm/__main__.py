"""`python -m tiergate_gpu_llm`: supervise the box's GPU engines until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import structlog

from tiergate_gpu_llm.app import create_app
from tiergate_gpu_llm.settings import load
from tiergate_runtime.logging import configure_logging
from tiergate_runtime.server import serve
from tiergate_runtime.settings import SettingsError


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    try:
        settings = load()
        configure_logging(settings.server.log_level, service="gpu-llm")
        app = create_app(settings)
    except SettingsError as exc:
        print(f"gpu-llm: {exc}", file=sys.stderr)
        return 2
    structlog.get_logger("tiergate.gpu_llm").info(
        "starting",
        host=settings.server.host,
        port=settings.server.port,
        box=settings.box,
        engines={name: engine.models for name, engine in settings.engines.items()},
    )
    try:
        serve(app, settings.server)
    except OSError as exc:
        print(f"gpu-llm: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
