"""A circuit breaker per backend, handing out one permit per tried request.

`closed` (normal) → after `threshold` failures in a row → `open` (skipped while any other
candidate exists) → after `cooldown_s` → `half_open`: one request is let through as a probe;
its success closes the breaker, its failure opens it again. Only failures before the first
byte count (refused, dropped, 502/503/504 answers) — they are what a fallback can fix.

Looking is free, trying takes a permit (issue 11). `snapshot()` says what a backend's breaker
would allow now without claiming anything, so routing decisions (`routing/decide.py`) can
look at every candidate. `acquire()` is called only for the one candidate actually tried; in
half-open state it claims the single probe. Every ending settles the permit exactly once:
`success()`, `failure()`, or `neutral()` for an ending that says nothing about the backend (a
4xx, shed before the engine saw it, the client gone, cancelled). A permit that is never
settled explicitly is settled neutral by `close()`, which the caller runs in `finally`: the
probe can never leak and leave the breaker refusing its backend forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Gauge

__all__ = ["BreakerPermit", "BreakerSnapshot", "BreakerState", "Breakers"]

BreakerState = Literal["closed", "open", "half_open"]
_GAUGE_VALUE = {"closed": 0.0, "open": 1.0, "half_open": 2.0}


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A backend's breaker as stored, claiming nothing; evaluated at a given time."""

    open_until: float | None = None
    """When an open breaker turns half-open (the breakers' clock); None: closed."""
    probing: bool = False
    """A half-open probe is out."""

    def state(self, now: float) -> BreakerState:
        """The state at `now`."""
        if self.open_until is None:
            return "closed"
        return "half_open" if now >= self.open_until else "open"

    def allows(self, now: float) -> bool:
        """Whether `acquire()` would hand out a permit at `now`."""
        state = self.state(now)
        return state == "closed" or (state == "half_open" and not self.probing)


CLOSED = BreakerSnapshot()


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class BreakerPermit:
    """The right to send one request to a backend; settle it once (later calls are no-ops)."""

    __slots__ = ("_breakers", "_probe", "backend", "settled")

    def __init__(self, breakers: Breakers, backend: str, *, probe: bool) -> None:
        self._breakers = breakers
        self._probe = probe
        self.backend = backend
        self.settled = False

    @property
    def probe(self) -> bool:
        """Whether this permit holds the breaker's half-open probe."""
        return self._probe

    def success(self) -> None:
        """The backend answered."""
        if self._settle():
            self._breakers._success(self.backend)

    def failure(self) -> None:
        """The backend failed before its first byte."""
        if self._settle():
            self._breakers._failure(self.backend)

    def neutral(self) -> None:
        """The request ended without saying whether the backend works."""
        if self._settle() and self._probe:
            self._breakers._release_probe(self.backend)

    def close(self) -> None:
        """Settle as neutral unless already settled (call in `finally`)."""
        self.neutral()

    def _settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        return True


class Breakers:
    """The breakers of every backend of one gateway process."""

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        gauge: Gauge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._gauge = gauge
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def now(self) -> float:
        """The breakers' clock (snapshots are evaluated against it)."""
        return self._clock()

    def state(self, backend: str) -> BreakerState:
        """The backend's state now."""
        return self.snapshot(backend).state(self._clock())

    def snapshot(self, backend: str) -> BreakerSnapshot:
        """The backend's breaker as it stands; claims nothing."""
        breaker = self._breakers.get(backend)
        if breaker is None or breaker.opened_at is None:
            return CLOSED
        return BreakerSnapshot(breaker.opened_at + self._cooldown_s, breaker.probing)

    def acquire(self, backend: str, *, force: bool = False) -> BreakerPermit | None:
        """A permit for one request to `backend`, or None if its breaker refuses it now.

        Half-open: the first caller gets the probe; others get None until it is settled.
        `force`: a permit even when open (the last candidate of a request is tried rather than
        refused); it counts like any other, but claims no probe.
        """
        snapshot = self.snapshot(backend)
        state = snapshot.state(self._clock())
        if state == "closed":
            return BreakerPermit(self, backend, probe=False)
        if state == "half_open" and not snapshot.probing:
            self._breakers[backend].probing = True
            return BreakerPermit(self, backend, probe=True)
        if force:
            return BreakerPermit(self, backend, probe=False)
        return None

    def _success(self, backend: str) -> None:
        breaker = self._breakers.get(backend)
        if breaker is not None and (breaker.failures or breaker.opened_at is not None):
            self._breakers[backend] = _Breaker()
            self._show(backend)

    def _failure(self, backend: str) -> None:
        breaker = self._breakers.setdefault(backend, _Breaker())
        breaker.failures += 1
        if breaker.probing or breaker.failures >= self._threshold:
            breaker.opened_at = self._clock()
            breaker.probing = False
        self._show(backend)

    def _release_probe(self, backend: str) -> None:
        breaker = self._breakers.get(backend)
        if breaker is not None:
            breaker.probing = False

    def _show(self, backend: str) -> None:
        if self._gauge is not None:
            self._gauge.labels(backend).set(_GAUGE_VALUE[self.state(backend)])
