"""Users, found by the HMAC of their e-mail address; created on first sign-in.

A user's record holds their id (the token `sub`), address, tier and the `store_chats`
consent. Nothing else about a person is kept.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from tiergate_state.keys import KeyLayout
from tiergate_state.store import byte_fields

__all__ = ["User", "UserStore"]


@dataclass(frozen=True, slots=True)
class User:
    """A signed-up user."""

    key: str
    """The e-mail digest that finds the record."""
    id: str
    email: str
    tier: str
    store_chats: bool


class UserStore:
    """Reads and writes user records."""

    def __init__(self, store: aioredis.Redis, layout: KeyLayout, default_tier: str) -> None:
        self._store = store
        self._layout = layout
        self._tier = default_tier

    async def get_or_create(self, email_digest: str, email: str) -> User:
        """The user with this address, created (tier: the default) if new; atomic per address."""
        key = self._layout.user(email_digest)
        candidate = {
            "id": str(uuid.uuid4()),
            "email": email,
            "tier": self._tier,
            "store_chats": "0",
            "created": str(int(time.time())),
        }
        async with self._store.pipeline(transaction=True) as pipe:
            for field, value in candidate.items():
                pipe.hsetnx(key, field, value)
            pipe.hgetall(key)
            results = await pipe.execute()
        user = _user(email_digest, byte_fields(results[-1]))
        await self.index(user)
        return user

    def _id_key(self, user_id: str) -> str:
        return f"{self._layout.prefix}:userid:{user_id}"

    async def index(self, user: User) -> None:
        """Map the user's id to their record (written at every sign-in, refresh and consent
        change, so users from before the index get one at their next use)."""
        await self._store.set(self._id_key(user.id), user.key)

    def _pending_key(self) -> str:
        return f"{self._layout.prefix}:erase_pending"

    async def erasure_pending(self, user_id: str, withdrawn_at: int) -> None:
        """Note a withdrawal whose erasure is not done yet (the purge finishes it)."""
        await self._store.hset(self._pending_key(), user_id, str(withdrawn_at))

    async def erasure_done(self, user_id: str) -> None:
        """The withdrawal's erasure is done."""
        await self._store.hdel(self._pending_key(), user_id)

    async def pending_erasures(self) -> dict[str, int]:
        """User id → time of a withdrawal whose chats are not erased yet."""
        raw = byte_fields(await self._store.hgetall(self._pending_key()))
        return {key.decode(): int(value) for key, value in raw.items()}

    async def by_id(self, user_id: str) -> User | None:
        """The user with this id (a token's `sub`), if indexed."""
        digest = await self._store.get(self._id_key(user_id))
        if digest is None:
            return None
        user = await self.get(digest.decode() if isinstance(digest, bytes) else str(digest))
        return user if user is not None and user.id == user_id else None

    async def get(self, email_digest: str) -> User | None:
        """The user with this digest, if any."""
        fields = byte_fields(await self._store.hgetall(self._layout.user(email_digest)))
        return _user(email_digest, fields) if fields else None

    async def set_store_chats(self, email_digest: str, store_chats: bool) -> User | None:
        """Record the user's consent; None if there is no such user."""
        key = self._layout.user(email_digest)
        async with self._store.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.hgetall(key)
            exists, raw = await pipe.execute()
        fields = byte_fields(raw)
        if not exists:
            return None
        await self._store.hset(key, "store_chats", "1" if store_chats else "0")
        fields[b"store_chats"] = b"1" if store_chats else b"0"
        return _user(email_digest, fields)


def _user(email_digest: str, fields: dict[bytes, bytes]) -> User:
    return User(
        key=email_digest,
        id=fields[b"id"].decode(),
        email=fields[b"email"].decode(),
        tier=fields[b"tier"].decode(),
        store_chats=fields.get(b"store_chats") == b"1",
    )
