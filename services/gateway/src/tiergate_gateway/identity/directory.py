"""Looking up API keys and sessions: in the shared store, or asking the auth service; cached.

With a shared store (`store.url`) the gateway reads the records the auth service wrote. Without
one (the embedded default) it asks the auth service's internal API. Either way answers are
cached for `cache_ttl_s` (≤ 5 s: a revoked key or ended session stops working everywhere within
that) and kept as a stale fallback while the source is unreachable. A lookup that cannot be
answered at all is a 503, never a silent downgrade and never a 500.

A burst with a credential that is not cached yet costs one lookup: concurrent lookups of one
key digest (or session id) are coalesced (`coalesce.py`). Lookups of many distinct new keys at
once (busy agents after a restart) queue for a bounded number of connections to the auth
service with a generous wait, so that a busy gateway does not answer 503 while auth is healthy
(issue 10, defect 3); only an auth service that cannot answer does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import httpx
import msgspec
import structlog
from redis.exceptions import RedisError

from tiergate_gateway.identity.cache import StaleCache
from tiergate_gateway.identity.coalesce import Coalescer
from tiergate_proto.identity import ApiKeyRecord, KeyLookup, SessionState
from tiergate_runtime.errors import ServiceUnavailable
from tiergate_state.directory import StoreDirectory

__all__ = [
    "LOOKUP_CONNECTIONS",
    "LOOKUP_QUEUE_WAIT_S",
    "AuthServiceDirectory",
    "CachedDirectory",
    "Directory",
    "LookupFailed",
]

_log = structlog.get_logger("tiergate.gateway.identity")
_encode = msgspec.json.Encoder().encode

LOOKUP_CONNECTIONS = 16
"""Lookups in flight to the auth service at once; the lookup client's pool is this size, so a
lookup never waits in httpx's pool, whose bookkeeping costs connections x waiting requests on
every event (1,000 lookups queued on the old shared 100-connection pool, 2 s pool timeout: all
1,000 requests were 503 after 18 s). Measured with gateway and auth as processes and 1,000
concurrent requests with 1,000 distinct new keys: 8 slots 1.5 s, 16 1.7 s, 32 3.0 s, 64 3.7 s,
every request answered; 16 leaves headroom for an auth service further away than localhost."""
LOOKUP_QUEUE_WAIT_S = 10.0
"""How long a lookup may wait for one of those connections before it is a 503. Generous: the
queue drains at the auth service's rate (~600 new keys a second, measured above), and fails
fast when the service is down (refused connections)."""


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

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        token: str,
        *,
        max_concurrent: int = LOOKUP_CONNECTIONS,
        queue_wait_s: float = LOOKUP_QUEUE_WAIT_S,
    ) -> None:
        """`client` should be this directory's own, with a pool of at least `max_concurrent`
        connections: lookups then wait here, for `queue_wait_s`, instead of in httpx's pool for
        its (short) pool timeout."""
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._queue_wait_s = queue_wait_s

    async def _send(self, method: str, path: str, content: bytes | None = None) -> httpx.Response:
        """One request to the internal API, queued for a connection; LookupFailed if it fails."""
        try:
            async with asyncio.timeout(self._queue_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise LookupFailed("queue wait timed out") from None
        try:
            return await self._client.request(
                method, f"{self._base}{path}", content=content, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise LookupFailed(type(exc).__name__) from exc
        finally:
            self._slots.release()

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        """See `Directory`; the auth service also records the use."""
        response = await self._send(
            "POST", "/v1/internal/keys/lookup", _encode(KeyLookup(digest=digest))
        )
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
        response = await self._send("GET", f"/v1/internal/sessions/{sid}")
        if response.status_code != 200:
            raise LookupFailed(f"status {response.status_code}")
        try:
            return msgspec.json.decode(response.content, type=SessionState).active
        except msgspec.DecodeError as exc:
            raise LookupFailed("invalid answer") from exc


class CachedDirectory:
    """A `Directory` with fresh and stale caching; unanswerable lookups become 503s.

    Concurrent misses for one key digest (or session id) share one lookup (`Coalescer`): its
    answer, or its failure, which each waiter then handles as its own (stale answer or 503).
    """

    def __init__(self, source: Directory, ttl_s: float, stale_s: float) -> None:
        self._source = source
        self._keys: StaleCache[str, ApiKeyRecord | None] = StaleCache(ttl_s, max(ttl_s, stale_s))
        self._sessions: StaleCache[str, bool] = StaleCache(ttl_s, max(ttl_s, stale_s))
        self._key_lookups: Coalescer[str, ApiKeyRecord | None] = Coalescer("key")
        self._session_lookups: Coalescer[str, bool] = Coalescer("session")

    @property
    def lookups_in_flight(self) -> int:
        """Key and session lookups running now (at most one per key digest or session id)."""
        return len(self._key_lookups) + len(self._session_lookups)

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        """The key's record (None: unknown or revoked); stale while the source is down."""
        hit, record = self._keys.fresh(digest)
        if hit:
            return record
        try:
            return await self._key_lookups.run(digest, lambda: self._look_up_key(digest))
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

    async def _look_up_key(self, digest: str) -> ApiKeyRecord | None:
        """The one lookup of a key that concurrent misses share: ask, cache, record the use."""
        record = await self._source.api_key(digest)
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
            return await self._session_lookups.run(sid, lambda: self._look_up_session(sid))
        except LookupFailed as exc:
            hit, active = self._sessions.stale(sid)
            _log.warning("session_lookup_failed", error=str(exc), stale=hit)
            return bool(active) if hit else True

    async def _look_up_session(self, sid: str) -> bool:
        """The one lookup of a session that concurrent misses share."""
        active = await self._source.session_active(sid)
        self._sessions.put(sid, active)
        return active
