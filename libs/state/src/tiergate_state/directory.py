"""Reading identity records from the store: API keys by digest, whether a session is active.

The auth service writes these records (see `keys.py` for where); gateways read them here, so
that a key or a session can be checked without a call to the auth service.
"""

from __future__ import annotations

import time

import msgspec
import redis.asyncio as aioredis

from tiergate_proto.identity import ApiKeyRecord
from tiergate_state.keys import KeyLayout

__all__ = ["SESSION_ACTIVE", "StoreDirectory"]

SESSION_ACTIVE = b"active"
_decode_key = msgspec.json.Decoder(ApiKeyRecord).decode


class StoreDirectory:
    """Identity records in a store shared with the auth service."""

    def __init__(self, store: aioredis.Redis, layout: KeyLayout) -> None:
        self.store = store
        self.layout = layout

    async def api_key(self, digest: str) -> ApiKeyRecord | None:
        """The record of the key with this digest, or None (unknown or revoked)."""
        raw = await self.store.get(self.layout.api_key(digest))
        if raw is None:
            return None
        return _decode_key(raw)

    async def touch_api_key(self, digest: str, now: float | None = None) -> None:
        """Record that the key was used (kept as long as the key)."""
        when = int(time.time() if now is None else now)
        await self.store.set(self.layout.api_key_used(digest), when)

    async def session_active(self, sid: str) -> bool:
        """Whether tokens of session `sid` still count (not logged out, revoked or expired)."""
        state = await self.store.hget(self.layout.session(sid), "state")
        return state == SESSION_ACTIVE
