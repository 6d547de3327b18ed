"""The auth service's public keys (JWKS), fetched, cached, and refetched on an unknown `kid`.

Tokens are verified locally, so the auth service is not on the request path: the key set is
fetched at first use and again after `max_age_s`; a token whose `kid` is not in it triggers a
refetch (at most every `min_refetch_s`) to pick up a key rotation. If the auth service cannot
be reached, the keys already held keep working.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import structlog
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tiergate_runtime.errors import ServiceUnavailable

__all__ = ["JwksCache"]

_log = structlog.get_logger("tiergate.gateway.jwks")


class JwksCache:
    """Holds the current key set; `get()` fetches it when missing or old."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        max_age_s: float,
        min_refetch_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = url
        self._max_age_s = max_age_s
        self._min_refetch_s = min_refetch_s
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> KeySet:
        """The key set, fetched if there is none or it is older than `max_age_s`."""
        if self._keys is None or self._clock() - self._fetched_at > self._max_age_s:
            await self._refresh(force=False)
        if self._keys is None:
            raise ServiceUnavailable(
                "Sign-in tokens cannot be checked right now; try again shortly.",
                retry_after=2,
                code="auth_unavailable",
            )
        return self._keys

    async def refetch(self) -> bool:
        """Fetch again for an unknown `kid`, unless fetched in the last `min_refetch_s`."""
        return await self._refresh(force=True)

    async def _refresh(self, *, force: bool) -> bool:
        async with self._lock:  # concurrent requests share one fetch
            now = self._clock()
            if now - self._attempted_at < self._min_refetch_s:
                return False
            if not force and self._keys is not None and now - self._fetched_at <= self._max_age_s:
                return False
            self._attempted_at = now
            try:
                response = await self._client.get(self._url)
                response.raise_for_status()
                keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                _log.warning("jwks_fetch_failed", url=self._url, error=type(exc).__name__)
                return False
            self._keys = keys
            self._fetched_at = now
            _log.info("jwks_fetched", kids=[str(key.kid) for key in keys.keys])
            return True
