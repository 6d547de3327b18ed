"""Gateway readiness: the backends it needs answer their health check.

A background task probes each backend's `health_url` every `health_probe_interval_s`; `/readyz`
reads the last result instead of probing per call (a load balancer may ask often). Backends
without a health URL, or with `required_for_ready = false`, do not hold readiness back.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import structlog

from tiergate_gateway.settings import GatewaySettings

__all__ = ["BackendProber"]

_log = structlog.get_logger("tiergate.gateway.readiness")
_PROBE_TIMEOUT_S = 2.0


class BackendProber:
    """Periodic health probes of the configured backends."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._targets = {
            name: b.health_url
            for name, b in settings.backends.items()
            if b.health_url is not None and b.required_for_ready
        }
        self._interval = settings.health_probe_interval_s
        self.healthy: dict[str, bool] = dict.fromkeys(self._targets, False)
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def not_ready_reason(self) -> str | None:
        """None when every required backend is healthy, else which are not."""
        down = sorted(name for name, ok in self.healthy.items() if not ok)
        return f"Backends not ready: {', '.join(down)}." if down else None

    async def probe_once(self) -> None:
        """Probe every backend now, concurrently."""
        names = list(self._targets)
        results = await asyncio.gather(*(self._probe(self._targets[n]) for n in names))
        for name, ok in zip(names, results, strict=True):
            if ok != self.healthy.get(name):
                _log.info("backend_health", backend=name, healthy=ok)
            self.healthy[name] = ok

    async def _probe(self, url: str) -> bool:
        assert self._client is not None
        try:
            return (await self._client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False
        except Exception:  # the prober must outlive any surprise, or readiness would freeze
            _log.exception("backend_probe_failed", url=url)
            return False

    async def _loop(self) -> None:
        while True:
            await self.probe_once()
            # Probe quickly until ready, then at the configured interval.
            await asyncio.sleep(self._interval if self.not_ready_reason() is None else 0.5)

    def start(self) -> None:
        """Start probing in the background."""
        self._client = httpx.AsyncClient(timeout=_PROBE_TIMEOUT_S)
        if self._targets:
            self._task = asyncio.create_task(self._loop(), name="backend-prober")

    async def stop(self) -> None:
        """Stop probing and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
