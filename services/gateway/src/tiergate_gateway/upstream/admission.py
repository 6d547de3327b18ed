"""Load shedding per backend: at most `slots` calls at the engine, a bounded FIFO wait, else 503.

A call to a bounded backend first takes one of its slots (`BackendQueue.acquire`). A free slot
is taken at once; otherwise the call waits in this process's queue, oldest first, for at most
`max_queue_wait_s`. With `max_queue` calls already waiting, or when the wait runs out, the call
is refused with `BackendOverloaded` (503 `backend_overloaded` + Retry-After) — before the
engine saw anything, so the chat path may try the route's next model, and it never counts
against the backend's breaker: overload is not failure (issue 10). The permit is held for the
whole call, a stream until its last byte, and given back on every ending; a freed slot goes
straight to the oldest waiter.

Retry-After comes from the measured service rate: an exponentially weighted mean of how long a
served call held its slot gives `slots / mean` calls per second, and a caller refused now
would wait about `(waiting + 1) / rate` seconds (clamped to 1..60; 5 before any measurement).

The bound is per process. `slots` unset on a `llamacpp` backend is learned from the engine
(`/props` `total_slots`, else the length of `/slots`, beside the API prefix) and re-read every
minute; until then 4 (llama.cpp's default). Other kinds without `slots` are unbounded: vLLM
and SGLang schedule their own queue. With `workers` processes each takes `ceil(slots /
workers)`; several replicas in front of one engine each need their share configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping

import httpx
import msgspec
import structlog

from tiergate_gateway.metrics import GatewayMetrics, ShedReason
from tiergate_gateway.settings import BackendSettings
from tiergate_runtime.errors import ServiceUnavailable

__all__ = [
    "Admission",
    "BackendOverloaded",
    "BackendQueue",
    "Permit",
    "ShedReason",
    "engine_slots",
]

_log = structlog.get_logger("tiergate.gateway.admission")

DEFAULT_LLAMACPP_SLOTS = 4
QUEUE_PER_SLOT = 4
"""`max_queue` unset: this many waiting calls per slot."""
_DEFAULT_RETRY_AFTER_S = 5
_MAX_RETRY_AFTER_S = 60
_EWMA_WEIGHT = 0.2
_RELEARN_S = 60.0


class BackendOverloaded(ServiceUnavailable):
    """503: the backend's slots and queue are full, or no slot came free in time.

    Raised before the engine saw the request: the route's next model may answer it, and the
    backend's breaker must not count it.
    """

    default_code = "backend_overloaded"

    def __init__(self, backend: str, reason: ShedReason, retry_after: int) -> None:
        what = (
            "has too many requests waiting"
            if reason == "queue_full"
            else "had no free slot in time"
        )
        super().__init__(
            f"The {backend} backend is overloaded ({what}); retry after {retry_after} s.",
            retry_after=retry_after,
        )
        self.backend = backend
        self.reason = reason


class Permit:
    """One held slot; `release()` gives it back (once; later calls do nothing)."""

    __slots__ = ("_queue", "admitted_at", "released", "waited_s")

    def __init__(self, queue: BackendQueue, admitted_at: float, waited_s: float) -> None:
        self._queue = queue
        self.admitted_at = admitted_at
        self.waited_s = waited_s
        self.released = False

    def release(self, *, served: bool = True) -> None:
        """Give the slot back; `served`: the call was answered (its hold time is measured)."""
        if self.released:
            return
        self.released = True
        self._queue.release(self._queue.clock() - self.admitted_at if served else None)


class BackendQueue:
    """One backend's slots and FIFO wait queue in this process."""

    def __init__(
        self,
        name: str,
        slots: int,
        max_queue: int | None,
        max_wait_s: float,
        *,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_queue` None: `QUEUE_PER_SLOT` per slot, following `slots` when it changes."""
        self.name = name
        self.clock = clock
        self.max_wait_s = max_wait_s
        self._fixed_queue = max_queue
        self.slots = 1
        self.max_queue = 0
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._mean_hold_s: float | None = None
        self._shed_total = metrics.shed
        self._depth = metrics.queue_depth.labels(name)
        self._busy = metrics.in_flight.labels(name)
        self._wait = metrics.queue_wait.labels(name)
        self._slots_gauge = metrics.backend_slots.labels(name)
        self.set_slots(slots)

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiters)

    def set_slots(self, slots: int) -> None:
        """Change the bound (learned from the engine); a larger one admits waiters at once."""
        self.slots = max(1, slots)
        fixed = self._fixed_queue
        self.max_queue = QUEUE_PER_SLOT * self.slots if fixed is None else fixed
        while self.in_flight < self.slots and self._hand_over():
            self.in_flight += 1
        self._slots_gauge.set(self.slots)
        self._show()

    def retry_after(self) -> int:
        """Seconds until a caller refused now would likely find a slot (1..60)."""
        if self._mean_hold_s is None:
            return _DEFAULT_RETRY_AFTER_S
        rate = self.slots / max(self._mean_hold_s, 1e-3)
        return max(1, min(_MAX_RETRY_AFTER_S, math.ceil((self.waiting + 1) / rate)))

    def try_acquire(self) -> Permit | None:
        """A slot if one is free and nobody waits; None otherwise (then `acquire`)."""
        if self.in_flight < self.slots and not self._waiters:
            self.in_flight += 1
            self._admitted(0.0)
            return Permit(self, self.clock(), 0.0)
        return None

    async def acquire(self) -> Permit:
        """A slot: at once if one is free and nobody waits, else after waiting in line.

        Raises BackendOverloaded (queue full, or no slot within `max_wait_s`). Cancelled
        while waiting (the client left), it leaves the line and holds nothing.
        """
        permit = self.try_acquire()
        if permit is not None:
            return permit
        now = self.clock()
        if len(self._waiters) >= self.max_queue:
            raise self._shed("queue_full")
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self._show()
        try:
            async with asyncio.timeout(self.max_wait_s):
                await turn
        except TimeoutError:
            if not _handed(turn):
                self._leave(turn)
                raise self._shed("wait_timeout") from None
        except BaseException:
            self._leave(turn)
            if _handed(turn):  # the slot came just as the caller left: pass it on
                self.release(None)
            raise
        admitted = self.clock()
        self._show()
        self._admitted(admitted - now)
        return Permit(self, admitted, admitted - now)

    def release(self, held_s: float | None) -> None:
        """A slot is free again: to the oldest waiter, else back to the pool.

        `held_s`: how long a served call held it (measured); None for calls that failed or
        were cut short, which say nothing about the service rate.
        """
        if held_s is not None:
            mean = self._mean_hold_s
            self._mean_hold_s = held_s if mean is None else mean + _EWMA_WEIGHT * (held_s - mean)
        if self.in_flight > self.slots or not self._hand_over():
            self.in_flight -= 1
        self._show()

    def _hand_over(self) -> bool:
        """Give a slot to the oldest live waiter; whether there was one."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return True
        return False

    def _leave(self, turn: asyncio.Future[None]) -> None:
        if not turn.done():
            turn.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(turn)
        self._show()

    def _shed(self, reason: ShedReason) -> BackendOverloaded:
        self._shed_total.labels(self.name, reason).inc()
        return BackendOverloaded(self.name, reason, self.retry_after())

    def _admitted(self, waited_s: float) -> None:
        self._wait.observe(waited_s)
        self._busy.set(self.in_flight)

    def _show(self) -> None:
        self._depth.set(len(self._waiters))
        self._busy.set(self.in_flight)


def _handed(turn: asyncio.Future[None]) -> bool:
    """Whether a waiter's turn came (a slot was handed to it)."""
    return turn.done() and not turn.cancelled()


class _Props(msgspec.Struct):
    total_slots: int | None = None


async def engine_slots(client: httpx.AsyncClient, base_url: str) -> int | None:
    """How many requests a llama.cpp server decodes at once, or None if it does not say.

    Asks `/props` (`total_slots`), then `/slots` (one entry per slot), at the server's root:
    `base_url` without its `/v1` API prefix (cpu-llm relays both).
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    with contextlib.suppress(httpx.HTTPError, msgspec.DecodeError):
        response = await client.get(f"{root}/props")
        if response.status_code == 200:
            total = msgspec.json.decode(response.content, type=_Props).total_slots
            if total is not None and total >= 1:
                return total
    with contextlib.suppress(httpx.HTTPError, msgspec.DecodeError):
        response = await client.get(f"{root}/slots")
        if response.status_code == 200:
            listed = msgspec.json.decode(response.content, type=list[dict[str, object]])
            return len(listed) or None
    return None


class Admission:
    """The queues of every bounded backend of one gateway process, and slot learning."""

    def __init__(
        self,
        backends: Mapping[str, BackendSettings],
        metrics: GatewayMetrics,
        *,
        workers: int = 1,
        learn_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = max(1, workers)
        self._learn_interval_s = learn_interval_s
        self._queues: dict[str, BackendQueue] = {}
        self._learn: dict[str, str] = {}
        """backend → base_url, for llama.cpp backends whose slots come from the engine."""
        for name, backend in backends.items():
            slots = backend.slots
            if slots is None and backend.kind == "llamacpp":
                slots = DEFAULT_LLAMACPP_SLOTS
                self._learn[name] = backend.base_url
            if slots is None:
                continue  # unbounded: the engine's own scheduler queues
            self._queues[name] = BackendQueue(
                name,
                self._share(slots),
                None if backend.max_queue is None else self._share(backend.max_queue, floor=0),
                backend.max_queue_wait_s,
                metrics=metrics,
                clock=clock,
            )
        self.learned: dict[str, int] = {}
        """backend → the engine's slot count as last read from it."""
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def _share(self, total: int, *, floor: int = 1) -> int:
        """This process's part of a per-backend bound."""
        return max(floor, math.ceil(total / self._workers))

    def queue(self, backend: str) -> BackendQueue | None:
        """The backend's queue, or None when it is unbounded."""
        return self._queues.get(backend)

    def learn(self, backend: str, engine_slots: int) -> None:
        """The engine says it serves `engine_slots` at once: bound this process's share."""
        if self.learned.get(backend) != engine_slots:
            _log.info("backend_slots", backend=backend, slots=engine_slots)
        self.learned[backend] = engine_slots
        self._queues[backend].set_slots(self._share(engine_slots))

    async def learn_once(self) -> None:
        """Ask every llama.cpp backend without configured slots for its slot count now."""
        if not self._learn or self._client is None:
            return
        names = list(self._learn)
        found = await asyncio.gather(*(engine_slots(self._client, self._learn[n]) for n in names))
        for name, slots in zip(names, found, strict=True):
            if slots is not None:
                self.learn(name, slots)

    async def _loop(self) -> None:
        while True:
            try:
                await self.learn_once()
            except Exception:  # learning must outlive any surprise; the bound stays as it was
                _log.exception("backend_slots_failed")
            known = all(name in self.learned for name in self._learn)
            await asyncio.sleep(_RELEARN_S if known else self._learn_interval_s)

    def start(self) -> None:
        """Start learning slot counts in the background (called from the app's lifespan)."""
        if self._learn:
            self._client = httpx.AsyncClient(timeout=2.0, trust_env=False)
            self._task = asyncio.create_task(self._loop(), name="backend-slots")

    async def stop(self) -> None:
        """Stop learning and close its client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
