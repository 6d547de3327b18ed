"""Browser safety for the website frontend: security headers, a CORS allowlist, origin checks.

- Every response carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, a strict
  `Referrer-Policy`, a restrictive `Content-Security-Policy` (an API serves no documents), a
  `Permissions-Policy`, and `Strict-Transport-Security` when the service is configured as
  served over TLS (`security_headers`, added by the edge hook).
- CORS: only origins on the allowlist get `Access-Control-Allow-Origin` (with credentials) and
  an answer to a preflight; a preflight from any other origin is a 403 envelope.
- A request that carries an `Origin` not on the allowlist is refused (403) when it is
  mutating (not GET/HEAD/OPTIONS) or credentialed (cookies): a page on another site cannot
  make a signed-in browser spend its quota or change its session. A request whose `Origin`
  is the host it was sent to (the gateway's own web chat at `/`) is same-origin and passes.
  Requests without `Origin` (servers, SDKs, curl) are not browsers' cross-site requests and
  pass.
- Public files (`public_prefixes`, the gateway's `/widget/`): any origin may read them, so
  their preflight is answered for any origin without credentials (`*`, GET/HEAD only), and
  a GET or HEAD of them passes even with cookies (a static file reads none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from tiergate_runtime.edge import request_record
from tiergate_runtime.errors import error_body

__all__ = ["BrowserSettings", "browser_guard", "security_headers"]


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EXPOSED = (
    "x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
    "x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, "
    "x-ratelimit-reset-tokens, x-tiergate-tier, x-tiergate-model, x-tiergate-backend, "
    "x-tiergate-max-tokens, x-tiergate-upgrade, x-tiergate-grounding, x-tiergate-sources, "
    "x-tiergate-source-list, x-tiergate-filter, x-tiergate-guard, x-tiergate-workload"
)


class BrowserSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What browsers may do: which origins, and whether we are served over TLS (HSTS)."""

    allowed_origins: list[str] = []
    """Exact origins, e.g. `https://chat.example.org` (scheme://host[:port], no path)."""
    tls: bool = False
    """Served over HTTPS (directly or behind a TLS proxy): send HSTS."""
    hsts_max_age_s: Annotated[int, msgspec.Meta(ge=0, le=2 * 365 * 24 * 3600)] = 365 * 24 * 3600
    preflight_max_age_s: Annotated[int, msgspec.Meta(ge=0, le=86400)] = 600


def security_headers(settings: BrowserSettings) -> list[tuple[bytes, bytes]]:
    """The headers every response carries."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (
            b"content-security-policy",
            b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    ]
    if settings.tls:
        value = f"max-age={settings.hsts_max_age_s}; includeSubDomains"
        headers.append((b"strict-transport-security", value.encode()))
    return headers


def _same_origin(origin: str, host: bytes | None) -> bool:
    """Whether `Origin` names the host the request was sent to (a page of this service).

    A browser sets both and a page cannot forge either: a page on another site sends its
    own origin to our host, which differs. Compared without the scheme (a TLS proxy in front
    makes the request plain HTTP here); default ports are left out by both."""
    if host is None:
        return False
    _, _, netloc = origin.partition("://")
    return netloc == host.decode("latin-1").lower()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def _refuse(send: Send, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = error_body(message, "permission_error", code="origin_not_allowed")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _preflight_answer(
    origin: bytes, methods: bytes, headers: bytes, max_age: bytes, credentials: bool
) -> HTTPResponseStartEvent:
    out = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", methods),
        (b"access-control-allow-headers", headers),
        (b"access-control-max-age", max_age),
        (b"vary", b"Origin"),
    ]
    if credentials:
        out.append((b"access-control-allow-credentials", b"true"))
    return {"type": "http.response.start", "status": 204, "headers": out}


def browser_guard(
    settings: BrowserSettings, public_prefixes: tuple[str, ...] = ()
) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware factory (Litestar `middleware=[...]`) enforcing the rules above;
    paths under `public_prefixes` are public files (readable from any origin)."""
    allowed = frozenset(origin.rstrip("/").lower() for origin in settings.allowed_origins)
    max_age = str(settings.preflight_max_age_s).encode()

    def wrap(app: ASGIApp) -> ASGIApp:
        async def guard(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            origin = _header(scope, b"origin")
            if origin is None:
                await app(scope, receive, send)
                return
            origin_text = origin.decode("latin-1").rstrip("/").lower()
            if _same_origin(origin_text, _header(scope, b"host")):
                # The gateway's own page (the web chat at /): not a cross-origin request.
                await app(scope, receive, send)
                return
            is_allowed = origin_text in allowed
            method = scope.get("method", "GET")
            record = request_record(scope)
            vary = [(b"vary", b"Origin")]
            preflight = method == "OPTIONS" and _header(scope, b"access-control-request-method")
            public = str(scope.get("path", "")).startswith(public_prefixes)
            if preflight:
                record.route = "preflight"
                requested = _header(scope, b"access-control-request-headers") or b""
                if is_allowed:
                    answer = _preflight_answer(
                        origin, b"GET, POST, PUT, DELETE", requested, max_age, credentials=True
                    )
                elif public:
                    answer = _preflight_answer(
                        b"*", b"GET, HEAD", requested, max_age, credentials=False
                    )
                else:
                    await _refuse(send, "This origin may not call this API.", vary)
                    return
                await send(answer)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            credentialed = _header(scope, b"cookie") is not None and not (
                public and method in {"GET", "HEAD"}
            )
            if not is_allowed and (method not in _SAFE_METHODS or credentialed):
                await _refuse(send, "This origin may not call this API.", vary)
                return
            if is_allowed:
                origin_text = origin.decode("latin-1")
                record.add_header("access-control-allow-origin", origin_text)
                record.add_header("access-control-allow-credentials", "true")
                record.add_header("access-control-expose-headers", _EXPOSED)
            record.add_header("vary", "Origin")
            await app(scope, receive, send)

        return guard

    return wrap
