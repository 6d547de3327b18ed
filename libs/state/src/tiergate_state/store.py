"""The state store: Redis when `url` is set, else an in-process store with the same interface.

Every piece of shared state (limits, OTP codes, sessions, API keys) goes through a
`redis.asyncio.Redis`. Without a URL the store is `fakeredis` — the same client class, the same
commands and the same Lua scripts, kept in this process's memory — so one process runs with no
Redis at all (the embedded default of `make run`) and the code has one path, not two.

Timeouts are short and there is at most one quick retry: a Redis that does not answer must
cost a request milliseconds, not seconds, before the caller's fallback takes over (issue 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Protocol, TypeVar

import fakeredis
import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = [
    "StoreSettings",
    "as_text",
    "byte_fields",
    "connect",
    "in_process_store",
    "redact_url",
    "with_redis_url",
]

Seconds = Annotated[float, msgspec.Meta(gt=0, le=60)]


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where shared state lives. `url` unset: in this process only (one replica, no Redis)."""

    url: str | None = None
    """`redis://[:password@]host:port/db` or `rediss://…` for TLS; unix sockets as `unix://`."""
    connect_timeout_s: Seconds = 0.25
    timeout_s: Seconds = 0.5
    """Per command; a Redis slower than this counts as unreachable."""
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    key_prefix: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,15}$")] = "tg"


class _HasStore(Protocol):
    @property
    def store(self) -> StoreSettings:
        """The service's store settings."""
        ...


S = TypeVar("S", bound=_HasStore)


def with_redis_url(settings: S, environ: Mapping[str, str]) -> S:
    """`settings` with `store.url` from `REDIS_URL` when the service's own setting is unset."""
    url = environ.get("REDIS_URL")
    if settings.store.url is not None or not url:
        return settings
    store = msgspec.structs.replace(settings.store, url=url)
    # S is a settings Struct; msgspec's stub cannot see that through the Protocol bound.
    return msgspec.structs.replace(settings, store=store)  # type: ignore[type-var]


def connect(settings: StoreSettings) -> aioredis.Redis:
    """A client for `settings.url`, or an in-process store when it is unset (no I/O here)."""
    if settings.url is None:
        return in_process_store()
    # A blocking pool: a burst beyond `max_connections` waits (up to `timeout_s`) for a free
    # connection instead of failing at once.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.timeout_s,
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.timeout_s,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def in_process_store() -> aioredis.Redis:
    """A fresh store in this process's memory, with Lua scripting, behind the Redis client API."""
    # In memory, a "connection" costs nothing: a large blocking pool never refuses a burst.
    return fakeredis.FakeAsyncRedis(
        server=fakeredis.FakeServer(),
        decode_responses=False,
        connection_pool_class=aioredis.BlockingConnectionPool,
        max_connections=100_000,
    )


def as_text(value: bytes | str) -> str:
    """A stored value as text (clients here return bytes; the typing allows str)."""
    return value.decode() if isinstance(value, bytes) else value


def byte_fields(raw: Mapping[Any, Any]) -> dict[bytes, bytes]:
    """A hash as returned by HGETALL, with its bytes typing made explicit."""
    return {
        k if isinstance(k, bytes) else str(k).encode(): v
        if isinstance(v, bytes)
        else str(v).encode()
        for k, v in raw.items()
    }


def redact_url(url: str | None) -> str:
    """`url` without its password, for logs."""
    if url is None:
        return "in-process"
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':' if user else ''}***@{host}"
