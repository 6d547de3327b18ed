"""`tiergate db upgrade [REV] | downgrade REV | current`: Alembic on the service's database.

Exit status: 0 done, 1 the database failed or is unreachable, 2 no or bad settings.
"""

from __future__ import annotations

import asyncio
import sys

from alembic.util.exc import CommandError

from tiergate_auth.records.db import (
    DATABASE_ERRORS,
    create_engine,
    current_revision,
    head_revision,
    migrate,
    safe_url,
)
from tiergate_auth.settings import load
from tiergate_runtime.settings import SettingsError

__all__ = ["run_db"]


async def _run(action: str, revision: str | None) -> int:
    settings = load().database
    assert settings.url is not None
    engine = create_engine(settings)
    url = safe_url(settings.url)
    try:
        if action == "current":
            current = await current_revision(engine)
            print(f"{url}: {current or 'empty'} (code head: {head_revision()})")
            return 0
        await migrate(engine, action, revision or "head")
        print(f"{url}: {action} to {revision or 'head'}: now {await current_revision(engine)}")
        return 0
    finally:
        await engine.dispose()


def run_db(action: str, revision: str | None) -> int:
    """Run one `tiergate db` action; the exit status."""
    try:
        settings = load()
    except SettingsError as exc:
        print(f"tiergate: {exc}", file=sys.stderr)
        return 2
    if settings.database.url is None:
        print(
            "tiergate: no [database] url (TIERGATE_AUTH_CONFIG or TIERGATE_AUTH_DATABASE__URL)",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_run(action, revision))
    except CommandError as exc:
        print(f"tiergate: {exc}", file=sys.stderr)
        return 1
    except DATABASE_ERRORS as exc:
        print(
            f"tiergate: database {safe_url(settings.database.url)} failed: {type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
