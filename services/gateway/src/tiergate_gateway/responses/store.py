"""Stored Responses-API responses: what `previous_response_id` continues, per subject, with a TTL.

A response created with `store` (OpenAI's default) is kept in the shared store under its id
(`tg:resp:<id>`, a JSON `StoredResponse`) for `responses.ttl_s`: the conversation up to and
including it, and who owns it. Only the owner (the same tier and subject) may continue it;
for anyone else it does not exist (404, as OpenAI answers), so an id that leaked says nothing.
A store that cannot be reached fails the request that needs it with 503 + Retry-After; it
never silently drops the conversation.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from tiergate_proto.openai import StoredResponse
from tiergate_runtime.errors import NotFound, ServiceUnavailable
from tiergate_state.keys import KeyLayout

__all__ = ["ResponseStore"]

_log = structlog.get_logger("tiergate.gateway.responses")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(StoredResponse).decode


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Stored responses cannot be reached right now; retry shortly.",
        retry_after=2,
        code="store_unavailable",
    )


class ResponseStore:
    """Responses kept in the shared store."""

    def __init__(self, store: aioredis.Redis, keys: KeyLayout, ttl_s: float) -> None:
        self._store = store
        self._keys = keys
        self._ttl_ms = int(ttl_s * 1000)

    async def load(self, owner: str, response_id: str, param: str) -> StoredResponse:
        """The stored response `owner` may continue; NotFound (404) otherwise."""
        try:
            raw = await self._store.get(self._keys.response(response_id))
        except (RedisError, OSError) as exc:
            _log.warning("response_store_unavailable", error=type(exc).__name__)
            raise _unavailable() from exc
        stored = None
        if raw is not None:
            try:
                stored = _decode(raw)
            except msgspec.DecodeError:
                _log.warning("stored_response_unreadable", response_id=response_id[:64])
        if stored is None or stored.subject != owner:
            raise NotFound(
                f"No response with id '{response_id[:64]}' was found.",
                param=param,
                code="response_not_found",
            )
        return stored

    async def delete(self, owner: str, response_id: str) -> None:
        """Forget a response `owner` stored; NotFound (404) when there is none of theirs."""
        await self.load(owner, response_id, "response_id")
        try:
            await self._store.delete(self._keys.response(response_id))
        except (RedisError, OSError) as exc:
            _log.warning("response_store_unavailable", error=type(exc).__name__)
            raise _unavailable() from exc

    async def save(self, stored: StoredResponse) -> None:
        """Keep `stored` for the TTL (503 if the store cannot take it)."""
        try:
            await self._store.set(
                self._keys.response(stored.response.id), _encode(stored), px=self._ttl_ms
            )
        except (RedisError, OSError) as exc:
            _log.warning("response_store_unavailable", error=type(exc).__name__)
            raise _unavailable() from exc
