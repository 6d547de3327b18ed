"""When the GPU changes hands: the swap rule, as a pure function with no clock and no I/O.

A swap costs seconds to minutes (weights leave and enter GPU memory), so the rule is built not
to thrash:

1. No engine holds the GPU → give it to the engine with the most waiting demand (ties: the
   oldest waiting request), at once.
2. The hot engine is starting or stopping → keep it: a transition is never cut short (a start
   thrown away is the most expensive swap of all).
3. The hot engine got the GPU less than `min_dwell_s` ago → keep it.
4. The hot engine is serving requests → keep it, unless the cold engine's demand is
   *pressing*: at least `swap_min_waiting` requests waiting, or its oldest waiting request has
   waited `max_wait_s`. (The hot engine's running requests still finish before it stops: see
   the supervisor's drain.)
5. The hot engine is idle (ready, nothing in flight) → a cold engine with any waiting demand
   gets the GPU.
6. No cold engine has waiting demand → keep.

"Waiting demand" is the requests for a cold engine's models seen in the last
`demand_window_s` (each answered 503 + Retry-After, or counted from a wake call): demand that
nobody repeats fades out instead of pulling the GPU away later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Demand", "HotEngine", "SwapDecision", "SwapPolicy", "decide_swap"]

Reason = Literal[
    "nothing_hot",
    "in_transition",
    "dwell",
    "hot_busy",
    "pressing_demand",
    "hot_idle",
    "no_demand",
]


@dataclass(frozen=True, slots=True)
class SwapPolicy:
    """The rule's knobs (seconds and counts)."""

    min_dwell_s: float = 60.0
    swap_min_waiting: int = 4
    max_wait_s: float = 30.0


@dataclass(frozen=True, slots=True)
class HotEngine:
    """The engine holding the GPU, as the rule sees it."""

    name: str
    held_for_s: float
    """Seconds since it got the GPU (since its start began)."""
    ready: bool
    """Ready; False while starting or stopping."""
    in_flight: int


@dataclass(frozen=True, slots=True)
class Demand:
    """Requests waiting for a cold engine within the demand window."""

    waiting: int
    oldest_wait_s: float


@dataclass(frozen=True, slots=True)
class SwapDecision:
    """`target`: the engine that should hold the GPU next (None: keep things as they are)."""

    target: str | None
    reason: Reason


def _most_wanted(demand: dict[str, Demand]) -> str | None:
    wanted = [(d.waiting, d.oldest_wait_s, name) for name, d in demand.items() if d.waiting > 0]
    return max(wanted)[2] if wanted else None


def decide_swap(
    hot: HotEngine | None, demand: dict[str, Demand], policy: SwapPolicy
) -> SwapDecision:
    """Which engine should hold the GPU next; see the module docstring for the rule."""
    if hot is None:
        target = _most_wanted(demand)
        return SwapDecision(target, "nothing_hot" if target else "no_demand")
    cold = {name: d for name, d in demand.items() if name != hot.name}
    target = _most_wanted(cold)
    if target is None:
        return SwapDecision(None, "no_demand")
    if not hot.ready:
        return SwapDecision(None, "in_transition")
    if hot.held_for_s < policy.min_dwell_s:
        return SwapDecision(None, "dwell")
    wanted = cold[target]
    pressing = (
        wanted.waiting >= policy.swap_min_waiting or wanted.oldest_wait_s >= policy.max_wait_s
    )
    if hot.in_flight > 0:
        return (
            SwapDecision(target, "pressing_demand") if pressing else SwapDecision(None, "hot_busy")
        )
    return SwapDecision(target, "hot_idle")
