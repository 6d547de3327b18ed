"""E-mail one-time codes: issue, mail, verify — hashed, short-lived, few attempts, rate-limited.

- A code is 6 random digits; only its HMAC is stored, for `ttl_s` (10 minutes).
- Each verification counts an attempt before comparing (atomically), so parallel guesses
  cannot exceed `max_attempts`; after that the code is dead even if the next guess is right.
- Comparison is constant-time; a correct code is consumed by a compare-and-delete, so two
  parallel verifications of one code cannot both start a session.
- Asking for a code answers the same whether or not the address may sign in, and mail goes
  out in the background so the answer's timing does not tell either.
- Limits: codes per address and per client address, a resend cooldown, verifications per
  client address.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage

import redis.asyncio as aioredis
import structlog
from email_validator import EmailNotValidError, validate_email

from tiergate_auth.mailer import Mailer, code_message
from tiergate_auth.settings import AuthSettings
from tiergate_runtime.errors import InvalidRequest, RateLimited, Unauthorized
from tiergate_state.hashing import digest
from tiergate_state.keys import KeyLayout
from tiergate_state.limits import Limiter, LimitPolicy

__all__ = ["OtpService", "normalize_email"]

_log = structlog.get_logger("tiergate.auth.otp")
_CODE = re.compile(r"^[0-9]{6}$")

# KEYS: otp hash. ARGV: max attempts. Counts one attempt; returns the stored digest, or a
# status when there is no live code.
_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'none'}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {'dead'}
end
return {'live', redis.call('HGET', KEYS[1], 'h')}
"""

# KEYS: otp hash. ARGV: digest. Deletes the code only if it is still this one.
_CONSUME = """
if redis.call('HGET', KEYS[1], 'h') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def normalize_email(raw: str) -> str:
    """The address in canonical form (domain lower-cased, IDNA); InvalidRequest if not one."""
    if not isinstance(raw, str) or len(raw) > 254:
        raise InvalidRequest("Enter a valid e-mail address.", param="email", code="invalid_email")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise InvalidRequest(
            "Enter a valid e-mail address.", param="email", code="invalid_email"
        ) from None
    return result.normalized.lower()


@dataclass(frozen=True, slots=True)
class VerifiedAddress:
    """An address whose code was just verified (and consumed)."""

    email: str
    email_digest: str


class OtpService:
    """Issues and verifies codes."""

    def __init__(
        self,
        settings: AuthSettings,
        store: aioredis.Redis,
        *,
        layout: KeyLayout,
        pepper: bytes,
        limiter: Limiter,
        mailer: Mailer,
    ) -> None:
        self._settings = settings
        self._otp = settings.otp
        self._store = store
        self._layout = layout
        self._pepper = pepper
        self._limiter = limiter
        self._mailer = mailer
        self._attempt = store.register_script(_ATTEMPT)
        self._consume = store.register_script(_CONSUME)
        self._tasks: set[asyncio.Task[None]] = set()
        self._domains = {d.lower().lstrip("@") for d in settings.allowed_email_domains}

    def email_digest(self, email: str) -> str:
        """The digest that keys everything about this address."""
        return digest(self._pepper, "email", email)

    async def _limit(self, bucket: str, window_policy: LimitPolicy, what: str) -> None:
        decision = await self._limiter.admit(bucket, window_policy, secrets.token_hex(8), 0)
        if not decision.allowed:
            raise RateLimited(
                f"Too many {what}; try again later.",
                retry_after=int(decision.retry_after_s + 0.999),
                code="rate_limit_exceeded",
            )

    async def start(self, raw_email: str, client_ip: str) -> None:
        """Send a code to the address if it may sign in; the caller answers the same either way."""
        email = normalize_email(raw_email)
        email_digest = self.email_digest(email)
        await self._limit(f"otp-ip:{client_ip}", LimitPolicy(requests=self._otp.per_ip), "codes")
        await self._limit(
            f"otp-email:{email_digest}", LimitPolicy(requests=self._otp.per_email), "codes"
        )
        cooldown = await self._store.set(
            self._layout.otp_cooldown(email_digest),
            1,
            px=self._otp.resend_cooldown_s * 1000,
            nx=True,
        )
        if not cooldown:
            ttl_ms = await self._store.pttl(self._layout.otp_cooldown(email_digest))
            raise RateLimited(
                "A code was sent to this address moments ago; wait before asking again.",
                retry_after=max(1, int(ttl_ms / 1000 + 0.999)),
                code="otp_cooldown",
            )
        domain = email.rsplit("@", 1)[1]
        if self._domains and domain not in self._domains:
            _log.info("otp_not_sent", reason="domain_not_allowed")
            return
        code = f"{secrets.randbelow(10**6):06d}"
        key = self._layout.otp(email_digest)
        async with self._store.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"h": self._code_digest(email, code), "attempts": 0})
            pipe.pexpire(key, self._otp.ttl_s * 1000)
            await pipe.execute()
        message = code_message(
            self._settings.smtp.sender, email, self._settings.smtp.subject, code, self._otp.ttl_s
        )
        task = asyncio.create_task(self._send(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, message: EmailMessage) -> None:
        try:
            await self._mailer.send(message)
        except Exception as exc:  # a mail failure must not crash anything; it is logged
            _log.error("otp_mail_failed", error=type(exc).__name__, detail=str(exc)[:300])
        else:
            _log.info("otp_mail_sent")

    def _code_digest(self, email: str, code: str) -> str:
        return digest(self._pepper, "otp", email, code)

    async def verify(self, raw_email: str, code: str, client_ip: str) -> VerifiedAddress:
        """Consume the address's code if `code` is it; Unauthorized otherwise."""
        await self._limit(
            f"otp-verify-ip:{client_ip}",
            LimitPolicy(requests=self._otp.verify_per_ip),
            "sign-in attempts",
        )
        email = normalize_email(raw_email)
        if not isinstance(code, str) or not _CODE.fullmatch(code.strip()):
            raise InvalidRequest("The code is six digits.", param="code", code="invalid_code")
        email_digest = self.email_digest(email)
        key = self._layout.otp(email_digest)
        result = await self._attempt(keys=[key], args=[self._otp.max_attempts])
        wrong = Unauthorized(
            "The code is wrong or has expired. Ask for a new one.", code="invalid_code"
        )
        if result[0] != b"live":
            raise wrong
        presented = self._code_digest(email, code.strip())
        if not hmac.compare_digest(result[1].decode(), presented):
            raise wrong
        if not await self._consume(keys=[key], args=[presented]):
            raise wrong  # a parallel verification consumed it first
        # The cooldown guards a pending code; with none pending, a new sign-in may start.
        await self._store.delete(self._layout.otp_cooldown(email_digest))
        return VerifiedAddress(email, email_digest)

    async def drain(self) -> None:
        """Wait for mails still being sent (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
