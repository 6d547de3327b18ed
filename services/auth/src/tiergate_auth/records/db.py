"""The records database: an async engine from `[database]`, sessions, the schema check, migrations.

The code's schema is the Alembic head of `migrations/`. At start the database's revision must
be that head: an empty or older database refuses to start (naming `tiergate db upgrade`)
unless `upgrade_on_start`; a newer one (a revision this code does not know) always refuses.
Unreachable, slow or failing databases surface as `RecordsUnavailable` (503 + Retry-After).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from tiergate_auth.settings import DatabaseSettings
from tiergate_runtime.errors import ServiceUnavailable

__all__ = [
    "Database",
    "RecordsUnavailable",
    "SchemaMismatch",
    "alembic_config",
    "create_engine",
    "current_revision",
    "head_revision",
    "migrate",
    "safe_url",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x7469657267617465  # "tiergate": one migrating replica at a time on PostgreSQL
DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, OSError, TimeoutError)
"""What a failing database raises through SQLAlchemy and its drivers (connect: OSError)."""


class RecordsUnavailable(ServiceUnavailable):
    """503: the records database is unreachable, slow or failing; try again shortly."""

    default_code = "records_unavailable"

    def __init__(self) -> None:
        super().__init__("The records database is unreachable; try again shortly.", retry_after=2)


class SchemaMismatch(Exception):
    """The database's schema is not the code's; the message says what to run."""


def safe_url(url: str) -> str:
    """`url` with its password masked, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """The engine for `settings.url` (a SQLite file's parent directory is created)."""
    assert settings.url is not None
    url = make_url(settings.url)
    connect_args: dict[str, Any]
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": settings.statement_timeout_s}
    else:
        connect_args = {
            "timeout": settings.connect_timeout_s,
            "command_timeout": settings.statement_timeout_s,
        }
    pool: dict[str, Any] = {
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout_s,
    }
    if url.get_backend_name() == "sqlite" and url.database in {None, "", ":memory:"}:
        pool = {}  # one in-memory database per connection: SQLAlchemy uses a static pool
    # hide_parameters: a driver error's text would carry the statement's parameters (a
    # consented chat's messages) into whatever logs or renders it.
    engine = create_async_engine(
        url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args, **pool
    )
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    """WAL: readers do not wait for the writer (the busy timeout covers writers)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config(url: str | None = None) -> Config:
    """Alembic's Config, programmatic: the packaged scripts, no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The code's schema revision."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision (None: never migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def _migrate(connection: Connection, action: str, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


async def migrate(engine: AsyncEngine, action: str, revision: str) -> None:
    """`upgrade` or `downgrade` to `revision` in one transaction (PostgreSQL: under a lock)."""
    async with engine.begin() as connection:
        await connection.run_sync(_migrate, action, revision)


async def check_schema(engine: AsyncEngine, url: str, upgrade: bool) -> None:
    """Raise SchemaMismatch unless the database is at the code's head (or, with `upgrade`, can
    be brought there)."""
    head = head_revision()
    try:
        current = await current_revision(engine)
    except DATABASE_ERRORS as exc:
        raise SchemaMismatch(
            f"cannot reach the records database {safe_url(url)}: {_reason(exc)}"
        ) from None
    if current == head:
        return
    known = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if current is not None and current not in known:
        raise SchemaMismatch(
            f"the records database {safe_url(url)} is at revision {current}, newer than this "
            f"code (head {head}): run a newer tiergate-auth, or `tiergate db downgrade {head}` "
            "with the newer code"
        )
    if upgrade:
        await migrate(engine, "upgrade", "head")
        return
    shown = current or "empty"
    raise SchemaMismatch(
        f"the records database {safe_url(url)} is at revision {shown}, older than this code "
        f"(head {head}): run `tiergate db upgrade` (or set database.upgrade_on_start = true)"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return type(exc.orig).__name__
    return type(exc).__name__


class Database:
    """The engine and its sessions; `session()` turns database failures into a 503."""

    def __init__(self, settings: DatabaseSettings) -> None:
        assert settings.url is not None
        self.settings = settings
        self.url = settings.url
        self.engine = create_engine(settings)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed at the end; a failing database → 503."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except DATABASE_ERRORS:
            raise RecordsUnavailable() from None

    async def check(self) -> None:
        """The start-up schema check (or upgrade, with `upgrade_on_start`)."""
        await check_schema(self.engine, self.url, self.settings.upgrade_on_start)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
