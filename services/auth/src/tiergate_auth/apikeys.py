"""API keys for agents: created once, stored only as an HMAC, listed and revoked by id.

A key is `tg_` + 32 random bytes (base64url). The store keeps the record under the key's
HMAC; gateways find it by computing the same HMAC. Revoking deletes the record, and gateways
cache a lookup for at most a few seconds, so revocation reaches every gateway within 5 s.
"""

from __future__ import annotations

import secrets
import time

import msgspec
import redis.asyncio as aioredis

from tiergate_proto.identity import ApiKeyCreate, ApiKeyInfo, ApiKeyRecord
from tiergate_state.hashing import digest
from tiergate_state.keys import KeyLayout
from tiergate_state.store import as_text

__all__ = ["KEY_PREFIX", "ApiKeyStore", "key_digest"]

KEY_PREFIX = "tg_"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ApiKeyRecord).decode


def key_digest(pepper: bytes, key: str) -> str:
    """The HMAC under which a key's record is stored (gateways compute the same)."""
    return digest(pepper, "apikey", key)


class ApiKeyStore:
    """Creates, lists, looks up and revokes keys."""

    def __init__(self, store: aioredis.Redis, layout: KeyLayout, pepper: bytes) -> None:
        self._store = store
        self._layout = layout
        self._pepper = pepper

    async def create(self, request: ApiKeyCreate) -> tuple[str, ApiKeyInfo]:
        """A new key and its info; the key itself is never stored and cannot be shown again."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            id="key_" + secrets.token_hex(8),
            owner=request.owner,
            tier=request.tier,
            limits=request.limits,
            description=request.description,
            created_at=int(time.time()),
        )
        key_hash = key_digest(self._pepper, key)
        # Record first, then the index: a crash in between leaves a working key that is not
        # listed, never a listed key that does not work.
        await self._store.set(self._layout.api_key(key_hash), _encode(record))
        await self._store.hset(self._layout.api_key_index(), record.id, key_hash)
        return key, _info(record, None)

    async def list(self) -> list[ApiKeyInfo]:
        """Every key, oldest first."""
        index = await self._store.hgetall(self._layout.api_key_index())
        if not index:
            return []
        digests = [as_text(value) for value in index.values()]
        names = [self._layout.api_key(d) for d in digests]
        names += [self._layout.api_key_used(d) for d in digests]
        values = await self._store.mget(names)
        records, used = values[: len(digests)], values[len(digests) :]
        infos = [
            _info(_decode(raw), int(last) if last is not None else None)
            for raw, last in zip(records, used, strict=True)
            if raw is not None
        ]
        return sorted(infos, key=lambda info: (info.created_at, info.id))

    async def revoke(self, key_id: str) -> bool:
        """Delete the key with this id; False if there is none."""
        key_hash = await self._store.hget(self._layout.api_key_index(), key_id)
        if key_hash is None:
            return False
        key_hash_text = as_text(key_hash)
        # Record first: from this moment no gateway finds the key (caches aside).
        await self._store.delete(
            self._layout.api_key(key_hash_text), self._layout.api_key_used(key_hash_text)
        )
        await self._store.hdel(self._layout.api_key_index(), key_id)
        return True


def _info(record: ApiKeyRecord, last_used: int | None) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=record.id,
        owner=record.owner,
        tier=record.tier,
        limits=record.limits,
        description=record.description,
        created_at=record.created_at,
        last_used_at=last_used,
    )
