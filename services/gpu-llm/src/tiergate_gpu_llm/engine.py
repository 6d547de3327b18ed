"""One engine on the box: its process (under the reaper), readiness, health, sleep and wake.

`EngineProcess` knows how to bring one engine up and down; it holds no policy. `start()` runs
the pre-start command, spawns the engine and waits until its health path answers 200 (or the
process exits, or `ready_timeout_s` passes: `StartFailed`). `release()` gives the GPU back —
by sleeping in place where the engine supports it, else by stopping the process — and
`acquire()` takes it again (waking a sleeping engine, else starting it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import httpx
import structlog

from tiergate_gpu_llm.settings import EngineSettings
from tiergate_runtime.process import ChildProcess

__all__ = ["EngineProcess", "StartFailed"]

_log = structlog.get_logger("tiergate.gpu_llm.engine")
_SLEEP = {"vllm": "/sleep?level=1", "sglang": "/release_memory_occupation"}
_WAKE = {"vllm": "/wake_up", "sglang": "/resume_memory_occupation"}
_POLL_S = 0.2


class StartFailed(Exception):
    """The engine did not become ready; the message says why (with its last output)."""


class EngineProcess:
    """Process control for one configured engine."""

    def __init__(
        self, name: str, settings: EngineSettings, client: httpx.AsyncClient, probe_timeout_s: float
    ) -> None:
        self.name = name
        self.settings = settings
        self._client = client
        self._probe_timeout_s = probe_timeout_s
        self._child: ChildProcess | None = None
        self.asleep = False

    @property
    def running(self) -> bool:
        """Whether the engine process is alive (ready or not, awake or asleep)."""
        return self._child is not None and self._child.returncode is None

    @property
    def pid(self) -> int | None:
        """The reaper's pid (the engine's process group), while running."""
        return self._child.pid if self.running and self._child is not None else None

    async def probe(self) -> bool:
        """One health check: 200 from the health path within the probe timeout."""
        url = self.settings.base_url + self.settings.health_path
        try:
            response = await self._client.get(url, timeout=self._probe_timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def acquire(self) -> None:
        """Take the GPU: wake a sleeping engine, else start one; StartFailed if it fails."""
        if self.running and self.asleep:
            await self._post(_WAKE[self.settings.sleep])
            self.asleep = False
            await self._wait_ready(time.monotonic() + self.settings.ready_timeout_s)
            return
        await self.start()

    async def release(self) -> None:
        """Give the GPU back: sleep in place if supported (and it works), else stop."""
        if self.settings.sleep != "none" and self.running and not self.asleep:
            try:
                await self._post(_SLEEP[self.settings.sleep])
            except StartFailed as exc:
                _log.warning("engine_sleep_failed", engine=self.name, error=str(exc))
            else:
                self.asleep = True
                return
        await self.stop()

    async def start(self) -> None:
        """Pre-start command, spawn, wait until ready; StartFailed (process stopped) if not."""
        await self.stop()
        settings = self.settings
        if settings.pre_start:
            await self._pre_start(settings.pre_start)
        argv = [
            sys.executable,
            "-m",
            "tiergate_gpu_llm.reaper",
            str(settings.stop_grace_s),
            "--",
            *settings.command,
        ]
        env = {**os.environ, **settings.env}
        self._child = ChildProcess(f"engine-{self.name}", argv, env)
        await self._child.start()
        self.asleep = False
        try:
            await self._wait_ready(time.monotonic() + settings.ready_timeout_s)
        except StartFailed:
            await self.stop()
            raise

    async def stop(self) -> None:
        """SIGTERM the engine's group, SIGKILL after the grace period; idempotent."""
        child, self._child = self._child, None
        self.asleep = False
        if child is not None:
            await child.stop(self.settings.stop_grace_s + 5)

    async def _wait_ready(self, deadline: float) -> None:
        while True:
            child = self._child
            if child is None or child.returncode is not None:
                tail = " | ".join(child.output_tail[-5:]) if child is not None else ""
                code = child.returncode if child is not None else None
                raise StartFailed(f"{self.name} exited with status {code} while starting: {tail}")
            if await self.probe():
                return
            if time.monotonic() >= deadline:
                raise StartFailed(
                    f"{self.name} was not ready within {self.settings.ready_timeout_s:g} s"
                )
            await asyncio.sleep(_POLL_S)

    async def _post(self, path: str) -> None:
        url = self.settings.base_url + path
        try:
            response = await self._client.post(url, json={}, timeout=self.settings.ready_timeout_s)
        except httpx.HTTPError as exc:
            raise StartFailed(f"{self.name}: POST {path} failed: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise StartFailed(f"{self.name}: POST {path} answered {response.status_code}")

    async def _pre_start(self, command: list[str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(
                proc.communicate(), self.settings.pre_start_timeout_s
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise StartFailed(f"{self.name}: pre-start command timed out") from None
        if proc.returncode != 0:
            tail = output.decode("utf-8", "replace").strip()[-300:]
            raise StartFailed(f"{self.name}: pre-start command exited {proc.returncode}: {tail}")
