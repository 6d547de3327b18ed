"""`python -m tiergate_gateway`: run the gateway until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import structlog

from tiergate_gateway.app import create_app
from tiergate_gateway.settings import GatewaySettings, load
from tiergate_runtime.entry import run_service
from tiergate_runtime.workers import serve_workers


def _describe(settings: GatewaySettings) -> dict[str, object]:
    return {"models": [m.id for m in settings.models]}


def _workers(settings: GatewaySettings) -> int | None:
    """With `server.workers > 1`, supervised worker processes that build their own app."""
    if settings.server.workers <= 1:
        return None
    if settings.store.url is None:
        structlog.get_logger("tiergate.gateway").warning(
            "limits_per_worker",
            workers=settings.server.workers,
            note="no store.url (or REDIS_URL): each worker keeps its own limits, so a "
            "subject gets up to `workers` times its tier's limits; set a shared Redis",
        )
    return serve_workers("tiergate_gateway.app:from_environment", settings.server)


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    return run_service("gateway", load, create_app, describe=_describe, serve_other=_workers)


if __name__ == "__main__":
    sys.exit(main())
