"""structlog setup: one JSON object per line on stderr, for our code and for the stdlib loggers.

Call `configure_logging(level)` once in a service's entry point (never at import time). The
stdlib loggers of the libraries we run on (uvicorn, httpx, litestar) are rendered through the
same JSON formatter so a log shipper sees one format. The database drivers' loggers stay at
warning even at debug: they would print statement parameters, which hold chat text. uvicorn's
own access log is off: the services write their own per-request line with the fields an
operator needs and no prompt text.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging"]

_NEVER_BELOW_WARNING = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _NamedPrintLogger(structlog.PrintLogger):
    """structlog's fast print logger, carrying the name passed to `structlog.get_logger(name)`."""

    def __init__(self, name: str) -> None:
        super().__init__(file=sys.stderr)
        self.name = name


def _logger_factory(*args: Any) -> _NamedPrintLogger:
    return _NamedPrintLogger(str(args[0]) if args else "tiergate")


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(level: str = "info", *, service: str | None = None) -> None:
    """Configure structlog and the stdlib root logger to emit JSON lines at `level`."""
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
    shared = _shared_processors()
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Library chatter stays at warning unless we are debugging.
    for name in ("httpx", "httpcore", "uvicorn.error", "litestar"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    logging.getLogger("uvicorn.access").disabled = True
    # Database drivers log each statement with its parameters at debug (a consented chat's
    # messages): never below warning, whatever the level. Prompts and answers go to the
    # database only, never to a log line (issue 15).
    for name in _NEVER_BELOW_WARNING:
        logging.getLogger(name).setLevel(logging.WARNING)
