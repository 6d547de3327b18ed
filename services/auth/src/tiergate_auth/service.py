"""The auth service's operations, over its stores: sign in, refresh, sign out, consent, identify.

Handlers in `app.py` only translate HTTP to these calls and back.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from tiergate_auth.apikeys import ApiKeyStore
from tiergate_auth.mailer import Mailer
from tiergate_auth.otp import OtpService
from tiergate_auth.records.repository import Records
from tiergate_auth.sessions import Session, SessionStore, parse_refresh_token
from tiergate_auth.settings import AuthSettings
from tiergate_auth.signing import TokenSigner
from tiergate_auth.users import User, UserStore
from tiergate_runtime.errors import Unauthorized
from tiergate_state.access_tokens import AccessClaims, InvalidToken, verify_access_token
from tiergate_state.directory import StoreDirectory
from tiergate_state.keys import KeyLayout
from tiergate_state.limits import Limiter

__all__ = ["AuthService", "Issued"]

_log = structlog.get_logger("tiergate.auth")


@dataclass(frozen=True, slots=True)
class Issued:
    """A session's tokens as just issued."""

    access_token: str
    refresh_token: str
    session: Session
    store_chats: bool


class AuthService:
    """Everything the auth endpoints do."""

    def __init__(
        self,
        settings: AuthSettings,
        store: aioredis.Redis,
        mailer: Mailer,
        records: Records | None = None,
    ) -> None:
        self.settings = settings
        self.records = records
        self.store = store
        layout = KeyLayout(settings.store.key_prefix)
        if settings.pepper is not None:
            pepper = settings.pepper.encode()
        else:  # in-process store: nothing outlives the process, so neither must the pepper
            pepper = secrets.token_bytes(32)
        self.pepper = pepper
        self.signer = TokenSigner(settings)
        self.directory = StoreDirectory(store, layout)
        self.keys = ApiKeyStore(store, layout, pepper)
        self.users = UserStore(store, layout, settings.user_tier)
        self.sessions = SessionStore(
            store,
            layout,
            pepper,
            refresh_ttl_s=settings.refresh_ttl_s,
            access_ttl_s=settings.access_ttl_s,
        )
        self.otp = OtpService(
            settings,
            store,
            layout=layout,
            pepper=pepper,
            limiter=Limiter(store, layout.prefix),
            mailer=mailer,
        )

    async def verify_code(self, email: str, code: str, client_ip: str) -> Issued:
        """Sign in with an e-mailed code: the user (created if new) and a new session."""
        address = await self.otp.verify(email, code, client_ip)
        user = await self.users.get_or_create(address.email_digest, address.email)
        session = await self.sessions.create(user.id, user.tier, user.key)
        _log.info("signed_in", sub=user.id, sid=session.sid)
        return self._issue(session, user.store_chats)

    def _issue(self, session: Session, store_chats: bool) -> Issued:
        access = self.signer.sign(
            sub=session.sub, sid=session.sid, tier=session.tier, store_chats=store_chats
        )
        return Issued(access, session.refresh_token, session, store_chats)

    async def refresh(self, refresh_token: str) -> Issued:
        """A new access token and a new refresh token for a current refresh token."""
        outcome, session = await self.sessions.rotate(refresh_token)
        if outcome == "reused":
            parsed = parse_refresh_token(refresh_token)
            _log.warning("refresh_token_reused", sid=parsed[0] if parsed else None)
            raise Unauthorized(
                "This refresh token was already used; the session has been ended. Sign in again.",
                code="refresh_token_reused",
            )
        if session is None:
            raise Unauthorized(
                "The refresh token is not valid or the session has ended.",
                code="invalid_refresh_token",
            )
        user = await self.users.get(session.user_key)
        if user is not None:
            await self.users.index(user)
        return self._issue(session, user.store_chats if user else False)

    async def authenticate(self, access_token: str) -> AccessClaims:
        """The claims of a valid access token whose session is still active; else 401."""
        try:
            claims = verify_access_token(
                access_token,
                self.signer.keys,
                issuer=self.settings.issuer,
                audience=self.settings.audience,
                now=int(time.time()),
            )
        except InvalidToken as exc:
            raise Unauthorized(str(exc), code="invalid_token") from None
        if not await self.directory.session_active(claims.sid):
            raise Unauthorized("The session has ended. Sign in again.", code="session_ended")
        return claims

    async def logout(self, refresh_token: str | None, claims: AccessClaims | None) -> None:
        """End the session named by the access token, or by a refresh token of an active session."""
        sid: str | None = claims.sid if claims is not None else None
        if sid is None and refresh_token is not None:
            parsed = parse_refresh_token(refresh_token)
            session = await self.sessions.get(parsed[0]) if parsed else None
            if parsed is not None and session is not None:
                sid = parsed[0]
        if sid is None:
            raise Unauthorized("No valid session to sign out of.", code="invalid_token")
        await self.sessions.revoke(sid, "logout")
        _log.info("signed_out", sid=sid)

    async def user_of(self, claims: AccessClaims) -> User:
        """The user an access token belongs to."""
        session = await self.sessions.get(claims.sid)
        user = await self.users.get(session["user"]) if session else None
        if user is None:
            raise Unauthorized("The session has ended. Sign in again.", code="session_ended")
        return user

    async def set_consent(self, claims: AccessClaims, store_chats: bool) -> tuple[User, str]:
        """Record the consent; a new access token that carries it to the gateways.

        Withdrawing erases every stored chat in the same request. The flag is cleared first,
        so that from that moment nothing more is stored (`/v1/internal/chats` reads it), then
        the chats are erased; if the database fails, the caller gets a 503 (never a success)
        and retrying the withdrawal erases them; so does the next purge pass, which finishes
        every withdrawal noted as pending (chats up to the withdrawal's time). Nothing is kept
        against the user's will, and nothing the user still consents to is lost.
        """
        user = await self.user_of(claims)
        await self.users.index(user)
        withdrawing = not store_chats and self.records is not None
        if withdrawing:  # noted first: if the erase below fails, the purge finishes it
            await self.users.erasure_pending(user.id, int(time.time()))
        updated = await self.users.set_store_chats(user.key, store_chats)
        if updated is None:
            raise Unauthorized("The session has ended. Sign in again.", code="session_ended")
        erased = 0
        if withdrawing and self.records is not None:
            erased = await self.records.erase_chats(user.id)
            await self.users.erasure_done(user.id)
        _log.info("consent_changed", sub=user.id, store_chats=store_chats, chats_erased=erased)
        access = self.signer.sign(
            sub=claims.sub, sid=claims.sid, tier=claims.tier, store_chats=store_chats
        )
        return updated, access
