"""Sessions: refresh-token families in the store, rotated on every use, revoked on reuse.

A sign-in starts a session (`sid`). Its refresh token is `tgr_<sid>.<secret>`; only an HMAC of
the secret is stored. Each refresh replaces the token and remembers the old digest: presenting
an old token again means it was copied, so the whole session is revoked — the thief's and the
user's tokens alike (OAuth 2.0 Security BCP §4.14). Access tokens carry the `sid`; gateways
refuse them once the session is no longer active.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from tiergate_state.hashing import digest
from tiergate_state.keys import KeyLayout
from tiergate_state.store import as_text

__all__ = ["RefreshOutcome", "Session", "SessionStore", "parse_refresh_token"]

_TOKEN = re.compile(r"^tgr_([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")

# KEYS: session hash, used-digests set. ARGV: presented digest, new digest, session ttl ms,
# retention ms of a revoked session.
_ROTATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'unknown'}
end
if state ~= 'active' then
  return {'revoked'}
end
if redis.call('HGET', KEYS[1], 'rt') == ARGV[1] then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[1], 'rt', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  local fields = redis.call('HMGET', KEYS[1], 'sub', 'tier', 'user')
  return {'rotated', fields[1], fields[2], fields[3]}
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'revoked', 'reason', 'refresh_token_reuse')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return {'reused'}
end
return {'unknown'}
"""

# KEYS: session hash, used-digests set. ARGV: reason, retention ms.
_REVOKE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'revoked', 'reason', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

RefreshOutcome = Literal["rotated", "reused", "revoked", "unknown"]


@dataclass(frozen=True, slots=True)
class Session:
    """An active session and its newest refresh token."""

    sid: str
    sub: str
    tier: str
    user_key: str
    refresh_token: str


def parse_refresh_token(token: str) -> tuple[str, str] | None:
    """(sid, secret) of a well-formed refresh token, else None."""
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


class SessionStore:
    """Creates, rotates and revokes sessions."""

    def __init__(
        self,
        store: aioredis.Redis,
        layout: KeyLayout,
        pepper: bytes,
        *,
        refresh_ttl_s: int,
        access_ttl_s: int,
    ) -> None:
        self._store = store
        self._layout = layout
        self._pepper = pepper
        self._ttl_ms = refresh_ttl_s * 1000
        # A revoked session is remembered for as long as its access tokens live, plus margin.
        self._retention_ms = (access_ttl_s + 60) * 1000
        self._rotate = store.register_script(_ROTATE)
        self._revoke = store.register_script(_REVOKE)

    def _digest(self, sid: str, secret: str) -> str:
        return digest(self._pepper, "refresh", sid, secret)

    def _keys(self, sid: str) -> list[str]:
        return [self._layout.session(sid), self._layout.session_used_tokens(sid)]

    async def create(self, sub: str, tier: str, user_key: str) -> Session:
        """Start a session for `sub`; returns it with its first refresh token."""
        sid = secrets.token_urlsafe(16)
        secret = secrets.token_urlsafe(32)
        key = self._layout.session(sid)
        async with self._store.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "sub": sub,
                    "tier": tier,
                    "user": user_key,
                    "state": "active",
                    "rt": self._digest(sid, secret),
                    "created": int(time.time()),
                },
            )
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()
        return Session(sid, sub, tier, user_key, f"tgr_{sid}.{secret}")

    async def rotate(self, token: str) -> tuple[RefreshOutcome, Session | None]:
        """Use a refresh token: a new one if it is the current one; reuse revokes the session."""
        parsed = parse_refresh_token(token)
        if parsed is None:
            return "unknown", None
        sid, secret = parsed
        new_secret = secrets.token_urlsafe(32)
        result = await self._rotate(
            keys=self._keys(sid),
            args=[
                self._digest(sid, secret),
                self._digest(sid, new_secret),
                self._ttl_ms,
                self._retention_ms,
            ],
        )
        outcome: RefreshOutcome = result[0].decode()
        if outcome != "rotated":
            return outcome, None
        sub, tier, user_key = (value.decode() for value in result[1:4])
        return outcome, Session(sid, sub, tier, user_key, f"tgr_{sid}.{new_secret}")

    async def revoke(self, sid: str, reason: str = "logout") -> bool:
        """End session `sid`: its refresh token stops working, gateways refuse its access tokens."""
        return bool(await self._revoke(keys=self._keys(sid), args=[reason, self._retention_ms]))

    async def get(self, sid: str) -> dict[str, str] | None:
        """The session's fields if it is active."""
        fields = await self._store.hgetall(self._layout.session(sid))
        decoded = {as_text(k): as_text(v) for k, v in fields.items()}
        return decoded if decoded.get("state") == "active" else None
