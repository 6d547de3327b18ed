"""`run_service()`: what every service's `python -m` entry point does, written once.

Load the settings, configure logging, build the app, log `starting`, serve until SIGINT or
SIGTERM. A bad setting (or another startup error the service names) and a socket that cannot
be bound exit 2 with one line naming the service and the problem — never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import structlog

from tiergate_runtime.logging import configure_logging
from tiergate_runtime.server import ServerSettings, serve
from tiergate_runtime.settings import SettingsError

__all__ = ["run_service"]


class _HasServer(Protocol):
    @property
    def server(self) -> ServerSettings: ...


S = TypeVar("S", bound=_HasServer)


def run_service(
    service: str,
    load: Callable[[], S],
    build: Callable[[S], Any],
    *,
    describe: Callable[[S], Mapping[str, object]] = lambda _: {},
    startup_errors: tuple[type[Exception], ...] = (),
    serve_other: Callable[[S], int | None] = lambda _: None,
) -> int:
    """Run `service` (e.g. "cpu-llm"); returns the process exit status.

    `describe(settings)` adds fields to the `starting` log line; `startup_errors` are reported
    like bad settings; `serve_other(settings)` may serve the app its own way (the gateway's
    worker processes) and return the exit status, or return None to serve in this process.
    """
    reported: tuple[type[Exception], ...] = (SettingsError, *startup_errors)
    try:
        settings = load()
        configure_logging(settings.server.log_level, service=service)
        app = build(settings)
    except reported as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 2
    structlog.get_logger(f"tiergate.{service.replace('-', '_')}").info(
        "starting", host=settings.server.host, port=settings.server.port, **describe(settings)
    )
    status = serve_other(settings)
    if status is not None:
        return status
    try:
        serve(app, settings.server)
    except OSError as exc:  # cannot listen: port taken, address not local, ...
        print(f"{service}: {exc}", file=sys.stderr)
        return 2
    return 0
