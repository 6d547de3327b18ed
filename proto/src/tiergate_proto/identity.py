"""Identity contracts: the auth service's public and admin APIs, and the records it shares.

The auth service writes API-key and session records; every gateway reads them (from Redis,
or from the auth service's internal API when there is no shared Redis). Request types
tolerate unknown fields (a client may send more than we read); records reject nothing either,
so that an older gateway can read a record a newer auth service wrote.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyInfo",
    "ApiKeyList",
    "ApiKeyRecord",
    "ConsentRequest",
    "ConsentResponse",
    "KeyLimits",
    "KeyLookup",
    "LogoutRequest",
    "OtpStartRequest",
    "OtpStartResponse",
    "OtpVerifyRequest",
    "RefreshRequest",
    "SessionState",
    "TokenResponse",
    "UserInfo",
    "Window",
]

Tier = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Owner = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Window(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most `limit` units (requests or tokens) in any `window_s` seconds (a sliding window)."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
    window_s: Annotated[int, msgspec.Meta(ge=1, le=31 * 24 * 3600)]


class KeyLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-key overrides of the key's tier policy; a field left out keeps the tier's value."""

    requests: Window | None = None
    tokens: Window | None = None
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    models: list[str] | None = None
    """Model ids this key may use (`*` for all); None keeps the tier's list."""


# --- sign-in (public: /v1/auth/*) ---------------------------------------------------------


class OtpStartRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/auth/otp/start`: send a one-time code to `email`."""

    email: str


class OtpStartResponse(msgspec.Struct, kw_only=True):
    """The same answer whether or not a code was sent (no address enumeration)."""

    status: Literal["sent"] = "sent"
    message: str = "If the address can sign in, a code is on its way. It is valid for 10 minutes."


class OtpVerifyRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/auth/otp/verify`: exchange the emailed code for a session."""

    email: str
    code: str


class RefreshRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/auth/refresh`; in cookie mode the token may come from the cookie instead."""

    refresh_token: str | None = None


class LogoutRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/auth/logout`: end the session the refresh or access token belongs to."""

    refresh_token: str | None = None


class TokenResponse(msgspec.Struct, kw_only=True):
    """A session: a short-lived access token (EdDSA JWT) and a one-use refresh token.

    In cookie mode (request header `x-tiergate-session: cookie`) both tokens travel only in
    HttpOnly cookies and are null here.
    """

    access_token: str | None
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int
    refresh_token: str | None
    refresh_expires_in: int
    tier: str
    store_chats: bool


class ConsentResponse(msgspec.Struct, kw_only=True):
    """The recorded consent, and an access token that carries it (null in cookie mode)."""

    store_chats: bool
    access_token: str | None
    expires_in: int


class ConsentRequest(msgspec.Struct, kw_only=True):
    """`PUT /v1/auth/consent`: whether this user's chats may be stored."""

    store_chats: bool


class UserInfo(msgspec.Struct, kw_only=True):
    """`GET /v1/auth/me`."""

    sub: str
    email: str
    tier: str
    store_chats: bool


# --- API keys (admin: /v1/admin/keys) ------------------------------------------------------


class ApiKeyCreate(msgspec.Struct, kw_only=True):
    """`POST /v1/admin/keys`."""

    owner: Owner
    tier: Tier = "agent"
    limits: KeyLimits = msgspec.field(default_factory=KeyLimits)
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored per key (never the key itself: it is found by its HMAC)."""

    id: str
    owner: str
    tier: str
    limits: KeyLimits = msgspec.field(default_factory=KeyLimits)
    description: str = ""
    created_at: int
    """Unix seconds."""


class ApiKeyInfo(msgspec.Struct, kw_only=True):
    """A key as the admin API lists it."""

    id: str
    owner: str
    tier: str
    limits: KeyLimits
    description: str
    created_at: int
    last_used_at: int | None


class ApiKeyCreated(msgspec.Struct, kw_only=True):
    """The answer to a create: the only time the key itself is shown."""

    key: str
    info: ApiKeyInfo


class ApiKeyList(msgspec.Struct, kw_only=True):
    """`GET /v1/admin/keys`."""

    data: list[ApiKeyInfo]
    object: Literal["list"] = "list"


# --- internal (gateway → auth, when there is no shared Redis) --------------------------------


class KeyLookup(msgspec.Struct, kw_only=True):
    """`POST /v1/internal/keys/lookup`: the HMAC of a presented key (never the key)."""

    digest: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class SessionState(msgspec.Struct, kw_only=True):
    """`GET /v1/internal/sessions/{sid}`: whether access tokens of the session still count."""

    active: bool
