"""Waking GPU backends that scale to zero: one wake for all replicas, readiness for each.

`WakeCoordinator.wake(backend)` is cheap and may be called by every request that finds the
backend cold: the first caller in this process starts a wake task; the task takes a lock in
the shared store (`tg:wake:{backend}`, `SET NX` with a TTL), and only the replica that gets it
sends the wake call — however many replicas and requests arrive, one wake per lock period.
Every replica that saw demand then probes the backend until it is ready (platform: its
`/v1/models` lists the model; supervisor: the model's engine is `ready` in `/status`), so each
one sees the backend become ready by itself. A failed call to a ready backend marks it cold
again (`mark_cold`).

Metrics count the wakes this process sent (the replica that took the lock), one outcome each:
`ready` (with the time from its first wake call to ready), `timeout` (a wake call went
through, not ready within `ready_timeout_s`) or `failed` (no wake call went through by then).
A replica that only watched another's wake, or found the backend ready, counts nothing.

For `GET /v1/status`, each process also keeps what it saw (`view`): whether a wake is under
way and since when (this process's first demand), how long its last few wakes took (first
demand → ready, median of the last `_MEASURED`; a replica that joined a wake late measures
less) and whether the last one timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.settings import BackendSettings, WakeSettings

__all__ = ["WakeCoordinator", "WakeView"]

_MEASURED = 5

_log = structlog.get_logger("tiergate.gateway.wake")


class _ModelIds(msgspec.Struct):
    data: list[dict[str, object]] = []


@dataclass(frozen=True, slots=True)
class WakeView:
    """What this process knows of one sleeping backend's wakes (`WakeCoordinator.view`)."""

    ready: bool
    waking_since: float | None
    """`time.monotonic()` when the wake under way began here; None: no wake under way."""
    wake_s: float | None
    """Median of the last measured wake times (first demand → ready); None: never measured."""
    failed: bool
    """The last wake ended without the backend ready (timed out)."""


class _Backend:
    """One GPU backend's readiness as this process knows it."""

    def __init__(self, name: str, base_url: str, wake: WakeSettings, model: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.settings = wake
        self.model = model
        self.ready = False
        self.task: asyncio.Task[None] | None = None
        self.ready_event = asyncio.Event()
        self.waking_since: float | None = None
        self.durations: deque[float] = deque(maxlen=_MEASURED)
        self.failed = False


class WakeCoordinator:
    """Readiness and single-flight wakes for every backend with `wake` settings."""

    def __init__(
        self,
        backends: dict[str, BackendSettings],
        models: dict[str, str],
        store: aioredis.Redis,
        client: httpx.AsyncClient,
        prefix: str = "tg",
        *,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """`models`: backend → the engine model whose presence means ready; `metrics`: where
        each wake's outcome goes."""
        self._backends = {
            name: _Backend(name, backend.base_url, backend.wake, backend.wake.model or models[name])
            for name, backend in backends.items()
            if backend.wake is not None and (backend.wake.model or name in models)
        }
        self._store = store
        self._client = client
        self._prefix = prefix
        self._metrics = metrics
        self.wakes_sent = 0

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends that can be asleep (have wake settings and a model to wait for)."""
        return tuple(self._backends)

    def sleeps(self, backend: str) -> bool:
        """Whether `backend` can be asleep (has wake settings)."""
        return backend in self._backends

    def ready(self, backend: str) -> bool:
        """Whether `backend` is known ready here (a backend that never sleeps always is)."""
        state = self._backends.get(backend)
        return state is None or state.ready

    def view(self, backend: str) -> WakeView | None:
        """Its wakes as this process saw them; None for a backend that never sleeps."""
        state = self._backends.get(backend)
        if state is None:
            return None
        measured = statistics.median(state.durations) if state.durations else None
        return WakeView(state.ready, state.waking_since, measured, state.failed)

    def mark_cold(self, backend: str) -> None:
        """A call to `backend` failed as if it were down: wake it again before trusting it."""
        state = self._backends.get(backend)
        if state is not None and state.ready:
            _log.warning("gpu_backend_cold", backend=backend)
            state.ready = False
            state.ready_event.clear()

    def wake(self, backend: str) -> None:
        """Make sure `backend` is being woken (and watched) by this process."""
        state = self._backends[backend]
        if state.ready or (state.task is not None and not state.task.done()):
            return
        state.task = asyncio.create_task(self._watched(state), name=f"wake-{backend}")

    async def wait_ready(self, backend: str, timeout_s: float) -> bool:
        """Wake `backend` and wait up to `timeout_s` for it; whether it is ready."""
        self.wake(backend)
        state = self._backends[backend]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.ready_event.wait(), timeout_s)
        return state.ready

    async def aclose(self) -> None:
        """Stop every wake task."""
        for state in self._backends.values():
            if state.task is not None:
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.task

    async def _watched(self, state: _Backend) -> None:
        """`_wake_and_watch`, with the wake's start and end noted for `view`."""
        started = state.waking_since = time.monotonic()
        try:
            await self._wake_and_watch(state, started)
        finally:
            state.waking_since = None

    async def _wake_and_watch(self, state: _Backend, started: float) -> None:
        settings = state.settings
        deadline = time.monotonic() + settings.ready_timeout_s
        if await self._probe(state):
            self._set_ready(state)  # it was awake: not a wake, nothing measured
            return
        next_wake = 0.0
        called_at: float | None = None  # this process's first wake call
        went_through = False
        while time.monotonic() < deadline:
            if time.monotonic() >= next_wake:
                next_wake = time.monotonic() + settings.lock_ttl_s
                if await self._take_lock(state):
                    called_at = time.monotonic() if called_at is None else called_at
                    went_through = await self._send_wake(state) or went_through
            await asyncio.sleep(settings.probe_interval_s)
            if await self._probe(state):
                self._set_ready(state)
                state.durations.append(time.monotonic() - started)
                if called_at is not None and self._metrics is not None:
                    self._metrics.wake_ended(state.name, "ready", time.monotonic() - called_at)
                return
        state.failed = True
        _log.warning("gpu_wake_timed_out", backend=state.name, seconds=settings.ready_timeout_s)
        if called_at is not None and self._metrics is not None:
            self._metrics.wake_ended(state.name, "timeout" if went_through else "failed", None)

    def _set_ready(self, state: _Backend) -> None:
        _log.info("gpu_backend_ready", backend=state.name)
        state.ready = True
        state.failed = False
        state.ready_event.set()

    async def _take_lock(self, state: _Backend) -> bool:
        key = f"{self._prefix}:wake:{{{state.name}}}"
        try:
            taken = await self._store.set(
                key, b"1", nx=True, px=int(state.settings.lock_ttl_s * 1000)
            )
        except (RedisError, OSError) as exc:
            # No store: better one wake per replica than none.
            _log.warning("wake_lock_unavailable", backend=state.name, error=type(exc).__name__)
            return True
        return bool(taken)

    async def _send_wake(self, state: _Backend) -> bool:
        """Send the wake call; whether it went through (answered, not an error status)."""
        settings = state.settings
        headers = {"authorization": f"Bearer {settings.token}"} if settings.token else {}
        url = settings.url
        if settings.kind == "supervisor":
            url = f"{settings.url.rstrip('/')}/v1/models/{state.model}/wake"
        try:
            response = await self._client.post(url, headers=headers, json={}, timeout=10)
        except httpx.HTTPError as exc:
            _log.warning("gpu_wake_failed", backend=state.name, error=type(exc).__name__)
            return False
        self.wakes_sent += 1
        if response.is_error:
            _log.warning("gpu_wake_failed", backend=state.name, status=response.status_code)
            return False
        _log.info("gpu_wake_sent", backend=state.name, status=response.status_code)
        return True

    async def _box_status(self, state: _Backend) -> dict[str, Any]:
        """The supervisor's status: from the shared store if published there, else `/status`."""
        try:
            published = await self._store.get(f"{self._prefix}:gpu:{{{state.settings.box}}}")
        except (RedisError, OSError):
            published = None
        if published is not None:
            document: dict[str, Any] = msgspec.json.decode(published)
            return document
        response = await self._client.get(f"{state.settings.url.rstrip('/')}/status")
        return response.json() if response.status_code == 200 else {}

    async def _probe(self, state: _Backend) -> bool:
        try:
            if state.settings.kind == "supervisor":
                engines = (await self._box_status(state)).get("engines", {})
                return any(
                    state.model in e.get("models", []) and e.get("state") == "ready"
                    for e in engines.values()
                )
            response = await self._client.get(f"{state.base_url}/models", timeout=5)
        except (httpx.HTTPError, ValueError, AttributeError, msgspec.DecodeError):
            return False
        if response.status_code != 200:
            return False
        try:
            listed = msgspec.json.decode(response.content, type=_ModelIds).data
        except msgspec.DecodeError:
            return False
        return any(entry.get("id") == state.model for entry in listed)
