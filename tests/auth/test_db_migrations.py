"""The records schema on both backends: Alembic up and down, and the start-up refusal as a real
process (`python -m tiergate_auth`) until `tiergate db upgrade` (a real command) has run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from tiergate_auth.records.db import (
    SchemaMismatch,
    check_schema,
    create_engine,
    current_revision,
    head_revision,
    migrate,
)
from tiergate_auth.records.models import Base
from tiergate_auth.settings import DatabaseSettings
from tiergate_testkit.ports import free_port
from tiergate_testkit.waiting import wait_until

TABLES = {"chat_records", "feedback", "audit_records"}
BIN = Path(sys.executable).parent


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=db_url))
    try:
        assert await current_revision(engine) is None
        await migrate(engine, "upgrade", "head")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) >= TABLES
            indexes = await connection.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes("feedback")}
            )
        assert {"ix_feedback_model_created_at", "ix_feedback_flag_created_at"} <= indexes
        assert await current_revision(engine) == head_revision()
        await migrate(engine, "downgrade", "base")
        async with engine.connect() as connection:
            assert not TABLES & await connection.run_sync(_tables)
        assert await current_revision(engine) is None
        await migrate(engine, "upgrade", "head")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) >= TABLES
    finally:
        await engine.dispose()


async def test_check_refuses_empty_older_and_newer(db_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=db_url))
    try:
        with pytest.raises(SchemaMismatch, match="tiergate db upgrade"):
            await check_schema(engine, db_url, upgrade=False)
        await migrate(engine, "upgrade", "head")
        await check_schema(engine, db_url, upgrade=False)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
        with pytest.raises(SchemaMismatch, match="newer than this code"):
            await check_schema(engine, db_url, upgrade=True)
    finally:
        await engine.dispose()


async def test_upgrade_on_start_migrates(db_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=db_url))
    try:
        await check_schema(engine, db_url, upgrade=True)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def _config(tmp_path: Path, db_url: str, port: int) -> dict[str, str]:
    config = tmp_path / "auth.toml"
    config.write_text(f'[server]\nport = {port}\n\n[database]\nurl = "{db_url}"\n')
    return {**os.environ, "TIERGATE_AUTH_CONFIG": str(config)}


def test_the_service_refuses_then_starts_after_tiergate_db_upgrade(
    db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = _config(tmp_path, db_url, port)
    refused = _run([sys.executable, "-m", "tiergate_auth"], env)
    assert refused.returncode != 0
    assert "tiergate db upgrade" in refused.stderr
    assert "Traceback" not in refused.stderr
    upgrade = _run([str(BIN / "tiergate"), "db", "upgrade"], env)
    assert upgrade.returncode == 0, upgrade.stderr
    current = _run([str(BIN / "tiergate"), "db", "current"], env)
    assert head_revision() in current.stdout
    service = subprocess.Popen([sys.executable, "-m", "tiergate_auth"], env=env)
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return service.poll() is not None

        assert wait_until(healthy, 30)
        assert service.poll() is None
    finally:
        service.terminate()
        service.wait(timeout=30)
    # An older schema (downgraded to base) refuses again.
    down = _run([str(BIN / "tiergate"), "db", "downgrade", "base"], env)
    assert down.returncode == 0
    again = _run([sys.executable, "-m", "tiergate_auth"], env)
    assert again.returncode != 0
    assert "tiergate db upgrade" in again.stderr


def test_the_url_comes_from_a_secret_file_and_its_password_is_never_shown(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    url = "postgresql+asyncpg://tiergate:s3cr3t-pw@127.0.0.1:1/none"
    (secrets / "TIERGATE_AUTH_DATABASE__URL").write_text(url + "\n")
    env = {**os.environ, "TIERGATE_AUTH_SECRETS_DIR": str(secrets)}
    env.pop("TIERGATE_AUTH_CONFIG", None)
    done = _run([sys.executable, "-m", "tiergate_auth"], env)
    assert done.returncode != 0
    assert "tiergate:***@127.0.0.1:1/none" in done.stderr
    assert "s3cr3t-pw" not in done.stderr + done.stdout


async def test_the_migration_builds_exactly_the_models(db_url: str) -> None:
    """Alembic's autogenerate finds nothing to add or drop after `upgrade head`."""
    engine = create_engine(DatabaseSettings(url=db_url))
    try:
        await migrate(engine, "upgrade", "head")
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        assert diff == []
    finally:
        await engine.dispose()
