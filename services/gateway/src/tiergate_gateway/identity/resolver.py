"""From a request's credentials to its principal — or a 401, never a silent downgrade.

- `Authorization: Bearer tg_…` is an API key: found by its HMAC (cached ≤ 5 s).
- `Authorization: Bearer <JWT>` is a session access token: EdDSA only, verified locally against
  the auth service's JWKS (refetched on an unknown `kid`), then its session must be active.
- No credential (and no access cookie in cookie mode) is `anonymous`; the subject is the client
  address, from `X-Forwarded-For` only when the peer is a trusted proxy. OpenAI SDKs insist on
  an API key, so `Bearer anonymous` (and an empty bearer token) say "no credential" explicitly.
- Anything else presented as a credential — malformed, expired, revoked, wrong issuer — is a
  401 envelope with `WWW-Authenticate`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from tiergate_gateway.identity.directory import CachedDirectory
from tiergate_gateway.identity.jwks import JwksCache
from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.settings import AuthLink
from tiergate_runtime.clientip import TrustedProxies
from tiergate_runtime.errors import Unauthorized
from tiergate_state.access_tokens import (
    InvalidToken,
    UnknownKey,
    looks_like_jwt,
    verify_access_token,
)
from tiergate_state.hashing import digest

__all__ = ["ANONYMOUS", "API_KEY_PREFIX", "IdentityResolver"]

API_KEY_PREFIX = "tg_"
ANONYMOUS = "anonymous"
"""The bearer token that asks for the anonymous tier explicitly (for SDKs that need a key)."""
_AUTHORIZATION = b"authorization"
_FORWARDED_FOR = b"x-forwarded-for"
_COOKIE = b"cookie"


def _headers(scope: Any) -> Iterable[tuple[bytes, bytes]]:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())
    return headers


class IdentityResolver:
    """Resolves principals; built once per app."""

    def __init__(
        self,
        link: AuthLink,
        proxies: TrustedProxies,
        directory: CachedDirectory | None,
        jwks: JwksCache | None,
    ) -> None:
        self._link = link
        self._pepper = link.pepper.encode() if link.pepper else None
        self._proxies = proxies
        self._directory = directory
        self._jwks = jwks
        self._cookie = link.access_cookie.encode() if link.access_cookie else None

    def client_ip(self, scope: Any) -> str:
        """The client's address (trusted-proxy aware)."""
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = [
            value.decode("latin-1") for name, value in _headers(scope) if name == _FORWARDED_FOR
        ]
        return self._proxies.client(peer, forwarded)

    def _credential(self, scope: Any) -> str | None:
        for name, value in _headers(scope):
            if name == _AUTHORIZATION:
                scheme, _, token = value.decode("latin-1").strip().partition(" ")
                token = token.strip()
                if scheme.lower() != "bearer":
                    raise Unauthorized("The Authorization header must be 'Bearer <key or token>'.")
                return None if token in {"", ANONYMOUS} else token
        if self._cookie is not None:
            for name, value in _headers(scope):
                if name == _COOKIE:
                    cookie = _cookie_value(value.decode("latin-1"), self._cookie.decode())
                    if cookie:
                        return cookie
        return None

    async def resolve(self, scope: Any) -> Principal:
        """The request's principal; Unauthorized (401) for a bad credential."""
        token = self._credential(scope)
        if token is None:
            return Principal(kind="anonymous", tier="anonymous", subject=self.client_ip(scope))
        if token.startswith(API_KEY_PREFIX):
            return await self._api_key(token)
        if looks_like_jwt(token):
            return await self._session(token)
        raise Unauthorized("The credential is neither an API key nor a session token.")

    async def _api_key(self, key: str) -> Principal:
        if self._pepper is None or self._directory is None or len(key) > 256:
            raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
        record = await self._directory.api_key(digest(self._pepper, "apikey", key))
        if record is None:
            raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
        return Principal(
            kind="agent", tier=record.tier, subject=record.id, key_limits=record.limits
        )

    async def _session(self, token: str) -> Principal:
        if self._jwks is None:
            raise Unauthorized("Session tokens are not accepted here.", code="invalid_token")
        keys = await self._jwks.get()
        now = int(time.time())
        link = self._link
        try:
            try:
                claims = verify_access_token(
                    token, keys, issuer=link.issuer, audience=link.audience, now=now
                )
            except UnknownKey:
                if not await self._jwks.refetch():
                    raise
                claims = verify_access_token(
                    token,
                    await self._jwks.get(),
                    issuer=link.issuer,
                    audience=link.audience,
                    now=now,
                )
        except InvalidToken as exc:
            raise Unauthorized(str(exc), code="invalid_token") from None
        if self._directory is not None and not await self._directory.session_active(claims.sid):
            raise Unauthorized("The session has ended. Sign in again.", code="session_ended")
        return Principal(
            kind="user",
            tier=claims.tier,
            subject=claims.sub,
            store_chats=claims.store_chats,
            session_id=claims.sid,
        )


def _cookie_value(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value.strip('"')
    return None
