"""`python -m tiergate_rag`: serve search over the configured corpus until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from tiergate_rag.app import create_app
from tiergate_rag.settings import load
from tiergate_runtime.logging import configure_logging
from tiergate_runtime.server import serve
from tiergate_runtime.settings import SettingsError


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    try:
        settings = load()
        configure_logging(settings.server.log_level, service="rag")
        app = create_app(settings)
    except SettingsError as exc:
        print(f"rag: {exc}", file=sys.stderr)
        return 2
    try:
        serve(app, settings.server)
    except OSError as exc:
        print(f"rag: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
