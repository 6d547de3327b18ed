"""Supervising an engine child: start it, wait until it answers, restart it if it dies.

cpu-llm runs two, under the same rules: the chat engine and the embedding engine (a second
llama.cpp server in embedding mode); each is one `Engine`, named in its log lines. An engine
is ready only while `Engine.ready` is true: the child is running and its `/health` answered
200 (llama.cpp answers 503 while it loads the model). While it runs, the engine is probed
every `health_interval_s`: one failure withdraws readiness (a load balancer
in front stops sending new work), and `unhealthy_restarts_after` consecutive failures restart
it (a hung engine is as useless as a dead one). Requests are relayed while `Engine.serving`:
from the first healthy answer until the second failed probe in a row — one slow probe on a
busy machine must not turn every request into a 503 for a whole probe interval, but a hung
engine's requests are refused at once from the second failure on. A child that exits is
restarted with exponential backoff; stopping the service stops the child. Once healthy, the
engine's own `/v1/models` answer is kept (`Engine.models`): what it serves and its metadata
(llama.cpp's `meta`: context, embedding width).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import structlog

from tiergate_cpu_llm.engine_main import EngineLaunch
from tiergate_cpu_llm.model import ChatModel
from tiergate_cpu_llm.settings import EmbeddingSettings, EngineSettings, SupervisionSettings
from tiergate_runtime.process import ChildProcess

__all__ = ["Engine", "chat_launch", "embedding_launch"]

_log = structlog.get_logger("tiergate.cpu_llm.engine")
_PROBE_INTERVAL_S = 0.1
_REFUSE_AFTER_FAILURES = 2  # failed probes in a row before requests get a 503


def chat_launch(settings: EngineSettings, model: ChatModel) -> EngineLaunch:
    """The chat engine's launch: the model generating, `parallel` slots."""
    return EngineLaunch(
        model_path=str(model.path),
        model_id=model.model_id,
        chat_template=model.chat_template,
        ctx_size=settings.ctx_size,
        parallel=settings.parallel,
        threads=settings.threads,
        threads_batch=settings.threads_batch or settings.threads,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )


def embedding_launch(settings: EmbeddingSettings, model_path: Path) -> EngineLaunch:
    """The embedding engine's launch: llama.cpp in embedding mode."""
    return EngineLaunch(
        model_path=str(model_path),
        model_id=settings.model_id,
        ctx_size=settings.ctx_size,
        parallel=settings.parallel,
        threads=settings.threads,
        threads_batch=settings.threads_batch or settings.threads,
        batch_size=settings.batch_size,
        seed=None,
        embedding=True,
        pooling=settings.pooling,
    )


class Engine:
    """One llama.cpp server child process and its readiness.

    `name` ("chat", "embedding") tags its log lines and its child process
    (`llama-server`, `llama-server-embedding`); `launch` is what each start runs (its port
    file is set per start).
    """

    def __init__(self, name: str, settings: SupervisionSettings, launch: EngineLaunch) -> None:
        self.name = name
        self.settings = settings
        self.launch = launch
        self.child_name = "llama-server" if name == "chat" else f"llama-server-{name}"
        self.base_url: str | None = None
        self.models: dict[str, Any] | None = None
        self.ready = False
        self.serving = False
        self.starts = 0
        self._child: ChildProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self._workdir: Path | None = None  # made by start(), removed by stop()
        self._stop_requested = asyncio.Event()

    def start(self) -> None:
        """Start supervising in the background; returns at once."""
        self._workdir = Path(tempfile.mkdtemp(prefix=f"tiergate-cpu-llm-{self.name}-"))
        self._task = asyncio.create_task(self._supervise(), name=f"cpu-llm-{self.name}-engine")

    async def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after the grace period) and supervision."""
        self._stop_requested.set()
        self.ready = self.serving = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._child is not None:
            await self._child.stop(self.settings.stop_grace_s)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def pid(self) -> int | None:
        """The engine child's pid, while one runs."""
        return self._child.pid if self._child is not None else None

    def _launch(self, port_file: Path) -> list[str]:
        launch = msgspec.structs.replace(self.launch, port_file=str(port_file))
        payload = msgspec.json.encode(launch).decode()
        return [sys.executable, "-m", "tiergate_cpu_llm.engine_main", payload]

    async def _supervise(self) -> None:
        backoff = self.settings.restart_backoff_s
        while not self._stop_requested.is_set():
            started = time.monotonic()
            try:
                await self._run_once()
            except EngineStartError as exc:
                _log.error(
                    "engine_start_failed", engine=self.name, reason=str(exc), tail=self._tail()
                )
            if self._stop_requested.is_set():
                return
            # A child that ran for a while earns a fresh backoff; a crash loop backs off.
            if time.monotonic() - started > 60:
                backoff = self.settings.restart_backoff_s
            _log.warning("engine_restart", engine=self.name, in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.restart_backoff_max_s)

    def _tail(self) -> list[str]:
        return self._child.output_tail[-5:] if self._child is not None else []

    async def _run_once(self) -> None:
        assert self._workdir is not None
        port_file = self._workdir / f"engine-{self.starts}.port"
        self.starts += 1
        if self._child is not None:
            await self._child.stop(self.settings.stop_grace_s)
        self._child = ChildProcess(
            self.child_name, self._launch(port_file), line_level=llama_log_level
        )
        await self._child.start()
        try:
            self.base_url = await self._wait_listening(port_file)
            await self._wait_healthy(self.base_url)
            self.models = await self._fetch_models(self.base_url)
            self.ready = self.serving = True
            _log.info(
                "engine_ready",
                engine=self.name,
                base_url=self.base_url,
                model_id=self.launch.model_id,
            )
            await self._watch(self.base_url)
        finally:
            self.ready = self.serving = False
            self.models = None

    async def _watch(self, base_url: str) -> None:
        """Probe the running engine until it exits or stays unhealthy; then return."""
        assert self._child is not None
        exited = asyncio.ensure_future(self._child.wait())
        failures = 0
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
                while True:
                    done, _ = await asyncio.wait({exited}, timeout=self.settings.health_interval_s)
                    if done:
                        if not self._stop_requested.is_set():
                            _log.error(
                                "engine_exited",
                                engine=self.name,
                                returncode=exited.result(),
                                tail=self._tail(),
                            )
                        return
                    healthy = await self._probe(client)
                    failures = 0 if healthy else failures + 1
                    if self.ready != healthy:
                        _log.warning(
                            "engine_health", engine=self.name, healthy=healthy, failures=failures
                        )
                    self.ready = healthy
                    self.serving = failures < _REFUSE_AFTER_FAILURES
                    if failures >= self.settings.unhealthy_restarts_after:
                        _log.error("engine_unhealthy_restart", engine=self.name, failures=failures)
                        await self._child.stop(self.settings.stop_grace_s)
                        return
        finally:
            exited.cancel()

    async def _fetch_models(self, base_url: str) -> dict[str, Any]:
        """The engine's `/v1/models` answer; a healthy engine that cannot say is a failed start."""
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
                answer = await client.get("/v1/models")
            answer.raise_for_status()
            models = msgspec.json.decode(answer.content)
        except (httpx.HTTPError, msgspec.DecodeError) as exc:
            await self._stop_child()
            raise EngineStartError(f"engine /v1/models failed: {exc}") from exc
        if not isinstance(models, dict) or not isinstance(models.get("data"), list):
            await self._stop_child()
            raise EngineStartError("engine /v1/models is not a model list")
        return models

    async def _stop_child(self) -> None:
        if self._child is not None:
            await self._child.stop(self.settings.stop_grace_s)

    @staticmethod
    async def _probe(client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def _wait_listening(self, port_file: Path) -> str:
        assert self._child is not None
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            if self._child.returncode is not None:
                raise EngineStartError(f"engine exited with status {self._child.returncode}")
            # A few bytes on local disk, polled every 100 ms: not worth a thread hop.
            if port_file.exists():  # noqa: ASYNC240
                return f"http://127.0.0.1:{int(port_file.read_text())}"  # noqa: ASYNC240
            await asyncio.sleep(_PROBE_INTERVAL_S)
        await self._child.stop(self.settings.stop_grace_s)
        raise EngineStartError(f"engine not listening after {self.settings.ready_timeout_s} s")

    async def _wait_healthy(self, base_url: str) -> None:
        assert self._child is not None
        deadline = time.monotonic() + self.settings.ready_timeout_s
        async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._child.returncode is not None:
                    raise EngineStartError(f"engine exited with status {self._child.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health")).status_code == 200:
                        return
                await asyncio.sleep(_PROBE_INTERVAL_S)
        await self._child.stop(self.settings.stop_grace_s)
        raise EngineStartError(f"engine not healthy after {self.settings.ready_timeout_s} s")


def llama_log_level(line: str) -> str:
    """The log level of a llama.cpp output line (`0.00.003.583 I srv ...`: I, W or E).

    Its per-request info lines go to debug; warnings and errors stay visible. The last lines
    are always kept for the error logged when the engine fails to start.
    """
    parts = line.split(" ", 2)
    if len(parts) >= 2 and len(parts[1]) == 1:
        return {"I": "debug", "D": "debug", "W": "warning", "E": "error"}.get(parts[1], "info")
    return "info"


class EngineStartError(Exception):
    """The engine did not come up; supervision retries with backoff."""
