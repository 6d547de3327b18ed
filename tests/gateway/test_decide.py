"""`decide()` as a table: plan, backend states, breakers and now → Decision (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tiergate_gateway.breaker import BreakerSnapshot
from tiergate_gateway.catalog import Route
from tiergate_gateway.routing.decide import BackendState, Reason, decide
from tiergate_gateway.routing.router import Plan

GPU = Route(alias="large", backend="gpu", engine_model="qwen")
CPU = Route(alias="small", backend="cpu", engine_model="smollm2")
SPARE = Route(alias="spare", backend="spare", engine_model="smollm2")

ASLEEP = BackendState(sleeps=True, ready=False)
WOKEN = BackendState(sleeps=True, ready=True)
OPEN = BreakerSnapshot(open_until=100.0)  # open before t=100, half-open from then on
PROBING = BreakerSnapshot(open_until=10.0, probing=True)
HALF_OPEN = BreakerSnapshot(open_until=10.0)


@dataclass(frozen=True)
class Row:
    name: str
    plan: Plan
    backends: dict[str, BackendState]
    breakers: dict[str, BreakerSnapshot]
    now: float
    reason: Reason
    attempts: tuple[Route, ...]
    waking: Route | None = None
    hold_s: float = 0.0
    force_first: bool = False
    upgrade: bool = False


CPU_FIRST = Plan([GPU, CPU], "cpu_first")
HOLD = Plan([GPU, CPU], "hold", hold_s=20)
NAMED = Plan([GPU])  # a model asked for by name: hold 0 s

ROWS = [
    Row("awake, closed", CPU_FIRST, {}, {}, 0, "first", (GPU, CPU)),
    Row("woken GPU first", CPU_FIRST, {"gpu": WOKEN}, {}, 0, "first", (GPU, CPU)),
    Row("first open → next", CPU_FIRST, {}, {"gpu": OPEN}, 50, "breaker_open", (CPU,)),
    Row("cooldown over → probe", CPU_FIRST, {}, {"gpu": OPEN}, 100, "first", (GPU, CPU)),
    Row("probe out → next", CPU_FIRST, {}, {"gpu": PROBING}, 50, "breaker_open", (CPU,)),
    Row("half-open, probe free", CPU_FIRST, {}, {"gpu": HALF_OPEN}, 50, "first", (GPU, CPU)),
    Row(
        "all open → try anyway",
        CPU_FIRST,
        {},
        {"gpu": OPEN, "cpu": OPEN},
        50,
        "all_open",
        (GPU, CPU),
        force_first=True,
    ),
    Row(
        "asleep, cpu_first",
        CPU_FIRST,
        {"gpu": ASLEEP},
        {},
        0,
        "cpu_first",
        (CPU,),
        waking=GPU,
        upgrade=True,
    ),
    Row(
        "asleep, cpu_first, cpu open → cpu anyway",
        CPU_FIRST,
        {"gpu": ASLEEP},
        {"cpu": OPEN},
        50,
        "all_open",
        (CPU,),
        waking=GPU,
        force_first=True,
        upgrade=True,
    ),
    Row(
        "asleep, cpu_first, spare skips open cpu",
        Plan([GPU, CPU, SPARE], "cpu_first"),
        {"gpu": ASLEEP},
        {"cpu": OPEN},
        50,
        "cpu_first",
        (SPARE,),
        waking=GPU,
        upgrade=True,
    ),
    Row("asleep, hold", HOLD, {"gpu": ASLEEP}, {}, 0, "hold", (GPU,), waking=GPU, hold_s=20),
    Row("asleep, asked by name", NAMED, {"gpu": ASLEEP}, {}, 0, "waking", (), waking=GPU),
    Row(
        "asleep, cpu_first, nothing else",
        Plan([GPU], "cpu_first"),
        {"gpu": ASLEEP},
        {},
        0,
        "waking",
        (),
        waking=GPU,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_decide(row: Row) -> None:
    decision = decide(row.plan, row.backends, row.breakers, row.now)
    assert decision.reason == row.reason
    assert decision.attempts == row.attempts
    assert decision.waking == row.waking
    assert decision.hold_s == row.hold_s
    assert decision.force_first == row.force_first
    assert decision.upgrade == row.upgrade
    if not decision.attempts:
        assert decision.retry_after_s >= 1


def test_decide_looks_without_claiming() -> None:
    """The same inputs twice give the same decision: nothing was taken by looking."""
    inputs = (CPU_FIRST, {"gpu": WOKEN}, {"gpu": HALF_OPEN}, 50.0)
    assert decide(*inputs) == decide(*inputs)
