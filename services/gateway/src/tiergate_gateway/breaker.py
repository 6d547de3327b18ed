"""A circuit breaker per backend: stop sending requests to a backend that keeps failing.

`closed` (normal) → after `threshold` failures in a row → `open` (skipped while any other
candidate exists) → after `cooldown_s` → `half_open`: one request is let through as a probe;
its success closes the breaker, its failure opens it again. Only failures before the first
byte count (refused, dropped, 502/503/504 answers) — they are what a fallback can fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Gauge

__all__ = ["BreakerState", "Breakers"]

BreakerState = Literal["closed", "open", "half_open"]
_GAUGE_VALUE = {"closed": 0.0, "open": 1.0, "half_open": 2.0}


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


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

    def state(self, backend: str) -> BreakerState:
        """The backend's state now."""
        breaker = self._breakers.get(backend)
        if breaker is None or breaker.opened_at is None:
            return "closed"
        if self._clock() - breaker.opened_at >= self._cooldown_s:
            return "half_open"
        return "open"

    def allows(self, backend: str) -> bool:
        """Whether a request may go to `backend` now (claims the half-open probe if so)."""
        state = self.state(backend)
        if state == "closed":
            return True
        if state == "open":
            return False
        breaker = self._breakers[backend]
        if breaker.probing:
            return False
        breaker.probing = True
        return True

    def success(self, backend: str) -> None:
        """A request to `backend` got an answer."""
        breaker = self._breakers.get(backend)
        if breaker is not None and (breaker.failures or breaker.opened_at is not None):
            self._breakers[backend] = _Breaker()
            self._show(backend)

    def failure(self, backend: str) -> None:
        """A request to `backend` failed before its first byte."""
        breaker = self._breakers.setdefault(backend, _Breaker())
        breaker.failures += 1
        if breaker.probing or breaker.failures >= self._threshold:
            breaker.opened_at = self._clock()
            breaker.probing = False
        self._show(backend)

    def neutral(self, backend: str) -> None:
        """A request to `backend` ended without saying whether it works (shed before the engine
        saw it, issue 10): neither a failure nor a success; a claimed probe is given back."""
        breaker = self._breakers.get(backend)
        if breaker is not None:
            breaker.probing = False

    def _show(self, backend: str) -> None:
        if self._gauge is not None:
            self._gauge.labels(backend).set(_GAUGE_VALUE[self.state(backend)])
