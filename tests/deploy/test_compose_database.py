"""deploy/compose: auth's records database. PostgreSQL is pinned, health-checked over TCP,
unpublished, non-root on a read-only root with its data on a named volume; its password comes
from .env only; auth-migrate (`tiergate db upgrade`) completes before auth starts, with the
same URL; auth never migrates itself. The migration step runs for real, with the environment
compose gives it, against a real PostgreSQL database.

Each check is a function returning its problems, so that a broken variant is shown to fail it.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tiergate_testkit.postgres import PostgresServer

from .compose_files import (
    COMBOS,
    HERE,
    ROOT,
    env_example,
    merged,
    required_secrets,
    service_settings,
    tiergate_services,
)

MIGRATE = ["tiergate", "db", "upgrade"]
DATA = "/var/lib/postgresql/data"


def postgres_problems(model: dict[str, Any]) -> list[str]:
    """Why the postgres service is not what auth's records need (empty: it is)."""
    svc = model["services"].get("postgres")
    if svc is None:
        return ["no postgres service"]
    problems = []
    image = svc.get("image", "")
    if not (image.startswith("postgres@sha256:") and len(image.split(":")[-1]) == 64):
        problems.append(f"postgres image not pinned by digest: {image}")
    if "ports" in svc:
        problems.append("postgres publishes a port")
    if set(svc.get("networks", [])) != {"internal"}:
        problems.append(f"postgres networks {svc.get('networks')}: internal only")
    test = svc.get("healthcheck", {}).get("test", [])
    if "pg_isready" not in test or "127.0.0.1" not in test:
        problems.append(f"healthcheck is not pg_isready over TCP: {test}")
    volumes = svc.get("volumes", [])
    named = [v.split(":")[0] for v in volumes if v.split(":")[1:2] == [DATA]]
    if not named or named[0] not in model.get("volumes", {}):
        problems.append(f"{DATA} is not on a named volume: {volumes}")
    if svc.get("read_only") is not True:
        problems.append("postgres root is writable")
    if not {"/tmp", "/var/run/postgresql"} <= set(svc.get("tmpfs", [])):
        problems.append(f"tmpfs {svc.get('tmpfs')}: /tmp and /var/run/postgresql needed")
    if str(svc.get("user", "")).split(":")[0] in {"", "0", "root"}:
        problems.append("postgres starts as root")
    if svc.get("cap_drop") != ["ALL"]:
        problems.append("capabilities not dropped")
    if svc.get("restart") != "unless-stopped":
        problems.append("postgres is not restarted")
    return problems


def migrate_problems(model: dict[str, Any]) -> list[str]:
    """Why auth-migrate does not gate auth on an upgraded schema (empty: it does)."""
    services = model["services"]
    migrate, auth = services.get("auth-migrate"), services["auth"]
    if migrate is None:
        return ["no auth-migrate service"]
    problems = []
    if tiergate_services(model).get("auth-migrate", ("",))[0] != "auth":
        problems.append(f"auth-migrate runs {migrate.get('image')}, not the auth image")
    if migrate.get("command") != MIGRATE:
        problems.append(f"auth-migrate runs {migrate.get('command')}")
    if migrate.get("restart") != "no":
        problems.append("auth-migrate is restarted: a one-shot must exit")
    if migrate.get("depends_on", {}).get("postgres") != {"condition": "service_healthy"}:
        problems.append("auth-migrate does not wait for a healthy postgres")
    wanted = {"condition": "service_completed_successfully"}
    if auth.get("depends_on", {}).get("auth-migrate") != wanted:
        problems.append("auth does not wait for auth-migrate to complete")
    key = "TIERGATE_AUTH_DATABASE__URL"
    if migrate.get("environment", {}).get(key) != auth["environment"].get(key):
        problems.append("auth-migrate and auth use different databases")
    if "ports" in migrate:
        problems.append("auth-migrate publishes a port")
    return problems


def mutated(combo: str, path: list[str], value: Any) -> dict[str, Any]:
    model = copy.deepcopy(merged(combo))
    node = model
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return model


@pytest.mark.parametrize("combo", COMBOS)
def test_postgres_and_the_migration_in_every_combination(combo: str) -> None:
    model = merged(combo)
    assert postgres_problems(model) == []
    assert migrate_problems(model) == []


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (["services", "postgres", "image"], "postgres:17", "not pinned"),
        (["services", "postgres", "ports"], ["5432:5432"], "publishes"),
        (["services", "postgres", "networks"], ["internal", "egress"], "internal only"),
        (["services", "postgres", "healthcheck", "test"], ["CMD", "pg_isready"], "over TCP"),
        (["services", "postgres", "volumes"], ["/srv/pg:/var/lib/postgresql/data"], "named"),
        (["services", "postgres", "tmpfs"], ["/tmp"], "/var/run/postgresql"),
        (["services", "postgres", "user"], None, "as root"),
        (["services", "postgres", "read_only"], None, "writable"),
        (["services", "postgres", "cap_drop"], None, "capabilities"),
    ],
)
def test_a_weaker_postgres_fails(path: list[str], value: Any, problem: str) -> None:
    problems = postgres_problems(mutated("cpu", path, value))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (["services", "auth-migrate", "command"], ["tiergate", "db", "current"], "runs"),
        (["services", "auth", "depends_on", "auth-migrate"], None, "does not wait"),
        (
            ["services", "auth", "depends_on", "auth-migrate"],
            {"condition": "service_started"},
            "does not wait",
        ),
        (["services", "auth-migrate", "depends_on"], None, "healthy postgres"),
        (["services", "auth-migrate", "restart"], "unless-stopped", "one-shot"),
        (
            ["services", "auth-migrate", "environment", "TIERGATE_AUTH_DATABASE__URL"],
            "postgresql+asyncpg://tiergate:x@elsewhere:5432/tiergate",
            "different databases",
        ),
    ],
)
def test_a_broken_migration_order_fails(path: list[str], value: Any, problem: str) -> None:
    problems = migrate_problems(mutated("cpu", path, value))
    assert any(problem in p for p in problems), problems


def test_the_password_comes_from_env_only() -> None:
    """POSTGRES_PASSWORD is a required, blank secret; the file holds no literal password, and
    auth's URL carries exactly the password, user and database postgres was created with."""
    assert "POSTGRES_PASSWORD" in required_secrets()
    assert env_example()["POSTGRES_PASSWORD"] == ""
    text = (HERE / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD_FILE" not in text
    for line in text.splitlines():
        if "POSTGRES_PASSWORD:" in line or "postgresql+asyncpg://" in line:
            assert "${POSTGRES_PASSWORD:?" in line, line
    services = merged("cpu")["services"]
    env = services["postgres"]["environment"]
    for service in ("auth", "auth-migrate"):
        url = make_url(services[service]["environment"]["TIERGATE_AUTH_DATABASE__URL"])
        assert url.drivername == "postgresql+asyncpg"
        assert (url.host, url.port) == ("postgres", 5432)
        assert url.username == env["POSTGRES_USER"]
        assert url.password == env["POSTGRES_PASSWORD"] == "ab" * 32
        assert url.database == env["POSTGRES_DB"]


def test_auth_checks_the_schema_and_never_migrates_itself() -> None:
    """Loaded with auth's real settings: auth's records are in postgres and it does not
    upgrade at start (config/auth.toml does, for make run); auth-migrate reads the same URL."""
    services = tiergate_services(merged("cpu"))
    auth = service_settings("auth", services["auth"][1]["environment"]).database
    migrate = service_settings("auth", services["auth-migrate"][1]["environment"]).database
    assert auth.url is not None
    assert auth.url.startswith("postgresql+asyncpg://")
    assert auth.upgrade_on_start is False
    assert migrate.url == auth.url


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[PostgresServer, str]]:
    server = PostgresServer.connect()
    name = server.create_database()
    yield server, name
    server.drop_database(name)
    server.stop()


def test_the_migration_step_runs_as_compose_gives_it(database: tuple[PostgresServer, str]) -> None:
    """auth-migrate's command with its environment (only the URL's host and credentials
    changed to a real test database) and the image's config file: the schema reaches head."""
    server, name = database
    svc = merged("cpu")["services"]["auth-migrate"]
    env = {k: str(v) for k, v in svc["environment"].items()}
    env["TIERGATE_AUTH_DATABASE__URL"] = server.url(name)
    env["TIERGATE_AUTH_CONFIG"] = str(ROOT / "config" / "auth.toml")  # the image's ENV
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
    command = svc["command"]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    current = subprocess.run(
        [*command[:2], "current"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert current.returncode == 0, current.stderr
    shown = re.search(r": (\S+) \(code head: (\S+)\)$", current.stdout.strip())
    assert shown is not None, current.stdout
    assert shown.group(1) == shown.group(2), current.stdout


def test_readme_documents_the_database() -> None:
    readme = (HERE / "README.md").read_text()
    section = readme.split("## Database", 1)[1].split("\n## ", 1)[0]
    facts = ("pg_dump", "auth-migrate", "tiergate db upgrade", "TIERGATE_AUTH_DATABASE__URL")
    for fact in (*facts, "POSTGRES_PASSWORD", "7 days"):
        assert fact in section, fact
    assert "postgres:17." in (HERE / "compose.yaml").read_text(), "the pinned version, as a comment"
