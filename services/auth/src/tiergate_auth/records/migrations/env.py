"""Alembic's environment: migrations run on a connection the caller hands in.

`tiergate_auth.records.db.migrate` opens an async engine, and on one of its connections
(`run_sync`) calls Alembic with `config.attributes["connection"]` set: one code path for the
CLI (`tiergate db ...`) and `upgrade_on_start`. Run through the `alembic` command instead,
this builds its own async engine from `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from tiergate_auth.records.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_own_engine(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_own_engine(str(context.config.get_main_option("sqlalchemy.url"))))


_main()
