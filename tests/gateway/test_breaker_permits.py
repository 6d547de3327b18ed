"""Breaker permits as a table over an injected clock: every ending settles the permit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tiergate_gateway.breaker import BreakerPermit, Breakers


def opened(now: list[float]) -> Breakers:
    """Breakers whose `gpu` breaker has just opened (threshold 1, cooldown 10 s)."""
    breakers = Breakers(threshold=1, cooldown_s=10, clock=lambda: now[0])
    permit = breakers.acquire("gpu")
    assert permit is not None
    permit.failure()
    return breakers


def test_closed_hands_out_permits_freely() -> None:
    breakers = Breakers(threshold=2, cooldown_s=10)
    permits = [breakers.acquire("cpu") for _ in range(3)]
    assert all(p is not None and not p.probe for p in permits)


def test_open_refuses_until_the_cooldown_then_one_probe() -> None:
    now = [0.0]
    breakers = opened(now)
    assert breakers.state("gpu") == "open"
    assert breakers.acquire("gpu") is None
    now[0] = 10.0
    assert breakers.state("gpu") == "half_open"
    probe = breakers.acquire("gpu")
    assert probe is not None
    assert probe.probe
    assert breakers.acquire("gpu") is None  # one probe at a time
    probe.success()
    assert breakers.state("gpu") == "closed"


def test_looking_claims_nothing() -> None:
    """Two candidates, the first half-open and never tried: its probe stays available."""
    now = [0.0]
    breakers = opened(now)
    now[0] = 10.0
    for _ in range(3):
        snapshot = breakers.snapshot("gpu")
        assert snapshot.allows(breakers.now())
    assert breakers.acquire("gpu") is not None


ENDINGS: list[tuple[str, Callable[[BreakerPermit], None], str, bool]] = [
    # ending, how it settles, state after, whether a new probe is available at once
    ("success", BreakerPermit.success, "closed", True),
    ("failure (5xx before the first byte)", BreakerPermit.failure, "open", False),
    ("the client's 4xx", BreakerPermit.neutral, "half_open", True),
    ("shed before the engine saw it", BreakerPermit.neutral, "half_open", True),
    ("client gone / cancelled (close in finally)", BreakerPermit.close, "half_open", True),
]


@pytest.mark.parametrize(("ending", "settle", "state", "probe_again"), ENDINGS)
def test_every_ending_settles_the_probe(
    ending: str, settle: Callable[[BreakerPermit], None], state: str, probe_again: bool
) -> None:
    del ending
    now = [0.0]
    breakers = opened(now)
    now[0] = 10.0
    probe = breakers.acquire("gpu")
    assert probe is not None
    settle(probe)
    assert breakers.state("gpu") == state
    assert (breakers.acquire("gpu") is not None) == probe_again


def test_a_permit_settles_once() -> None:
    now = [0.0]
    breakers = opened(now)
    now[0] = 10.0
    probe = breakers.acquire("gpu")
    assert probe is not None
    probe.success()
    probe.failure()  # a second ending is ignored
    probe.close()
    assert breakers.state("gpu") == "closed"


def test_force_gives_a_permit_when_open_and_it_counts() -> None:
    now = [0.0]
    breakers = opened(now)
    forced = breakers.acquire("gpu", force=True)
    assert forced is not None
    assert not forced.probe
    forced.success()
    assert breakers.state("gpu") == "closed"
