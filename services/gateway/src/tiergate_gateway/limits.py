"""Limits on the request path: admit or 429, OpenAI's `x-ratelimit-*` headers, leases kept alive.

`GatewayLimits.admit()` asks the store (one atomic script per request; per-process while the
store is unreachable) and returns an `Admission` whose headers go on the response, or raises a
429 envelope with `Retry-After`. `finish()` charges the real token usage and frees the lease.
While requests run, one task per process renews their leases, so a lease outlives its process
by at most `lease_s` and never expires under a long stream.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.policy import EffectivePolicy
from tiergate_runtime.errors import RateLimited
from tiergate_state.limits import Decision, ResilientLimiter

__all__ = ["Admission", "GatewayLimits", "format_reset"]

_log = structlog.get_logger("tiergate.gateway.limits")


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes it in `x-ratelimit-reset-*`: `250ms`, `45s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass(slots=True)
class Admission:
    """A request let through: where its lease and reservation live."""

    bucket: str
    request_id: str
    decision: Decision
    finished: bool = False


def _headers(policy: EffectivePolicy, decision: Decision) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    limits = policy.limits
    if limits.requests is not None:
        headers += [
            ("x-ratelimit-limit-requests", str(limits.requests.limit)),
            ("x-ratelimit-remaining-requests", str(decision.requests_remaining)),
            ("x-ratelimit-reset-requests", format_reset(decision.requests_reset_s)),
        ]
    if limits.tokens is not None:
        headers += [
            ("x-ratelimit-limit-tokens", str(limits.tokens.limit)),
            ("x-ratelimit-remaining-tokens", str(decision.tokens_remaining)),
            ("x-ratelimit-reset-tokens", format_reset(decision.tokens_reset_s)),
        ]
    return headers


def _refusal(policy: EffectivePolicy, decision: Decision, reserve: int) -> RateLimited:
    retry = max(1, math.ceil(decision.retry_after_s))
    limits = policy.limits
    tier = policy.tier
    if decision.verdict == "requests" and limits.requests is not None:
        window = limits.requests
        return RateLimited(
            f"Rate limit reached for the '{tier}' tier: {window.limit} requests per "
            f"{format_reset(window.window_s)}. Try again in {retry}s.",
            retry_after=retry,
            error_type="requests",
        )
    if decision.verdict in {"tokens", "too_large"} and limits.tokens is not None:
        window = limits.tokens
        if decision.verdict == "too_large":
            return RateLimited(
                f"Request too large for the '{tier}' tier: it may use up to {reserve} tokens, "
                f"more than the limit of {window.limit} per {format_reset(window.window_s)}. "
                "Send a shorter prompt or a lower max_tokens.",
                retry_after=retry,
                error_type="tokens",
                code="request_too_large",
            )
        return RateLimited(
            f"Token limit reached for the '{tier}' tier: {window.limit} tokens per "
            f"{format_reset(window.window_s)}. Try again in {retry}s.",
            retry_after=retry,
            error_type="tokens",
        )
    return RateLimited(
        f"Too many requests in flight for the '{tier}' tier (at most {limits.max_concurrent} "
        "at once). Try again when one has finished.",
        retry_after=retry,
        error_type="requests",
        code="concurrency_limit_exceeded",
    )


class GatewayLimits:
    """Admission, accounting and lease renewal for one gateway process."""

    def __init__(
        self,
        limiter: ResilientLimiter,
        lease_s: float,
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self.limiter = limiter
        self._on_refused = on_refused
        self._lease_s = lease_s
        self._held: dict[str, Admission] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def admit(
        self, principal: Principal, policy: EffectivePolicy, request_id: str, reserve: int
    ) -> tuple[Admission | None, list[tuple[str, str]]]:
        """Admit the request (None: no limit applies) and its headers; RateLimited if refused."""
        if not policy.limits.active:
            return None, []
        bucket = principal.bucket
        decision = await self.limiter.admit(bucket, policy.limits, request_id, reserve)
        headers = _headers(policy, decision)
        if not decision.allowed:
            if self._on_refused is not None:
                self._on_refused(policy.tier, decision.verdict)
            error = _refusal(policy, decision, reserve)
            error.headers.update(headers)
            raise error
        admission = Admission(bucket, request_id, decision)
        if policy.limits.max_concurrent:
            self._held[request_id] = admission
        return admission, headers

    async def finish(self, admission: Admission | None, used_tokens: int | None) -> None:
        """Charge the real usage (None: keep the reservation) and free the lease; once."""
        if admission is None or admission.finished:
            return
        admission.finished = True
        self._held.pop(admission.request_id, None)
        await self.limiter.finish(
            admission.bucket,
            admission.request_id,
            used_tokens,
            local=admission.decision.local,
        )

    def start(self) -> None:
        """Start renewing held leases (from the app's lifespan)."""
        self._renewer = asyncio.create_task(self._renew_forever(), name="lease-renewer")

    async def stop(self) -> None:
        """Stop renewing."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None

    async def _renew_forever(self) -> None:
        interval = self._lease_s / 3
        while True:
            await asyncio.sleep(interval)
            for admission in list(self._held.values()):
                if admission.finished:
                    continue
                try:
                    await self.limiter.renew(
                        admission.bucket,
                        admission.request_id,
                        self._lease_s,
                        local=admission.decision.local,
                    )
                except Exception:  # renewal must never stop; a lost lease only undercounts
                    _log.exception("lease_renewal_failed")
