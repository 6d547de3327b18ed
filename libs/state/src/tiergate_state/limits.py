"""Requests per window, tokens per window and concurrent requests, decided atomically in the store.

`Limiter.admit()` runs one Lua script (`limits.lua`) over a subject's keys, which share a hash
tag (one Redis Cluster slot): it checks all three limits and, only if all pass, records the
request, reserves its tokens and takes a concurrency lease. `finish()` corrects the token
reservation to the real usage and returns the lease; `renew()` keeps a long stream's lease.

`ResilientLimiter` keeps serving when Redis is unreachable: it decides in an in-process store
(the same script) until Redis answers again, so limits degrade to per-process, never to an
error (issue 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError

from tiergate_proto.identity import Window
from tiergate_state.store import in_process_store

__all__ = ["Decision", "LimitPolicy", "Limiter", "ResilientLimiter", "Verdict"]

_log = structlog.get_logger("tiergate.state.limits")
_SCRIPT = resources.files("tiergate_state").joinpath("limits.lua").read_text()

Verdict = Literal["ok", "requests", "tokens", "too_large", "concurrency"]
_VERDICTS: dict[bytes, Verdict] = {
    b"ok": "ok",
    b"requests": "requests",
    b"tokens": "tokens",
    b"too_large": "too_large",
    b"concurrency": "concurrency",
}


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """The limits of one subject in one tier; None (or 0 concurrency) leaves a limit off."""

    requests: Window | None = None
    tokens: Window | None = None
    max_concurrent: int | None = None
    lease_s: float = 60.0
    """How long a lease outlives its last renewal if the process holding it dies."""

    @property
    def active(self) -> bool:
        """Whether any limit is on (else there is nothing to ask the store)."""
        return bool(self.requests or self.tokens or self.max_concurrent)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `admit`, with what the `x-ratelimit-*` headers report."""

    verdict: Verdict
    requests_remaining: int
    requests_reset_s: float
    tokens_remaining: int
    tokens_reset_s: float
    retry_after_s: float
    in_flight: int
    local: bool = False
    """Decided in this process because the shared store was unreachable."""

    @property
    def allowed(self) -> bool:
        """The request may proceed (and holds a lease if concurrency is limited)."""
        return self.verdict == "ok"


class Limiter:
    """Limits in one store (Redis, or the in-process store)."""

    def __init__(self, store: aioredis.Redis, prefix: str = "tg") -> None:
        self.store = store
        self._prefix = prefix
        self._script = store.register_script(_SCRIPT)

    def keys(self, bucket: str) -> list[str]:
        """The four keys of `bucket` (e.g. `anonymous:203.0.113.9`), sharing one hash tag."""
        tag = bucket.replace("{", "(").replace("}", ")")  # a brace would end the hash tag
        base = f"{self._prefix}:lim:{{{tag}}}"
        return [f"{base}:req", f"{base}:tok", f"{base}:toka", f"{base}:lease"]

    async def admit(
        self, bucket: str, policy: LimitPolicy, request_id: str, reserve_tokens: int
    ) -> Decision:
        """Check every limit of `policy` and, if all pass, count the request and reserve tokens."""
        requests, tokens = policy.requests, policy.tokens
        args: list[str | int] = [
            "admit",
            request_id,
            requests.limit if requests else 0,
            requests.window_s * 1000 if requests else 0,
            tokens.limit if tokens else 0,
            tokens.window_s * 1000 if tokens else 0,
            max(0, reserve_tokens),
            policy.max_concurrent or 0,
            int(policy.lease_s * 1000),
        ]
        result = await self._script(keys=self.keys(bucket), args=args)
        verdict, req_left, req_reset, tok_left, tok_reset, retry, in_flight = result
        return Decision(
            verdict=_VERDICTS[verdict],
            requests_remaining=int(req_left),
            requests_reset_s=int(req_reset) / 1000,
            tokens_remaining=int(tok_left),
            tokens_reset_s=int(tok_reset) / 1000,
            retry_after_s=int(retry) / 1000,
            in_flight=int(in_flight),
        )

    async def finish(self, bucket: str, request_id: str, used_tokens: int | None) -> None:
        """Charge the real token usage, not the reservation (None: keep it); free the lease."""
        used = -1 if used_tokens is None else max(0, used_tokens)
        await self._script(keys=self.keys(bucket), args=["finish", request_id, used])

    async def renew(self, bucket: str, request_id: str, lease_s: float) -> bool:
        """Extend a held lease by `lease_s` from now; False if it was no longer held."""
        args: list[str | int] = ["renew", request_id, int(lease_s * 1000)]
        return bool(await self._script(keys=self.keys(bucket), args=args))


class ResilientLimiter:
    """A Redis limiter that falls back to an in-process one while Redis is unreachable.

    After a failure Redis is left alone for `retry_s`, then tried again; every request in
    between is decided locally (and its `finish` goes to the same place). `on_fallback` is
    called once per request decided locally (for a metric).
    """

    def __init__(
        self,
        shared: Limiter,
        *,
        retry_s: float = 5.0,
        on_fallback: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = Limiter(in_process_store())
        self._retry_s = retry_s
        self._down_until = 0.0
        self._on_fallback = on_fallback
        self._clock = clock

    @property
    def degraded(self) -> bool:
        """Whether decisions are currently made in this process only."""
        return self._clock() < self._down_until

    def _failed(self, exc: Exception) -> None:
        if not self.degraded:
            _log.warning(
                "limits_store_unreachable",
                error=type(exc).__name__,
                detail=str(exc)[:200],
                fallback="per-process limits",
                retry_in_s=self._retry_s,
            )
        self._down_until = self._clock() + self._retry_s

    async def admit(
        self, bucket: str, policy: LimitPolicy, request_id: str, reserve_tokens: int
    ) -> Decision:
        """`Limiter.admit` in Redis, or in this process while Redis is unreachable."""
        if not self.degraded:
            try:
                return await self.shared.admit(bucket, policy, request_id, reserve_tokens)
            except ResponseError:
                raise  # a script bug, not an outage: fail loudly
            except (RedisError, OSError) as exc:
                self._failed(exc)
        if self._on_fallback is not None:
            self._on_fallback()
        decision = await self.local.admit(bucket, policy, request_id, reserve_tokens)
        return replace(decision, local=True)

    async def finish(
        self, bucket: str, request_id: str, used_tokens: int | None, *, local: bool
    ) -> None:
        """`Limiter.finish` where the request was admitted; a failure is logged, not raised."""
        target = self.local if local else self.shared
        try:
            await target.finish(bucket, request_id, used_tokens)
        except (RedisError, OSError) as exc:
            self._failed(exc)  # the lease expires by itself

    async def renew(self, bucket: str, request_id: str, lease_s: float, *, local: bool) -> bool:
        """`Limiter.renew` where the request was admitted; True also when the store is down."""
        target = self.local if local else self.shared
        try:
            return await target.renew(bucket, request_id, lease_s)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return True
