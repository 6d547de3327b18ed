"""`python -m tiergate_gateway`: run the gateway until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import structlog

from tiergate_gateway.app import create_app
from tiergate_gateway.settings import load
from tiergate_runtime.logging import configure_logging
from tiergate_runtime.server import serve
from tiergate_runtime.settings import SettingsError
from tiergate_runtime.workers import serve_workers


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    try:
        settings = load()
        configure_logging(settings.server.log_level, service="gateway")
        app = create_app(settings)
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    structlog.get_logger("tiergate.gateway").info(
        "starting",
        host=settings.server.host,
        port=settings.server.port,
        models=[m.id for m in settings.models],
    )
    if settings.server.workers > 1:
        if settings.store.url is None:
            structlog.get_logger("tiergate.gateway").warning(
                "limits_per_worker",
                workers=settings.server.workers,
                note="no store.url (or REDIS_URL): each worker keeps its own limits, so a "
                "subject gets up to `workers` times its tier's limits; set a shared Redis",
            )
        del app  # each worker builds its own
        return serve_workers("tiergate_gateway.app:from_environment", settings.server)
    try:
        serve(app, settings.server)
    except OSError as exc:  # cannot listen: port taken, address not local, ...
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
