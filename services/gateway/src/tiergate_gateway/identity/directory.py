"""Looking up API keys and sessions: in the shared store, or asking the auth service; cached.

With a shared store (`store.url`) the gateway reads the records the auth service wrote. Without
one (the embedded default) it asks the auth service's internal API. Either way answers are
cached for `cache_ttl_s` (≤ 5 s: a revoked key or ended session stops working everywhere within
that) and kept as a stale fallback while the source is unreachable. A lookup that cannot be
answered at all is a 503, never a silent downgrade and never a 500.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import httpx
import msgspec
import structlog
from redis.exceptions import RedisError

from tiergate_gateway.identity.cache import StaleCache
from tiergate_proto.identity import ApiKeyRecord, KeyLookup, SessionState
from tiergate_runtime.errors import ServiceUnavailable
from tiergate_state.directory import StoreDirectory

__all__ = ["AuthServiceDirectory", "CachedDirectory", "Directory", "LookupFailed"]

_log = structlog.get_logger("tiergate.gateway.identity")
_encode = msgspec.json.Encoder().encode


class LookupFailed(Exception):
    """The source of identity records could not be reached."""


class Directory(Protocol):
    """Where key and session records come from."""

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        """The record of the key with this digest, or None if there is none."""
        ...

    async def touch_api_key(self, digest: str) -> None:
        """Record that the key was used."""
        ...

    async def session_active(self, sid: str) -> bool:
        """Whether the session's tokens still count."""
        ...


class StoreSource:
    """`Directory` over the shared store (`tiergate_state.directory`), errors as LookupFailed."""

    def __init__(self, directory: StoreDirectory) -> None:
        self._directory = directory

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        """See `Directory`."""
        try:
            return await self._directory.api_key(digest)
        except (RedisError, OSError) as exc:
            raise LookupFailed(type(exc).__name__) from exc

    async def touch_api_key(self, digest: str) -> None:
        """See `Directory`."""
        try:
            await self._directory.touch_api_key(digest)
        except (RedisError, OSError) as exc:
            raise LookupFailed(type(exc).__name__) from exc

    async def session_active(self, sid: str) -> bool:
        """See `Directory`."""
        try:
            return await self._directory.session_active(sid)
        except (RedisError, OSError) as exc:
            raise LookupFailed(type(exc).__name__) from exc


class AuthServiceDirectory:
    """`Directory` asking the auth service's internal API (no shared store)."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, token: str) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        """See `Directory`; the auth service also records the use."""
        try:
            response = await self._client.post(
                f"{self._base}/v1/internal/keys/lookup",
                content=_encode(KeyLookup(digest=digest)),
                headers=self._headers,
            )
        except httpx.HTTPError as exc:
            raise LookupFailed(type(exc).__name__) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise LookupFailed(f"status {response.status_code}")
        try:
            return msgspec.json.decode(response.content, type=ApiKeyRecord)
        except msgspec.DecodeError as exc:
            raise LookupFailed("invalid answer") from exc

    async def touch_api_key(self, digest: str) -> None:
        """Nothing to do: the lookup itself recorded the use."""

    async def session_active(self, sid: str) -> bool:
        """See `Directory`."""
        try:
            response = await self._client.get(
                f"{self._base}/v1/internal/sessions/{sid}", headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise LookupFailed(type(exc).__name__) from exc
        if response.status_code != 200:
            raise LookupFailed(f"status {response.status_code}")
        try:
            return msgspec.json.decode(response.content, type=SessionState).active
        except msgspec.DecodeError as exc:
            raise LookupFailed("invalid answer") from exc


class CachedDirectory:
    """A `Directory` with fresh and stale caching; unanswerable lookups become 503s."""

    def __init__(self, source: Directory, ttl_s: float, stale_s: float) -> None:
        self._source = source
        self._keys: StaleCache[str, ApiKeyRecord | None] = StaleCache(ttl_s, max(ttl_s, stale_s))
        self._sessions: StaleCache[str, bool] = StaleCache(ttl_s, max(ttl_s, stale_s))

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        """The key's record (None: unknown or revoked); stale while the source is down."""
        hit, record = self._keys.fresh(digest)
        if hit:
            return record
        try:
            record = await self._source.api_key(digest)
        except LookupFailed as exc:
            hit, record = self._keys.stale(digest)
            if hit and record is not None:
                _log.warning("key_lookup_stale", error=str(exc))
                return record
            _log.warning("key_lookup_failed", error=str(exc))
            raise ServiceUnavailable(
                "API keys cannot be checked right now; try again shortly.",
                retry_after=2,
                code="auth_unavailable",
            ) from None
        self._keys.put(digest, record)
        if record is not None:
            with contextlib.suppress(LookupFailed):  # last-used is informational
                await self._source.touch_api_key(digest)  # at most once per ttl per key
        return record

    async def session_active(self, sid: str) -> bool:
        """Whether the session still counts.

        If the source is unreachable and there is no earlier answer, the session counts: the
        token's signature and expiry were verified locally, and refusing every signed-in user
        during a store outage would be worse than honouring a logout a few minutes late.
        """
        hit, active = self._sessions.fresh(sid)
        if hit:
            return bool(active)
        try:
            active = await self._source.session_active(sid)
        except LookupFailed as exc:
            hit, active = self._sessions.stale(sid)
            _log.warning("session_lookup_failed", error=str(exc), stale=hit)
            return bool(active) if hit else True
        self._sessions.put(sid, active)
        return active
