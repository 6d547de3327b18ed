"""`GET /v1/status`: whether each of the caller's models answers now, is waking, asleep or down.

Not counted against a rate limit — a website polls it — and cheap: the body of each tier (and
set of models) is computed at most once per `status_cache_s` per process from what the process
already knows (wake coordinator, breakers, health probes; no backend is asked). The models
listed are those the caller's `/v1/models` lists, so it names no model the caller could not
use: no credential, the anonymous tier's (`cache-control: public`); a session or API key, that
tier's (`private`; a bad credential is a 401, as everywhere). `Vary: Authorization, Cookie`
keeps a shared cache from handing one caller's list to another. The states and fields are
described in `status.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response, route
from litestar.handlers import HTTPRouteHandler

from tiergate_gateway.breaker import Breakers
from tiergate_gateway.gate import Gate
from tiergate_gateway.settings import GatewaySettings
from tiergate_gateway.status import (
    BackendView,
    ListedModel,
    StatusList,
    StatusModel,
    model_statuses,
    status_models,
)
from tiergate_gateway.wake import WakeCoordinator
from tiergate_runtime.edge import request_record

__all__ = ["StatusPage", "status_route"]

_encode = msgspec.json.Encoder().encode


class _Cached:
    __slots__ = ("body", "models", "until")

    def __init__(self, models: list[StatusModel]) -> None:
        self.models = models
        self.body = b""
        self.until = float("-inf")


class StatusPage:
    """The encoded status bodies of one process, each recomputed at most every `cache_s`."""

    def __init__(
        self,
        settings: GatewaySettings,
        wake: WakeCoordinator,
        breakers: Breakers,
        healthy: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`healthy(backend)`: its last health probe passed (True where it has none)."""
        self._settings = settings
        self._wake = wake
        self._breakers = breakers
        self._healthy = healthy
        self._clock = clock
        self._contact = settings.contact
        self._cache_s = settings.status_cache_s
        self._pages: dict[tuple[str, frozenset[str]], _Cached] = {}

    def body(self, tier: str, allowed: frozenset[str]) -> bytes:
        """The current body for callers of `tier` who may use `allowed` (`*`: all; cached)."""
        page = self._page(tier, allowed)
        now = self._clock()
        if now >= page.until:
            names = sorted({m.backend for m in page.models})
            views = {name: self._view(name) for name in names}
            page.body = _encode(
                StatusList(data=model_statuses(page.models, views, now), contact=self._contact)
            )
            page.until = now + self._cache_s
        return page.body

    def _page(self, tier: str, allowed: frozenset[str]) -> _Cached:
        page = self._pages.get((tier, allowed))
        if page is None:
            listed = [
                ListedModel(m.id, m.backend, m.routed)
                for m in self._settings.models
                if "*" in allowed or m.id in allowed
            ]
            page = _Cached(status_models(listed, self._settings.routes, tier))
            # Per-key model lists make the keys many in theory; in practice a handful.
            if len(self._pages) >= 256:
                self._pages.clear()
            self._pages[(tier, allowed)] = page
        return page

    def _view(self, backend: str) -> BackendView:
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


def status_route(page: StatusPage, gate: Gate, cache_s: float) -> HTTPRouteHandler:
    """The `GET`/`HEAD /v1/status` handler (other methods: the app's 405 envelope)."""
    max_age = max(int(cache_s), 0)

    @route("/v1/status", http_method=["GET", "HEAD"], include_in_schema=False)
    async def status(request: Request[Any, Any, Any]) -> Response[bytes]:
        principal = await gate.principal(request.scope, request_record(request.scope))
        policy = gate.policy(principal)
        scope = "public" if principal.kind == "anonymous" else "private"
        return Response(
            page.body(principal.tier, policy.models),
            media_type="application/json",
            headers={
                "cache-control": f"{scope}, max-age={max_age}",
                "vary": "authorization, cookie",
            },
        )

    return status
