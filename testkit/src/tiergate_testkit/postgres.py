"""A real PostgreSQL for tests: the machine's server, or a private one started for the run.

`PostgresServer.connect()` uses `TIERGATE_TEST_POSTGRES` (default
`postgresql://postgres@127.0.0.1:5432/postgres`, trust auth). If that server does not answer,
it starts a private one (`initdb` + `pg_ctl` from /usr/lib/postgresql/*/bin) on a free port in
a temporary directory; if neither works, RuntimeError says why — tests never skip for want of
PostgreSQL. `create_database()` makes a uniquely named database and `drop_database()` drops it
`WITH (FORCE)` (which also ends its open connections: how tests take the database away
mid-run). Administration goes through `psql`, so this module needs no driver.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from tiergate_testkit.ports import free_port
from tiergate_testkit.waiting import wait_until

__all__ = ["DEFAULT_URL", "PostgresServer"]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)"
        )
    return candidates[0]


class PostgresServer:
    """A PostgreSQL server tests may create databases on."""

    def __init__(self, host: str, port: int, user: str = "postgres") -> None:
        self.host = host
        self.port = port
        self.user = user
        self._private: Path | None = None

    @classmethod
    def connect(cls) -> PostgresServer:
        """The configured server if it answers, else a private one; RuntimeError if neither."""
        url = urlsplit(os.environ.get("TIERGATE_TEST_POSTGRES", DEFAULT_URL))
        server = cls(url.hostname or "127.0.0.1", url.port or 5432, url.username or "postgres")
        if server.answers():
            return server
        try:
            return cls.start_private()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            raise RuntimeError(
                f"no PostgreSQL for the tests: {server.host}:{server.port} does not answer "
                f"(set TIERGATE_TEST_POSTGRES), and a private server did not start: {exc}"
            ) from exc

    @classmethod
    def start_private(cls) -> PostgresServer:
        """initdb + pg_ctl start in a temporary directory, on a free port (as `postgres` when
        run as root: PostgreSQL refuses to run as root)."""
        root = Path(tempfile.mkdtemp(prefix="tg-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        server = cls("127.0.0.1", free_port())
        server._private = root
        initdb = [_bin("initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "trust"]
        try:
            server._as_owner(initdb, check=True)
            server.resume()
        except BaseException:
            server.stop()
            raise
        return server

    def _as_owner(self, argv: list[str], *, check: bool) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(  # noqa: S603
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-500:]}")

    def _private_dir(self) -> Path:
        if self._private is None:
            raise RuntimeError("only a private server can be stopped and started")
        return self._private

    def pause(self) -> None:
        """Stop a private server at once (connections refused from now on), keeping its data."""
        root = self._private_dir()
        self._as_owner(
            [_bin("pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"], check=False
        )

    def resume(self) -> None:
        """Start a private server (again) on its port and wait until it answers."""
        root = self._private_dir()
        options = f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = [_bin("pg_ctl"), "-D", str(root / "data"), "-o", options]
        self._as_owner([*start, "-l", str(root / "log"), "-w", "start"], check=True)
        if not wait_until(self.answers, 30):
            raise RuntimeError(f"the private PostgreSQL on port {self.port} does not answer")

    def stop(self) -> None:
        """Stop a private server and remove its files (the machine's server is left alone)."""
        if self._private is None:
            return
        self.pause()
        shutil.rmtree(self._private, ignore_errors=True)
        self._private = None

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql`; its output (RuntimeError with psql's message on failure)."""
        argv = [
            _bin("psql"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
            "-v", "ON_ERROR_STOP=1", "-qAtc", sql,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def answers(self) -> bool:
        """Whether the server accepts a query."""
        try:
            return self.psql("SELECT 1").strip() == "1"
        except (RuntimeError, OSError, subprocess.SubprocessError):
            return False

    def create_database(self) -> str:
        """A new, empty, uniquely named database; its name."""
        name = f"tg_test_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop it, ending its connections."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        """The SQLAlchemy URL of `database` on this server."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"
