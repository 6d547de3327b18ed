"""Running our services as real processes on ephemeral ports, for end-to-end tests.

`ServiceProcess` starts `python -m <module>` with settings from the environment, the listen
port 0 and a port file, waits until `/readyz` (or another path) answers 200, and stops the
process (SIGTERM, then SIGKILL) at the end. Output goes to a log file that is printed when a
service fails to come up, so a red test says why; `running()` lists the live ones so a
failing test's report can carry their output too (see `tests/conftest.py`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["ServiceProcess", "ServiceStartError", "running_since"]

_STARTED: list[ServiceProcess] = []  # every one started, for failure reports
_KEEP = 64


def running_since(moment: float) -> list[ServiceProcess]:
    """Services running at any time since `moment` (time.monotonic()), oldest first."""
    return [s for s in _STARTED if s.stopped_at is None or s.stopped_at >= moment]


class ServiceStartError(RuntimeError):
    """The service exited or did not become ready; the message includes its output."""


class ServiceProcess:
    """One service process; use as a context manager."""

    def __init__(
        self,
        module: str,
        env_prefix: str,
        env: Mapping[str, str] | None = None,
        *,
        ready_path: str = "/readyz",
        ready_timeout_s: float = 90.0,
    ) -> None:
        self.module = module
        self.env_prefix = env_prefix
        self.extra_env = dict(env or {})
        self.ready_path = ready_path
        self.ready_timeout_s = ready_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix=f"tg-{module}-"))
        self.port_file = self._dir / "port"
        self.log_path = self._dir / "output.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.stopped_at: float | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT of the running service."""
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the service printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> ServiceProcess:
        """Start the process; returns once it listens (not necessarily ready)."""
        env = {
            **os.environ,
            f"{self.env_prefix}SERVER__PORT": "0",
            f"{self.env_prefix}SERVER__PORT_FILE": str(self.port_file),
            **self.extra_env,
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own module, our own interpreter
                [sys.executable, "-m", self.module],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise ServiceStartError(self._failure(f"exited with {self.proc.returncode}"))
            if time.monotonic() > deadline:
                raise ServiceStartError(self._failure("did not listen within 30 s"))
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        _STARTED.append(self)
        del _STARTED[:-_KEEP]
        return self

    def wait_ready(self) -> ServiceProcess:
        """Block until `ready_path` answers 200."""
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServiceStartError(self._failure(f"exited with {self.proc.returncode}"))
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.ready_path).status_code == 200:
                        return self
                time.sleep(0.05)
        raise ServiceStartError(self._failure(f"not ready after {self.ready_timeout_s} s"))

    def _failure(self, what: str) -> str:
        return f"{self.module} {what}; output:\n{self.output()[-6000:]}"

    def signal(self, sig: int) -> None:
        """Send `sig` to the service process itself (not its group)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL of the whole group after `grace_s`; return the exit status."""
        if self.proc is None:
            return None
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start().wait_ready()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
