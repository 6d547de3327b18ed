"""Auth service settings: store, token lifetimes and keys, SMTP, code limits, cookies, secrets.

A TOML file (`TIERGATE_AUTH_CONFIG`) plus `TIERGATE_AUTH_*` environment overrides, e.g.
`TIERGATE_AUTH_SMTP__HOST=mail.example.org`. Secrets (`pepper`, `admin_token`,
`internal_token`, SMTP password) are best given through the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tiergate_proto.identity import Window
from tiergate_runtime.browser import BrowserSettings
from tiergate_runtime.clientip import check_networks
from tiergate_runtime.server import ServerSettings
from tiergate_runtime.settings import SettingsError, load_settings
from tiergate_runtime.tracing import TracingSettings
from tiergate_state.store import StoreSettings, with_redis_url

__all__ = [
    "AuthSettings",
    "CookieSettings",
    "DatabaseSettings",
    "OtpSettings",
    "SigningKey",
    "SmtpSettings",
    "load",
    "validate",
]

ENV_PREFIX = "TIERGATE_AUTH_"
Seconds = Annotated[int, msgspec.Meta(ge=1, le=366 * 24 * 3600)]
Secret = Annotated[str, msgspec.Meta(min_length=32, max_length=512)]
Kid = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class SmtpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where codes are mailed. `tls`: `starttls` upgrades a plain connection, `tls` is implicit."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8025
    tls: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    sender: str = "tiergate <no-reply@tiergate.local>"
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    subject: str = "Your tiergate sign-in code"


class OtpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One-time codes: lifetime, attempts, resend cooldown, and rate limits."""

    ttl_s: Seconds = 600
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    resend_cooldown_s: Seconds = 60
    per_email: Window = Window(limit=5, window_s=3600)
    """Codes requested for one address."""
    per_ip: Window = Window(limit=20, window_s=3600)
    """Codes requested from one client address."""
    verify_per_ip: Window = Window(limit=30, window_s=900)
    """Verification attempts from one client address (all addresses together)."""


class CookieSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Cookie mode for the website: tokens in HttpOnly cookies instead of the response body.

    Every cookie the service sets or clears carries the same attributes (a browser removes a
    cookie only when the clearing one matches it, partition included)."""

    enabled: bool = False
    secure: bool = True
    """The `Secure` attribute: sent over HTTPS only. Required by `same_site = "none"` and
    `partitioned = true` (browsers drop such cookies without it)."""
    same_site: Literal["strict", "lax", "none"] = "strict"
    """`strict`: the cookies are sent only when the page is on the gateway's own site, which
    keeps other sites' pages from using a signed-in browser's session. `lax`: also on top-level
    GET navigations from other sites. `none`: also on requests from pages of other sites, for the
    chat widget embedded cross-site (widget on `https://shop.example`, gateway on
    `https://chat.example`); needs `secure = true`. With `none` SameSite no longer guards
    against cross-site requests; the gateway's origin check does: it refuses credentialed and
    mutating requests whose `Origin` is not in its `[browser] allowed_origins`, so that list
    must name the embedding site (and only sites trusted with the users' sessions)."""
    partitioned: bool = False
    """Add the CHIPS `Partitioned` attribute to both session cookies, so that they keep
    working in browsers that block third-party cookies: each cookie is then kept per
    embedding (top-level) site: a session made in the widget on one site is not seen on
    another, nor on the gateway's own pages. Meant with `same_site = "none"`; needs
    `secure = true`."""
    domain: str | None = None
    """The `Domain` attribute, e.g. `example.org` (unset: host-only cookies)."""
    access_name: str = "tg_access"
    refresh_name: str = "tg_refresh"
    refresh_path: str = "/v1/auth"
    """The refresh cookie is sent only to the auth endpoints, never with chat requests."""


class SigningKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An Ed25519 private key (PKCS#8 PEM file) and its `kid`."""

    kid: Kid
    file: str


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Durable records (feedback, consented chats, admin audit): SQLAlchemy async URL, pool.

    `url`: `postgresql+asyncpg://user:PASSWORD@host/db` in production, or
    `sqlite+aiosqlite:///var/auth.db` embedded (the parent directory is created). Unset: the
    records routes answer 404 `records_disabled`. A URL with a password is best given as
    `TIERGATE_AUTH_DATABASE__URL` (environment or a file in `TIERGATE_AUTH_SECRETS_DIR`).
    """

    url: str | None = None
    upgrade_on_start: bool = False
    """True: migrate to the code's schema at start; false: refuse to start on another schema
    (run `tiergate db upgrade`)."""
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=366)] = 7
    """Consented chats older than this are purged."""
    purge_interval_s: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 600
    """How often the purge runs (at most hourly)."""
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=200)] = 5
    max_overflow: Annotated[int, msgspec.Meta(ge=0, le=200)] = 5
    pool_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    """Longest wait for a free pooled connection, then 503."""
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    """A database slower to connect counts as unreachable (503)."""
    statement_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    """Per statement (PostgreSQL: asyncpg's command timeout; SQLite: the busy timeout)."""
    max_chat_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    """Largest `POST /v1/internal/chats` body (a whole exchange; other bodies: max_body_bytes)."""


class AuthSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the auth service reads from its config file and environment."""

    server: ServerSettings = msgspec.field(default_factory=lambda: ServerSettings(port=8081))
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    issuer: str = "tiergate"
    audience: str = "tiergate"
    access_ttl_s: Annotated[int, msgspec.Meta(ge=30, le=86400)] = 900
    refresh_ttl_s: Seconds = 30 * 24 * 3600
    signing_keys: list[SigningKey] = []
    """The first key signs; all are published in the JWKS (a rollover keeps the old one)."""
    pepper: Secret | None = None
    """HMAC key for every stored digest (keys, codes, tokens, addresses). Required with a
    shared store; without one, a random pepper is made at start (nothing outlives the process
    anyway)."""
    admin_token: Secret | None = None
    """Bearer token of the admin API (`/v1/admin/*`); unset: the admin API is off."""
    internal_token: Secret | None = None
    """Bearer token gateways use for `/v1/internal/*`; unset: those endpoints are off."""
    user_tier: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "user"
    allowed_email_domains: list[str] = []
    """Only these domains may sign in (empty: any). Others get the same answer, and no mail."""
    trusted_proxies: list[str] = []
    """Peers whose `X-Forwarded-For` is believed: the gateway's address, which relays
    `/v1/auth/*` with the client's address in it. Default none, so no caller can pick the
    address its OTP limits count against (issue 10: loopback was trusted by default, and any
    local process could); the OTP limits then count the gateway as one client until it is
    listed here. `config/auth.toml` lists loopback for `make run`, where the gateway is local."""
    smtp: SmtpSettings = msgspec.field(default_factory=SmtpSettings)
    otp: OtpSettings = msgspec.field(default_factory=OtpSettings)
    cookies: CookieSettings = msgspec.field(default_factory=CookieSettings)
    browser: BrowserSettings = msgspec.field(default_factory=BrowserSettings)
    max_body_bytes: Annotated[int, msgspec.Meta(ge=256, le=1024 * 1024)] = 16 * 1024
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)


def validate(settings: AuthSettings) -> AuthSettings:
    """Cross-field checks; raise SettingsError naming the field."""
    if settings.store.url is not None and settings.pepper is None:
        raise SettingsError(
            "invalid setting pepper: required with a shared store (store.url), so that every "
            "replica and every restart computes the same digests"
        )
    kids = [key.kid for key in settings.signing_keys]
    if len(set(kids)) != len(kids):
        raise SettingsError("invalid setting signing_keys: duplicate kid")
    check_networks(settings.trusted_proxies, "trusted_proxies")
    if settings.database.url is not None:
        check_database_url(settings.database.url)
    if settings.access_ttl_s >= settings.refresh_ttl_s:
        raise SettingsError("invalid setting access_ttl_s: must be shorter than refresh_ttl_s")
    check_cookies(settings.cookies)
    return settings


def check_cookies(cookies: CookieSettings) -> None:
    """SettingsError unless the cookie attributes are ones browsers accept together.

    Browsers ignore a `SameSite=None` cookie without `Secure` (RFC 6265bis) and a
    `Partitioned` one without `Secure` (CHIPS): the service would answer sign-ins with
    cookies that are never stored, so it refuses to start instead.
    """
    if cookies.secure:
        return
    if cookies.same_site == "none":
        raise SettingsError(
            'invalid setting cookies.same_site: "none" requires cookies.secure = true '
            "(browsers drop SameSite=None cookies without Secure)"
        )
    if cookies.partitioned:
        raise SettingsError(
            "invalid setting cookies.partitioned: requires cookies.secure = true "
            "(browsers drop Partitioned cookies without Secure)"
        )


def check_database_url(url: str) -> None:
    """SettingsError unless `url` is an async URL this service has a driver for."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError("invalid setting database.url: not a database URL") from None
    if parsed.drivername not in {"postgresql+asyncpg", "sqlite+aiosqlite"}:
        raise SettingsError(
            "invalid setting database.url: expected postgresql+asyncpg://... or "
            f"sqlite+aiosqlite:///..., got {parsed.drivername}://"
        )


def load(environ: Mapping[str, str] | None = None) -> AuthSettings:
    """Settings from the config file and environment, validated.

    `REDIS_URL` is honoured as `store.url` when that is not set otherwise.
    """
    env = os.environ if environ is None else environ
    settings = load_settings(AuthSettings, env_prefix=ENV_PREFIX, environ=env)
    return validate(with_redis_url(settings, env))
