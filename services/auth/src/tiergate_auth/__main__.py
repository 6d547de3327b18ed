"""`python -m tiergate_auth`: run the auth service until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import structlog

from tiergate_auth.app import create_app
from tiergate_auth.settings import load
from tiergate_runtime.logging import configure_logging
from tiergate_runtime.server import serve
from tiergate_runtime.settings import SettingsError
from tiergate_state.store import redact_url


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    try:
        settings = load()
        configure_logging(settings.server.log_level, service="auth")
        app = create_app(settings)
    except SettingsError as exc:
        print(f"auth: {exc}", file=sys.stderr)
        return 2
    structlog.get_logger("tiergate.auth").info(
        "starting",
        host=settings.server.host,
        port=settings.server.port,
        store=redact_url(settings.store.url),
        smtp=f"{settings.smtp.host}:{settings.smtp.port}",
        admin_api=settings.admin_token is not None,
    )
    try:
        serve(app, settings.server)
    except OSError as exc:
        print(f"auth: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
