"""Child processes the harness owns: started pinned to CPUs, logged to files, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["Child", "ChildFailed", "free_port", "pinned", "stop_all", "wait_until"]

_STARTED: list[Child] = []  # every child ever started, so that none can be left behind


class ChildFailed(RuntimeError):
    """A child process exited or did not become ready; the message quotes its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpus: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` run under `taskset -c cpus` (children inherit the affinity); None: every CPU.

    Always through taskset: the harness pins itself next to the load generator, and a child
    started without a mask would inherit that one.
    """
    every = f"0-{(os.cpu_count() or 1) - 1}"
    return ["taskset", "-c", cpus or every, *argv]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, child: Child) -> None:
    """Poll `check` until true; raise ChildFailed if `child` dies or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ChildFailed(f"{child.name} exited ({child.returncode()}) {what}:\n{child.tail()}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise ChildFailed(f"{child.name} not {what} after {timeout_s:.0f} s:\n{child.tail()}")


class Child:
    """One process (and its process group) started by the harness, output to a log file.

    Each child leads its own session, so Ctrl-C reaches only the harness, which then stops
    every child in order; `stop()` signals the whole group, so grandchildren go too.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        _STARTED.append(self)

    @property
    def pid(self) -> int:
        """The process id of the command itself (taskset execs it, so it is the real one)."""
        return self._proc.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._proc.poll() is None

    def returncode(self) -> int | None:
        """The exit status once exited, else None."""
        return self._proc.poll()

    def tail(self, lines: int = 30) -> str:
        """The last lines of the child's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if still there after `timeout_s`; idempotent."""
        if self._log.closed:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout_s)
        # The leader may be gone while group members linger; make sure none stay behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)
        self._log.close()


def stop_all() -> None:
    """Stop every child still running, newest first (the upstream last)."""
    for child in reversed(_STARTED):
        child.stop()
