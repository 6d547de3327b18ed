"""`GET /v1/status`: whether each public model answers now, is waking, asleep or down.

Public and the same for every caller: no credential is read and nothing is counted against
a rate limit — a website polls it, and each poll costs a dictionary lookup, since the body is
computed at most once per `status_cache_s` per process from what the process already knows
(wake coordinator, breakers, health probes; no backend is asked). The models listed are those
an anonymous caller's `/v1/models` lists, so it names no model that is not public already.
The states and fields are described in `status.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response, route
from litestar.handlers import HTTPRouteHandler

from tiergate_gateway.breaker import Breakers
from tiergate_gateway.settings import GatewaySettings
from tiergate_gateway.status import BackendView, StatusList, StatusModel, model_statuses
from tiergate_gateway.status import status_models as _status_models
from tiergate_gateway.wake import WakeCoordinator

__all__ = ["StatusPage", "status_route"]

_encode = msgspec.json.Encoder().encode


class StatusPage:
    """The encoded status body of one process, recomputed at most every `cache_s`."""

    def __init__(
        self,
        settings: GatewaySettings,
        wake: WakeCoordinator,
        breakers: Breakers,
        healthy: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`healthy(backend)`: its last health probe passed (True where it has none)."""
        allowed = settings.tiers["anonymous"].models
        public = [(m.id, m.backend) for m in settings.models if "*" in allowed or m.id in allowed]
        self.models: list[StatusModel] = _status_models(public, settings.routes)
        self._backends = sorted({m.backend for m in self.models})
        self._wake = wake
        self._breakers = breakers
        self._healthy = healthy
        self._clock = clock
        self._contact = settings.contact
        self._cache_s = settings.status_cache_s
        self._body = b""
        self._until = float("-inf")

    def body(self) -> bytes:
        """The current body (cached)."""
        now = self._clock()
        if now >= self._until or not self._body:
            views = {name: self._view(name, now) for name in self._backends}
            self._body = _encode(
                StatusList(data=model_statuses(self.models, views, now), contact=self._contact)
            )
            self._until = now + self._cache_s
        return self._body

    def _view(self, backend: str, now: float) -> BackendView:
        breakers = self._breakers
        refused = not breakers.snapshot(backend).allows(breakers.now())
        wake = self._wake.view(backend)
        if wake is None:
            return BackendView(healthy=self._healthy(backend), breaker_open=refused)
        return BackendView(
            sleeps=True,
            ready=wake.ready,
            healthy=self._healthy(backend),
            breaker_open=refused,
            waking_since=wake.waking_since,
            wake_s=wake.wake_s,
            wake_failed=wake.failed,
        )


def status_route(page: StatusPage, cache_s: float) -> HTTPRouteHandler:
    """The `GET`/`HEAD /v1/status` handler (other methods: the app's 405 envelope)."""
    cache_control = f"public, max-age={max(int(cache_s), 0)}"

    @route("/v1/status", http_method=["GET", "HEAD"], sync_to_thread=False, include_in_schema=False)
    def status(request: Request[Any, Any, Any]) -> Response[bytes]:
        del request
        return Response(
            page.body(), media_type="application/json", headers={"cache-control": cache_control}
        )

    return status
