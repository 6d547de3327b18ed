"""The swap rule, as a table."""

from __future__ import annotations

import pytest

from tiergate_gpu_llm.policy import Demand, HotEngine, SwapPolicy, decide_swap

POLICY = SwapPolicy(min_dwell_s=60, swap_min_waiting=4, max_wait_s=30)
NONE = Demand(waiting=0, oldest_wait_s=0)


def hot(name: str = "qwen", held: float = 120, ready: bool = True, busy: int = 0) -> HotEngine:
    return HotEngine(name=name, held_for_s=held, ready=ready, in_flight=busy)


@pytest.mark.parametrize(
    ("current", "demand", "target", "reason"),
    [
        # Nothing hot: the most wanted engine, at once; nothing wanted: nothing.
        (None, {"qwen": Demand(1, 1), "mistral": NONE}, "qwen", "nothing_hot"),
        (None, {"qwen": Demand(1, 1), "mistral": Demand(3, 1)}, "mistral", "nothing_hot"),
        (None, {"qwen": Demand(2, 9), "mistral": Demand(2, 3)}, "qwen", "nothing_hot"),
        (None, {"qwen": NONE, "mistral": NONE}, None, "no_demand"),
        (None, {}, None, "no_demand"),
        # Demand only for the hot engine itself: nothing to do.
        (hot(), {"qwen": Demand(9, 99), "mistral": NONE}, None, "no_demand"),
        # A start or stop in progress is never cut short, however pressing the demand.
        (hot(ready=False, held=500), {"mistral": Demand(50, 500)}, None, "in_transition"),
        # Dwell: a fresh swap keeps the GPU even when idle and the other side is pressing.
        (hot(held=10), {"mistral": Demand(1, 1)}, None, "dwell"),
        (hot(held=59.9), {"mistral": Demand(40, 45)}, None, "dwell"),
        # Past the dwell, an idle hot engine yields to any demand.
        (hot(held=60), {"mistral": Demand(1, 0.1)}, "mistral", "hot_idle"),
        # A busy hot engine yields only to pressing demand: enough waiting, or waited long.
        (hot(busy=2), {"mistral": Demand(3, 29)}, None, "hot_busy"),
        (hot(busy=2), {"mistral": Demand(4, 1)}, "mistral", "pressing_demand"),
        (hot(busy=1), {"mistral": Demand(1, 30)}, "mistral", "pressing_demand"),
        # Several cold engines: the one with most waiting wins.
        (hot(), {"mistral": Demand(1, 5), "llava": Demand(2, 1)}, "llava", "hot_idle"),
    ],
)
def test_decide_swap(
    current: HotEngine | None, demand: dict[str, Demand], target: str | None, reason: str
) -> None:
    decision = decide_swap(current, demand, POLICY)
    assert (decision.target, decision.reason) == (target, reason)


def test_alternating_requests_do_not_thrash() -> None:
    # One request for each engine in turn, every 5 s: the GPU changes hands at most once per
    # dwell period, not on every request.
    swaps = 0
    holder, held = "qwen", 0.0
    for step in range(60):
        wanted = "mistral" if step % 2 else "qwen"
        demand = {wanted: Demand(1, 0)} if wanted != holder else {}
        decision = decide_swap(hot(holder, held=held), demand, POLICY)
        if decision.target is not None:
            holder, held, swaps = decision.target, 0.0, swaps + 1
        held += 5
    assert swaps <= 60 * 5 / POLICY.min_dwell_s
