"""Child processes that cannot outlive us: own process group, parent-death signal, logged output.

Engines (llama.cpp, vLLM, SGLang) run as children of a service. `ChildProcess` starts one in
its own process group (so a terminal's Ctrl-C reaches only the service, which then stops the
engine in order) with the kernel's parent-death signal set, so the engine is told to exit
even when the service is killed with SIGKILL. `stop()` sends SIGTERM to the whole group,
then SIGKILL after a grace period. Every line the child prints goes to the structured log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence

import structlog

__all__ = ["ChildProcess", "die_with_parent"]

_PR_SET_PDEATHSIG = 1
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_log = structlog.get_logger("tiergate.process")


# Loaded once in the parent: dlopen() after fork in a threaded process could deadlock.
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux).

    Safe to call in a freshly forked child before exec: the setting survives exec.
    """
    if _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


class ChildProcess:
    """One supervised child process; start it, read its output into the log, stop it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        capture_output: bool = True,
        line_level: Callable[[str], str] | None = None,
    ) -> None:
        self.name = name
        self.capture_output = capture_output
        self._line_level = line_level or (lambda _: "info")
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tail: list[str] = []

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group id), or None before start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited, else None."""
        return self._proc.returncode if self._proc is not None else None

    @property
    def output_tail(self) -> list[str]:
        """The last lines the child printed (for error messages when it fails to start)."""
        return list(self._tail)

    async def start(self) -> None:
        """Start the child; its output is logged line by line, or inherited if not captured."""
        parent = os.getpid()

        def in_child() -> None:
            die_with_parent()
            # The parent may have died between fork and prctl; then nobody would signal us.
            if os.getppid() != parent:
                os._exit(1)

        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if self.capture_output else None,
            stderr=asyncio.subprocess.STDOUT if self.capture_output else None,
            env=self.env,
            start_new_session=True,
            preexec_fn=in_child,
        )
        _log.info("child_started", child=self.name, pid=self._proc.pid, argv=self.argv[:3])
        if self.capture_output:
            self._reader = asyncio.create_task(self._pump_output(), name=f"{self.name}-output")

    async def _pump_output(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stream = self._proc.stdout
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the stream limit: skip the rest of it
                await stream.read(65536)
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._tail = [*self._tail[-19:], line]
            level = self._line_level(line)
            _log.log(
                _LOG_LEVELS.get(level, logging.INFO), "child_output", child=self.name, line=line
            )

    async def wait(self) -> int:
        """Wait for the child to exit and return its status."""
        assert self._proc is not None
        code = await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        return code

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL it after `grace_s`; return the status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace_s)
            except TimeoutError:
                _log.warning("child_kill", child=self.name, pid=proc.pid, grace_s=grace_s)
                self._signal_group(signal.SIGKILL)
                await proc.wait()
        # The group may hold grandchildren that ignored SIGTERM; they must not outlive us.
        self._signal_group(signal.SIGKILL)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        _log.info("child_stopped", child=self.name, pid=proc.pid, returncode=proc.returncode)
        return proc.returncode

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)
