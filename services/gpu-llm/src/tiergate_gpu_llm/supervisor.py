"""The GPU mutex: which engine holds the GPU, and every transition of it.

At most one engine is `starting`, `ready` or `stopping` at any moment (the hot engine); the
others are `cold` (stopped, or asleep in place) or `failed`. Every transition runs under one
lock, and a swap first drains and releases the hot engine, and only then brings up the other.

One loop ticks every `tick_s`:
- swap: `policy.decide_swap` over the demand seen in the last `demand_window_s`;
- health: every `probe_interval_s` the ready engine is probed; `failures_before_restart`
  failures in a row (or the process exiting) restart it — one restart per failure streak;
- idle: a ready engine with nothing in flight for `idle_ttl_s` releases the GPU. The idle clock
  starts when the engine became ready or finished its last request, so it never fires while
  an engine is starting or serving.

A start that fails `start_attempts` times leaves the engine `failed`; any later wake (a request
for its models, or the admin endpoint) tries again — the supervisor never needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog

from tiergate_gpu_llm.engine import EngineProcess, StartFailed
from tiergate_gpu_llm.metrics import GpuMetrics
from tiergate_gpu_llm.policy import Demand, HotEngine, SwapPolicy, decide_swap
from tiergate_gpu_llm.publish import StatePublisher
from tiergate_gpu_llm.settings import GpuLlmSettings

__all__ = ["EngineState", "EngineStatus", "Supervisor"]

_log = structlog.get_logger("tiergate.gpu_llm.supervisor")
EngineState = Literal["cold", "starting", "ready", "stopping", "failed"]
STATES: tuple[EngineState, ...] = ("cold", "starting", "ready", "stopping", "failed")


@dataclass(slots=True)
class EngineStatus:
    """What `/status` reports about one engine."""

    state: EngineState = "cold"
    since: float = field(default_factory=time.time)
    """Wall-clock time of the last state change."""
    last_used: float | None = None
    in_flight: int = 0
    asleep: bool = False
    error: str | None = None
    restarts: int = 0


class Supervisor:
    """Owns the engines of one box and decides, one transition at a time, who holds the GPU."""

    def __init__(
        self,
        settings: GpuLlmSettings,
        engines: dict[str, EngineProcess],
        metrics: GpuMetrics,
        *,
        tick_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        publisher: StatePublisher | None = None,
    ) -> None:
        self._publisher = publisher
        self._published_at = float("-inf")
        self._dirty = True
        self.settings = settings
        self.engines = engines
        self.metrics = metrics
        self.status = {name: EngineStatus() for name in engines}
        self.hot: str | None = None
        self._policy = SwapPolicy(
            min_dwell_s=settings.policy.min_dwell_s,
            swap_min_waiting=settings.policy.swap_min_waiting,
            max_wait_s=settings.policy.max_wait_s,
        )
        self._clock = clock
        self._tick_s = tick_s
        self._hot_since = 0.0
        self._idle_since = 0.0
        self._next_probe = 0.0
        self._probe_failures = 0
        self._demand: dict[str, deque[float]] = {name: deque() for name in engines}
        self._lock = asyncio.Lock()
        self._transition: asyncio.Task[None] | None = None
        self._loop: asyncio.Task[None] | None = None
        self._model_engine = {m: name for name, e in engines.items() for m in e.settings.models}
        self._drained = {name: asyncio.Event() for name in engines}
        for event in self._drained.values():
            event.set()
        for name in engines:
            self._publish(name)

    # --- requests -------------------------------------------------------------------------

    def engine_for(self, model: str) -> str | None:
        """The engine that serves `model`, if any."""
        return self._model_engine.get(model)

    def serving(self, name: str) -> bool:
        """Whether `name` is hot and ready to take a request now."""
        return self.hot == name and self.status[name].state == "ready"

    def begin(self, name: str) -> None:
        """A request went to `name`."""
        status = self.status[name]
        status.in_flight += 1
        status.last_used = time.time()
        self._drained[name].clear()

    def end(self, name: str) -> None:
        """A request to `name` finished (however it ended)."""
        status = self.status[name]
        status.in_flight = max(0, status.in_flight - 1)
        status.last_used = time.time()
        if status.in_flight == 0:
            self._idle_since = self._clock()
            self._drained[name].set()

    def want(self, name: str) -> float:
        """Record demand for `name` (its engine is not ready); seconds until it may be."""
        self._demand[name].append(self._clock())
        self._maybe_swap()
        status = self.status[name]
        if status.state == "starting":
            return 5.0
        if self.hot is not None and self.hot != name:
            held = self._clock() - self._hot_since
            return max(5.0, self._policy.min_dwell_s - held)
        return 5.0

    # --- explicit control (admin) ----------------------------------------------------------

    async def wake(self, name: str) -> None:
        """Give `name` the GPU now, whatever the rule says (dwell and demand aside)."""
        if self.serving(name):
            return
        await self._swap(name, reason="wake")

    async def sleep(self, name: str) -> None:
        """Release the GPU if `name` holds it."""
        async with self._lock:
            if self.hot == name:
                await self._release(name, reason="sleep")

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervision loop (from the app's lifespan)."""
        self._loop = asyncio.create_task(self._run(), name="gpu-supervisor")

    async def stop(self) -> None:
        """Stop supervising and stop every engine process."""
        for task in (self._loop, self._transition):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for engine in self.engines.values():
            await engine.stop()

    def snapshot(self) -> dict[str, object]:
        """The `/status` document."""
        return {
            "box": self.settings.box,
            "hot": self.hot,
            "engines": {
                name: {
                    "state": s.state,
                    "since": s.since,
                    "last_used": s.last_used,
                    "in_flight": s.in_flight,
                    "asleep": s.asleep,
                    "error": s.error,
                    "restarts": s.restarts,
                    "models": self.engines[name].settings.models,
                }
                for name, s in self.status.items()
            },
        }

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                self._maybe_swap()
                await self._check_health()
                await self._check_idle()
                await self._publish_state()
            except Exception:  # the loop must survive anything one tick throws
                _log.exception("supervisor_tick_failed")
            await asyncio.sleep(self._tick_s)

    def _demand_now(self) -> dict[str, Demand]:
        now = self._clock()
        window = self.settings.policy.demand_window_s
        demand = {}
        for name, seen in self._demand.items():
            while seen and now - seen[0] > window:
                seen.popleft()
            if seen:
                demand[name] = Demand(waiting=len(seen), oldest_wait_s=now - seen[0])
        return demand

    def _maybe_swap(self) -> None:
        if self._transition is not None and not self._transition.done():
            return
        hot = None
        if self.hot is not None:
            status = self.status[self.hot]
            hot = HotEngine(
                name=self.hot,
                held_for_s=self._clock() - self._hot_since,
                ready=status.state == "ready",
                in_flight=status.in_flight,
            )
        decision = decide_swap(hot, self._demand_now(), self._policy)
        if decision.target is None:
            return
        # A failed engine is tried again only by new demand (which this is) or a wake.
        self._transition = asyncio.create_task(
            self._swap(decision.target, reason=decision.reason), name="gpu-swap"
        )

    async def _check_health(self) -> None:
        name = self.hot
        if name is None or self.status[name].state != "ready":
            return
        now = self._clock()
        engine = self.engines[name]
        if engine.running and now < self._next_probe:
            return
        self._next_probe = now + self.settings.health.probe_interval_s
        if engine.running and await engine.probe():
            self._probe_failures = 0
            return
        self._probe_failures += 1
        _log.warning("engine_probe_failed", engine=name, failures=self._probe_failures)
        threshold = self.settings.health.failures_before_restart
        busy = self._transition is not None and not self._transition.done()
        if (not engine.running or self._probe_failures >= threshold) and not busy:
            self._probe_failures = 0
            self.status[name].restarts += 1
            self.metrics.restarts.labels(name).inc()
            self._transition = asyncio.create_task(self._restart(name), name="gpu-restart")

    async def _check_idle(self) -> None:
        name = self.hot
        if name is None:
            return
        status = self.status[name]
        if status.state != "ready" or status.in_flight > 0:
            return
        if self._clock() - self._idle_since < self.settings.policy.idle_ttl_s:
            return
        async with self._lock:
            if self.hot == name and status.state == "ready" and status.in_flight == 0:
                await self._release(name, reason="idle")

    # --- transitions (under the lock) ------------------------------------------------------

    def _set(self, name: str, state: EngineState, error: str | None = None) -> None:
        status = self.status[name]
        status.state = state
        status.since = time.time()
        status.asleep = self.engines[name].asleep
        if state != "failed":
            status.error = None
        if error is not None:
            status.error = error
        self._publish(name)
        _log.info("engine_state", engine=name, state=state, error=error)

    async def _publish_state(self) -> None:
        # On every change (the next tick) and every 5 s, so the entry's TTL never lapses.
        if self._publisher is None:
            return
        now = self._clock()
        if self._dirty or now - self._published_at >= 5.0:
            self._dirty = False
            self._published_at = now
            await self._publisher.publish(self.snapshot())

    def _publish(self, name: str) -> None:
        self._dirty = True
        state = self.status[name].state
        for candidate in STATES:
            self.metrics.state.labels(name, candidate).set(1.0 if candidate == state else 0.0)

    async def _drain(self, name: str) -> None:
        """Let running requests finish (up to `drain_s`); new ones already get 503s."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained[name].wait(), self.settings.policy.drain_s)

    async def _release(self, name: str, reason: str) -> None:
        self._set(name, "stopping")
        await self._drain(name)
        await self.engines[name].release()
        self.hot = None
        self._set(name, "cold")
        _log.info("gpu_released", engine=name, reason=reason)

    async def _swap(self, target: str, reason: str) -> None:
        async with self._lock:
            if self.serving(target):
                return
            started = self._clock()
            previous = self.hot
            if previous is not None and previous != target:
                await self._release(previous, reason=f"swap to {target}")
            self.hot = target
            self._hot_since = self._clock()
            self._demand[target].clear()
            await self._bring_up(target)
            if self.hot == target:
                self.metrics.swaps.labels(previous or "none", target).inc()
                self.metrics.swap_seconds.observe(self._clock() - started)
                _log.info(
                    "gpu_swapped",
                    previous=previous,
                    target=target,
                    reason=reason,
                    seconds=round(self._clock() - started, 3),
                )

    async def _restart(self, name: str) -> None:
        async with self._lock:
            if self.hot != name:
                return
            _log.warning("engine_restart", engine=name)
            self._set(name, "stopping")
            await self.engines[name].stop()
            await self._bring_up(name)

    async def _bring_up(self, name: str) -> None:
        engine = self.engines[name]
        self._set(name, "starting")
        error = None
        for attempt in range(1, self.settings.health.start_attempts + 1):
            try:
                await engine.acquire()
            except StartFailed as exc:
                error = str(exc)
                _log.warning("engine_start_failed", engine=name, attempt=attempt, error=error)
                await engine.stop()
                continue
            self._probe_failures = 0
            self._next_probe = self._clock() + self.settings.health.probe_interval_s
            self._idle_since = self._clock()
            self._set(name, "ready")
            return
        self.hot = None
        self._set(name, "failed", error=error)
