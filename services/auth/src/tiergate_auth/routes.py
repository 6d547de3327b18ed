"""The auth service's routes: public sign-in endpoints, the admin key API, the internal API.

Handlers translate HTTP to `AuthService` calls and back; `Context` holds what they share.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from prometheus_client import Counter

from tiergate_auth.cookies import clearing_cookies, cookie, session_cookies
from tiergate_auth.records.repository import Records, audit_best_effort
from tiergate_auth.service import AuthService, Issued
from tiergate_auth.settings import AuthSettings, CookieSettings
from tiergate_proto.identity import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ConsentRequest,
    ConsentResponse,
    KeyLookup,
    LogoutRequest,
    OtpStartRequest,
    OtpStartResponse,
    OtpVerifyRequest,
    RefreshRequest,
    SessionState,
    TokenResponse,
    UserInfo,
)
from tiergate_runtime.body import read_struct
from tiergate_runtime.clientip import TrustedProxies
from tiergate_runtime.errors import ApiError, NotFound, Unauthorized
from tiergate_state.access_tokens import AccessClaims

__all__ = [
    "COOKIE_MODE_HEADER",
    "Context",
    "admin_routes",
    "internal_routes",
    "json_response",
    "public_routes",
    "require_token",
]

_encode = msgspec.json.Encoder().encode
COOKIE_MODE_HEADER = "x-tiergate-session"


def json_response(value: object, status: int = 200) -> Response[bytes]:
    return Response(_encode(value), status_code=status, media_type="application/json")


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    value = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def require_token(request: Request[Any, Any, Any], expected: str | None, what: str) -> None:
    if expected is None:
        raise NotFound(f"Unknown path: {request.method} {request.url.path}", code="unknown_url")
    token = _bearer(request)
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized(f"A valid {what} token is required.", code="invalid_admin_token")


@dataclass
class Context:
    """What the handlers share."""

    settings: AuthSettings
    service: AuthService
    proxies: TrustedProxies
    sign_ins: Counter
    refresh_reuse: Counter
    records: Records | None = None
    """The durable records (None: no `[database] url`)."""

    @property
    def cookies(self) -> CookieSettings:
        """The cookie settings."""
        return self.settings.cookies

    @property
    def limit(self) -> int:
        """The body size limit."""
        return self.settings.max_body_bytes

    def client_ip(self, request: Request[Any, Any, Any]) -> str:
        """The client's address (the gateway in front of us is a trusted proxy)."""
        peer = request.client.host if request.client else None
        return self.proxies.client(peer, request.headers.getall("x-forwarded-for", []))

    def cookie_mode(self, request: Request[Any, Any, Any]) -> bool:
        """Whether tokens go into cookies for this request."""
        return self.cookies.enabled and request.headers.get(COOKIE_MODE_HEADER, "") == "cookie"

    def issued(self, request: Request[Any, Any, Any], tokens: Issued) -> Response[bytes]:
        """The answer carrying a session's tokens (in the body, or in cookie mode in cookies)."""
        in_cookies = self.cookie_mode(request)
        body = TokenResponse(
            access_token=None if in_cookies else tokens.access_token,
            expires_in=self.settings.access_ttl_s,
            refresh_token=None if in_cookies else tokens.refresh_token,
            refresh_expires_in=self.settings.refresh_ttl_s,
            tier=tokens.session.tier,
            store_chats=tokens.store_chats,
        )
        response = json_response(body)
        if in_cookies:
            response.cookies.extend(
                session_cookies(self.settings, tokens.access_token, tokens.refresh_token)
            )
        response.headers["cache-control"] = "no-store"
        return response

    async def caller(self, request: Request[Any, Any, Any]) -> AccessClaims:
        """The signed-in caller (Bearer token or access cookie); 401 otherwise."""
        token = _bearer(request)
        if token is None and self.cookies.enabled:
            token = request.cookies.get(self.cookies.access_name)
        if token is None:
            raise Unauthorized("Sign in first: no access token was presented.", code="no_token")
        return await self.service.authenticate(token)


def public_routes(ctx: Context) -> list[HTTPRouteHandler]:
    """`/v1/auth/*` and the JWKS."""

    @post("/v1/auth/otp/start", status_code=202)
    async def otp_start(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await read_struct(request, OtpStartRequest, ctx.limit)
        await ctx.service.otp.start(body.email, ctx.client_ip(request))
        return json_response(OtpStartResponse(), 202)

    @post("/v1/auth/otp/verify", status_code=200)
    async def otp_verify(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await read_struct(request, OtpVerifyRequest, ctx.limit)
        tokens = await ctx.service.verify_code(body.email, body.code, ctx.client_ip(request))
        ctx.sign_ins.inc()
        return ctx.issued(request, tokens)

    @post("/v1/auth/refresh", status_code=200)
    async def refresh(request: Request[Any, Any, Any]) -> Response[bytes]:
        token = None
        if request.headers.get("content-length") not in {None, "0"}:
            token = (await read_struct(request, RefreshRequest, ctx.limit)).refresh_token
        if token is None and ctx.cookies.enabled:
            token = request.cookies.get(ctx.cookies.refresh_name)
        if not token:
            raise Unauthorized("No refresh token was presented.", code="invalid_refresh_token")
        try:
            tokens = await ctx.service.refresh(token)
        except ApiError as exc:
            if exc.code == "refresh_token_reused":
                ctx.refresh_reuse.inc()
            raise
        return ctx.issued(request, tokens)

    @post("/v1/auth/logout", status_code=200)
    async def logout(request: Request[Any, Any, Any]) -> Response[bytes]:
        token = None
        if request.headers.get("content-length") not in {None, "0"}:
            token = (await read_struct(request, LogoutRequest, ctx.limit)).refresh_token
        if token is None and ctx.cookies.enabled:
            token = request.cookies.get(ctx.cookies.refresh_name)
        claims = None
        if token is None:
            claims = await ctx.caller(request)
        await ctx.service.logout(token, claims)
        response = json_response({"status": "signed_out"})
        if ctx.cookies.enabled:
            response.cookies.extend(clearing_cookies(ctx.settings))
        return response

    @get("/v1/auth/me")
    async def me(request: Request[Any, Any, Any]) -> Response[bytes]:
        claims = await ctx.caller(request)
        user = await ctx.service.user_of(claims)
        return json_response(
            UserInfo(sub=user.id, email=user.email, tier=user.tier, store_chats=user.store_chats)
        )

    @put("/v1/auth/consent", status_code=200)
    async def consent(request: Request[Any, Any, Any]) -> Response[bytes]:
        claims = await ctx.caller(request)
        body = await read_struct(request, ConsentRequest, ctx.limit)
        user, access = await ctx.service.set_consent(claims, body.store_chats)
        in_cookies = ctx.cookie_mode(request)
        response = json_response(
            ConsentResponse(
                store_chats=user.store_chats,
                access_token=None if in_cookies else access,
                expires_in=ctx.settings.access_ttl_s,
            )
        )
        if in_cookies:
            response.cookies.append(cookie(ctx.settings, "access", access))
        return response

    @get(["/.well-known/jwks.json", "/v1/auth/jwks"])
    async def jwks() -> Response[bytes]:
        response = Response(ctx.service.signer.jwks_body, media_type="application/json")
        response.headers["cache-control"] = "public, max-age=300"
        return response

    return [otp_start, otp_verify, refresh, logout, me, consent, jwks]


def admin_routes(ctx: Context) -> list[HTTPRouteHandler]:
    """`/v1/admin/keys` (admin token)."""

    @post("/v1/admin/keys", status_code=201)
    async def create_key(request: Request[Any, Any, Any]) -> Response[bytes]:
        require_token(request, ctx.settings.admin_token, "admin")
        body = await read_struct(request, ApiKeyCreate, ctx.limit)
        key, info = await ctx.service.keys.create(body)
        actor = f"admin@{ctx.client_ip(request)}"
        await audit_best_effort(ctx.records, actor, "api_key.create", info.id)
        return json_response(ApiKeyCreated(key=key, info=info), 201)

    @get("/v1/admin/keys")
    async def list_keys(request: Request[Any, Any, Any]) -> Response[bytes]:
        require_token(request, ctx.settings.admin_token, "admin")
        return json_response(ApiKeyList(data=await ctx.service.keys.list()))

    @delete("/v1/admin/keys/{key_id:str}", status_code=200)
    async def revoke_key(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Response[bytes]:
        require_token(request, ctx.settings.admin_token, "admin")
        if not await ctx.service.keys.revoke(key_id):
            raise NotFound(
                f"No API key with id '{key_id[:64]}'.", param="key_id", code="key_not_found"
            )
        actor = f"admin@{ctx.client_ip(request)}"
        await audit_best_effort(ctx.records, actor, "api_key.revoke", key_id)
        return json_response({"id": key_id, "revoked": True})

    return [create_key, list_keys, revoke_key]


def internal_routes(ctx: Context) -> list[HTTPRouteHandler]:
    """`/v1/internal/*` (internal token): what gateways without a shared store ask."""

    @post("/v1/internal/keys/lookup", status_code=200)
    async def lookup_key(request: Request[Any, Any, Any]) -> Response[bytes]:
        require_token(request, ctx.settings.internal_token, "internal")
        body = await read_struct(request, KeyLookup, ctx.limit)
        record = await ctx.service.directory.api_key(body.digest)
        if record is None:
            raise NotFound("No such API key.", code="key_not_found")
        await ctx.service.directory.touch_api_key(body.digest)
        return json_response(record)

    @get("/v1/internal/sessions/{sid:str}")
    async def session_state(request: Request[Any, Any, Any], sid: FromPath[str]) -> Response[bytes]:
        require_token(request, ctx.settings.internal_token, "internal")
        return json_response(SessionState(active=await ctx.service.directory.session_active(sid)))

    return [lookup_key, session_state]
