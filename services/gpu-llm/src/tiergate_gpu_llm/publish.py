"""The box's state, published to the shared store for the gateways.

`tg:gpu:{box}` holds the `/status` document as JSON, rewritten on every state change and
refreshed every few seconds with a TTL, so a gateway that reads nothing (or a stale entry
whose TTL ran out) knows the box is not reporting. Without a store URL nothing is published:
a gateway then asks `/status` itself.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

__all__ = ["StatePublisher", "status_key"]

_log = structlog.get_logger("tiergate.gpu_llm.publish")
_encode = msgspec.json.Encoder().encode


def status_key(prefix: str, box: str) -> str:
    """Where the box's status lives."""
    return f"{prefix}:gpu:{{{box}}}"


class StatePublisher:
    """Writes status documents; failures are logged once per outage, never raised."""

    def __init__(self, store: aioredis.Redis, prefix: str, box: str, ttl_s: float = 15.0) -> None:
        self._store = store
        self._key = status_key(prefix, box)
        self._ttl_ms = int(ttl_s * 1000)
        self._failing = False

    async def publish(self, document: dict[str, object]) -> None:
        """Store `document` under the box's key with the TTL."""
        try:
            await self._store.set(self._key, _encode(document), px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            if not self._failing:
                _log.warning("state_publish_failed", error=type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            _log.info("state_publish_recovered")
        self._failing = False

    async def aclose(self) -> None:
        """Close the store client."""
        await self._store.aclose()
