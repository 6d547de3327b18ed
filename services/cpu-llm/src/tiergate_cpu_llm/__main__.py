"""`python -m tiergate_cpu_llm`: run the cpu-llm service until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import structlog

from tiergate_cpu_llm.app import create_app
from tiergate_cpu_llm.model import ModelFileError
from tiergate_cpu_llm.settings import load
from tiergate_runtime.logging import configure_logging
from tiergate_runtime.server import serve
from tiergate_runtime.settings import SettingsError


def main() -> int:
    """Load settings, build the app, serve; a bad setting or model file exits 2 with a message."""
    try:
        settings = load()
        configure_logging(settings.server.log_level, service="cpu-llm")
        app = create_app(settings)
    except (SettingsError, ModelFileError) as exc:
        print(f"cpu-llm: {exc}", file=sys.stderr)
        return 2
    structlog.get_logger("tiergate.cpu_llm").info(
        "starting", host=settings.server.host, port=settings.server.port
    )
    try:
        serve(app, settings.server)
    except OSError as exc:  # cannot listen: port taken, address not local, ...
        print(f"cpu-llm: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
