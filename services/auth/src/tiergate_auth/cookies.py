"""The session cookies of cookie mode: every Set-Cookie that sets or clears one is built here.

A browser replaces or removes a stored cookie only with a Set-Cookie that matches it: same
name, Domain and Path (RFC 6265bis, storage model) and, for a CHIPS cookie, the same
partition, so a clearing cookie without `Partitioned` misses the partitioned one. A cookie
set by the answer to a cross-site request (the embedded widget's fetch) is ignored unless it
is `SameSite=None` and `Secure`. A clearing cookie that differs from the session cookie in
any of these attributes can leave the session cookie in the browser; so both come from
`cookie()`, the clearing one with an empty value and `Max-Age=0` (which takes precedence
over `Expires`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from litestar.datastructures import Cookie

from tiergate_auth.settings import AuthSettings

__all__ = ["SessionCookie", "clearing_cookies", "cookie", "session_cookies"]

Which = Literal["access", "refresh"]


@dataclass(eq=False)  # keep Cookie's equality and hash: name, path and domain
class SessionCookie(Cookie):
    """A Litestar `Cookie` that can carry the CHIPS `Partitioned` attribute.

    Litestar 2 renders cookies through `http.cookies.Morsel`, which (before Python 3.14)
    rejects the attribute; it is appended to the rendered header instead.
    """

    partitioned: bool = False
    """Render `; Partitioned` after the other attributes."""

    @property
    def dict(self) -> dict[str, Any]:
        """The Morsel's attributes: the Cookie's, without `partitioned`."""
        values = super().dict
        values.pop("partitioned", None)
        return values

    def to_header(self, **kwargs: Any) -> str:
        """The Set-Cookie value (or the whole header line, as `Cookie.to_header`)."""
        header = super().to_header(**kwargs)
        return f"{header}; Partitioned" if self.partitioned else header


def cookie(settings: AuthSettings, which: Which, token: str | None) -> SessionCookie:
    """One session cookie: `token` for its lifetime, or `None`: cleared (empty, `Max-Age=0`).

    HttpOnly always; Secure, SameSite, Partitioned and Domain from `[cookies]`; the refresh
    cookie's path is `refresh_path` (the auth endpoints only), the access cookie's `/`.
    """
    config = settings.cookies
    if which == "access":
        name, path, lifetime = config.access_name, "/", settings.access_ttl_s
    else:
        name, path, lifetime = config.refresh_name, config.refresh_path, settings.refresh_ttl_s
    return SessionCookie(
        key=name,
        value=token or "",
        path=path,
        max_age=lifetime if token is not None else 0,
        domain=config.domain,
        secure=config.secure,
        httponly=True,
        samesite=config.same_site,
        partitioned=config.partitioned,
    )


def session_cookies(settings: AuthSettings, access: str, refresh: str) -> list[Cookie]:
    """The cookies carrying a session's tokens."""
    return [cookie(settings, "access", access), cookie(settings, "refresh", refresh)]


def clearing_cookies(settings: AuthSettings) -> list[Cookie]:
    """The cookies that remove both session cookies (sign-out)."""
    return [cookie(settings, "access", None), cookie(settings, "refresh", None)]
