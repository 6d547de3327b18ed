"""Where a request goes now: a pure function over its plan and what is known of the backends.

`decide(plan, backends, breakers, now)` performs no side effects: the pipeline's act stage
carries out what it says (issue 11). The rule, in order:

1. A candidate is *awake* when its backend never sleeps or is known ready, and *usable* when
   it is awake and its breaker would let a request through (closed, or half-open with the
   probe free). Looking claims nothing: the act stage takes a breaker permit only for the
   candidate it actually tries.
2. The plan's first model is usable → `first`: try the usable candidates in plan order.
3. It is awake but its breaker refuses it, and another candidate is usable → `breaker_open`:
   try the usable ones (the first is skipped, not woken).
4. It is asleep (a GPU backend scaled to zero) → it is woken in every case below, and
   - the plan holds (`hold`, `hold_s` > 0) → `hold`: wait up to `hold_s` for it, then try it;
   - the plan answers CPU-first and another candidate is usable → `cpu_first`: try those
     meanwhile (the answer says `x-tiergate-upgrade: waking`);
   - else → `waking`: refuse with 503 `model_waking` and a Retry-After.
5. Nothing is usable but something is awake → `all_open`: try the awake candidates anyway,
   the first by force (a request that only one backend can serve is tried, not refused).
6. Nothing is awake (every candidate sleeps and none may be held for) → `waking`, as in 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tiergate_gateway.breaker import CLOSED, BreakerSnapshot
from tiergate_gateway.catalog import Route
from tiergate_gateway.routing.router import Plan

__all__ = ["AWAKE", "BackendState", "Decision", "Reason", "decide"]

Reason = Literal["first", "breaker_open", "hold", "cpu_first", "waking", "all_open"]

WAKING_RETRY_AFTER_S = 10


@dataclass(frozen=True, slots=True)
class BackendState:
    """A backend's readiness as this process knows it."""

    sleeps: bool = False
    """It can be asleep (it has wake settings)."""
    ready: bool = True
    """It is known to answer now (always true for a backend that never sleeps)."""

    @property
    def awake(self) -> bool:
        return not self.sleeps or self.ready


AWAKE = BackendState()


@dataclass(frozen=True, slots=True)
class Decision:
    """What the act stage does for one request."""

    reason: Reason
    attempts: tuple[Route, ...] = ()
    """Routes to try, in order (empty: refuse with 503)."""
    waking: Route | None = None
    """The plan's first model, asleep: its backend is woken (single-flight) whatever else
    happens, and a refusal names it."""
    hold_s: float = 0.0
    """Wait this long for `waking`'s backend to be ready before trying `attempts`."""
    force_first: bool = False
    """Try the first attempt even though its breaker refuses it (`all_open`)."""
    retry_after_s: int = 0
    """For a refusal: when asking again may help."""
    upgrade: bool = False
    """A smaller model answers while the plan's first one wakes (`x-tiergate-upgrade`)."""


def decide(  # noqa: PLR0911 - one return per rule of the module docstring
    plan: Plan,
    backends: Mapping[str, BackendState],
    breakers: Mapping[str, BreakerSnapshot],
    now: float,
) -> Decision:
    """The decision for `plan` (see the module docstring); `now` is the caller's clock.

    Backends missing from `backends` are awake; missing from `breakers`, closed. Breakers
    are evaluated at `now` (open until their cooldown ends, then half-open).
    """
    routes = plan.routes
    awake = [r for r in routes if backends.get(r.backend, AWAKE).awake]
    usable = [r for r in awake if breakers.get(r.backend, CLOSED).allows(now)]
    first = routes[0]
    first_state = backends.get(first.backend, AWAKE)
    if usable and usable[0] is first:
        return Decision("first", tuple(usable))
    if first_state.awake:
        if usable:
            return Decision("breaker_open", tuple(usable))
        return Decision("all_open", tuple(awake), force_first=True)
    # The first model sleeps: wake it whatever else is decided.
    if plan.when_cold == "hold" and plan.hold_s > 0:
        return Decision("hold", (first,), waking=first, hold_s=plan.hold_s)
    if plan.when_cold == "cpu_first" and usable:
        return Decision("cpu_first", tuple(usable), waking=first, upgrade=True)
    if plan.when_cold == "cpu_first" and awake:
        return Decision("all_open", tuple(awake), waking=first, force_first=True, upgrade=True)
    return Decision("waking", waking=first, retry_after_s=WAKING_RETRY_AFTER_S)
