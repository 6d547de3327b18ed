"""The connect race of httpcore over anyio, mapped to a refused connection (a 503)."""

from __future__ import annotations

import httpx

from tiergate_runtime.upstream import TRANSPORT_ERRORS, as_transport_error, transport_error


def test_the_connect_race_is_a_refused_connection() -> None:
    race = AttributeError("'NoneType' object has no attribute 'getpeername'")
    assert isinstance(race, TRANSPORT_ERRORS)
    mapped = as_transport_error(race)
    assert isinstance(mapped, httpx.ConnectError)
    error, kind = transport_error("engine", mapped)
    assert (error.status, kind) == (503, "connect")
    assert error.retry_after is not None
    timeout = httpx.ReadTimeout("slow")
    assert as_transport_error(timeout) is timeout
