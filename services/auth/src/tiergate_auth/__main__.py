"""`python -m tiergate_auth`: run the auth service until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from litestar import Litestar

from tiergate_auth.app import create_app
from tiergate_auth.records.db import SchemaMismatch, check_schema, create_engine, safe_url
from tiergate_auth.settings import AuthSettings, load
from tiergate_runtime.entry import run_service
from tiergate_state.store import redact_url


def _describe(settings: AuthSettings) -> dict[str, object]:
    url = settings.database.url
    return {
        "store": redact_url(settings.store.url),
        "smtp": f"{settings.smtp.host}:{settings.smtp.port}",
        "admin_api": settings.admin_token is not None,
        "database": safe_url(url) if url is not None else None,
    }


async def _check(settings: AuthSettings) -> None:
    engine = create_engine(settings.database)
    try:
        await check_schema(engine, str(settings.database.url), settings.database.upgrade_on_start)
    finally:
        await engine.dispose()


def _build(settings: AuthSettings) -> Litestar:
    """The schema check (or upgrade) before serving, so a mismatch exits 2 with one line;
    the app's lifespan checks again (in-process apps)."""
    if settings.database.url is not None:
        asyncio.run(_check(settings))
    return create_app(settings)


def main() -> int:
    """Load settings, check the records schema, build the app, serve; a bad setting or schema
    exits 2 with a message naming it."""
    return run_service("auth", load, _build, describe=_describe, startup_errors=(SchemaMismatch,))


if __name__ == "__main__":
    sys.exit(main())
