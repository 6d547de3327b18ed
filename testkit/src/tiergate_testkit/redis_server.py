"""A real `redis-server` on a free port, private to a test (no shared state, nothing on disk).

`RedisServer().start()` runs the Debian `redis-server` binary with persistence off on a port
it picks, waits for PING, and `stop()` kills it; `kill()` + `start()` on the same port is how
tests take Redis away mid-run and bring it back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "redis_answers", "redis_server_binary"]

from tiergate_testkit.ports import free_port


def redis_server_binary() -> str:
    """The path of `redis-server`; RuntimeError naming how to install it if missing."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if path is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    return path


def redis_answers(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; use as a context manager."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="tg-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start (or restart, on the same port) and wait until it answers PING."""
        argv = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--loglevel", "warning",
        ]  # fmt: skip
        log = (self._dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        log.close()
        deadline = time.monotonic() + timeout_s
        while not redis_answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = (self._dir / "redis.log").read_text(errors="replace")
                self.kill()
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{output}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """Kill it at once (SIGKILL): clients see connections refused from now on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        """Stop it and forget its data."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
