"""Cookie mode: the Set-Cookie attributes of sign-in, refresh, consent and sign-out, per mode.

Every cookie that sets or clears a session cookie must carry the same SameSite, Secure,
Partitioned, Domain and Path (RFC 6265bis storage model, CHIPS): a browser removes a cookie only
with a Set-Cookie that matches it, and ignores a cross-site answer's cookie that is not
`SameSite=None; Secure`. `SameSite=None` and `Partitioned` without `Secure` are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tiergate_auth.app import create_app
from tiergate_auth.settings import AuthSettings, CookieSettings, load
from tiergate_auth.sink import MailSink
from tiergate_runtime.http_transport import no_cookies
from tiergate_runtime.settings import SettingsError
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.redis_server import RedisServer

from .conftest import auth_settings, new_email, wait_mail

COOKIE_MODE = {"x-tiergate-session": "cookie"}


@dataclass(frozen=True)
class SetCookie:
    """One parsed Set-Cookie header: name, value, attributes (names lowercased)."""

    name: str
    value: str
    attributes: dict[str, str | None]
    """Attribute name → value (`None` for a flag such as `Secure`)."""


def parse(header: str) -> SetCookie:
    """A Set-Cookie value split as RFC 6265bis parses it (on `;`, then the first `=`)."""
    pair, *parts = header.split(";")
    name, _, value = pair.strip().partition("=")
    attributes: dict[str, str | None] = {}
    for part in parts:
        key, eq, val = part.strip().partition("=")
        assert key.lower() not in attributes, f"attribute {key} twice in {header!r}"
        attributes[key.lower()] = val.strip() if eq else None
    return SetCookie(name=name, value=value.strip('"'), attributes=attributes)


def set_cookies(response: httpx.Response) -> dict[str, SetCookie]:
    """The response's cookies by name (each name once)."""
    parsed = [parse(header) for header in response.headers.get_list("set-cookie")]
    by_name = {cookie.name: cookie for cookie in parsed}
    assert len(by_name) == len(parsed), response.headers.get_list("set-cookie")
    return by_name


MODES = {
    "strict": CookieSettings(enabled=True),
    "lax": CookieSettings(enabled=True, same_site="lax"),
    "lax-insecure": CookieSettings(enabled=True, same_site="lax", secure=False),
    "none": CookieSettings(enabled=True, same_site="none"),
    "none-partitioned": CookieSettings(
        enabled=True, same_site="none", partitioned=True, domain="chat.example"
    ),
    "strict-partitioned-renamed": CookieSettings(
        enabled=True,
        partitioned=True,
        access_name="a",
        refresh_name="r",
        refresh_path="/v1/auth/",
    ),
}


def expected(settings: AuthSettings, path: str, max_age: int) -> dict[str, str | None]:
    """Exactly the attributes a session cookie with this path and Max-Age carries."""
    config = settings.cookies
    attributes: dict[str, str | None] = {
        "path": path,
        "max-age": str(max_age),
        "samesite": config.same_site,
        "httponly": None,
    }
    if config.secure:
        attributes["secure"] = None
    if config.partitioned:
        attributes["partitioned"] = None
    if config.domain is not None:
        attributes["domain"] = config.domain
    return attributes


def lowered(cookie: SetCookie) -> dict[str, str | None]:
    """The attributes with SameSite's value lowercased (attribute values are case-blind)."""
    return {
        key: (value.lower() if key == "samesite" and value else value)
        for key, value in cookie.attributes.items()
    }


@dataclass
class CookieAuth:
    client: httpx.AsyncClient
    settings: AuthSettings
    sink: MailSink

    @property
    def names(self) -> tuple[str, str]:
        return self.settings.cookies.access_name, self.settings.cookies.refresh_name

    def assert_session(self, response: httpx.Response, names: tuple[str, ...]) -> list[str]:
        """Exactly the cookies `names`, set for their lifetimes; their values."""
        assert response.status_code == 200, response.text
        cookies = set_cookies(response)
        assert set(cookies) == set(names)
        access, refresh = self.names
        lifetimes = {
            access: ("/", self.settings.access_ttl_s),
            refresh: (self.settings.cookies.refresh_path, self.settings.refresh_ttl_s),
        }
        for name in names:
            path, max_age = lifetimes[name]
            assert lowered(cookies[name]) == expected(self.settings, path, max_age)
            assert cookies[name].value
        return [cookies[name].value for name in names]

    def cookie_header(self, name: str, value: str) -> dict[str, str]:
        return {"cookie": f"{name}={value}"}


@pytest.fixture(params=list(MODES), ids=list(MODES))
async def cookie_auth(
    request: pytest.FixtureRequest, redis_server: RedisServer, mail_sink: MailSink
) -> AsyncIterator[CookieAuth]:
    settings = auth_settings(redis_server.url, mail_sink.port, cookies=MODES[request.param])
    # No cookie jar: every request sends exactly the cookies the test names.
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10, cookies=no_cookies()) as client,
    ):
        yield CookieAuth(client=client, settings=settings, sink=mail_sink)


async def test_cookies_carry_the_configured_attributes_when_set_and_cleared(
    cookie_auth: CookieAuth,
) -> None:
    client, (access_name, refresh_name) = cookie_auth.client, cookie_auth.names
    email = new_email()
    assert (await client.post("/v1/auth/otp/start", json={"email": email})).status_code == 202
    code = (await wait_mail(cookie_auth.sink, email, 1)).code
    verified = await client.post(
        "/v1/auth/otp/verify", json={"email": email, "code": code}, headers=COOKIE_MODE
    )
    access, refresh = cookie_auth.assert_session(verified, (access_name, refresh_name))
    assert verified.json()["access_token"] is None
    assert verified.json()["refresh_token"] is None

    me = await client.get("/v1/auth/me", headers=cookie_auth.cookie_header(access_name, access))
    assert me.status_code == 200, me.text

    refreshed = await client.post(
        "/v1/auth/refresh",
        headers={**COOKIE_MODE, **cookie_auth.cookie_header(refresh_name, refresh)},
    )
    access, new_refresh = cookie_auth.assert_session(refreshed, (access_name, refresh_name))
    assert new_refresh != refresh

    consent = await client.put(
        "/v1/auth/consent",
        json={"store_chats": True},
        headers={**COOKIE_MODE, **cookie_auth.cookie_header(access_name, access)},
    )
    (access,) = cookie_auth.assert_session(consent, (access_name,))
    assert consent.json()["access_token"] is None

    logout = await client.post(
        "/v1/auth/logout", headers=cookie_auth.cookie_header(refresh_name, new_refresh)
    )
    assert logout.status_code == 200, logout.text
    cleared = set_cookies(logout)
    assert set(cleared) == {access_name, refresh_name}
    for name, path in (
        (access_name, "/"),
        (refresh_name, cookie_auth.settings.cookies.refresh_path),
    ):
        assert cleared[name].value == ""
        assert lowered(cleared[name]) == expected(cookie_auth.settings, path, 0)

    again = await client.post(
        "/v1/auth/refresh",
        headers={**COOKIE_MODE, **cookie_auth.cookie_header(refresh_name, new_refresh)},
    )
    assert again.status_code == 401, again.text


async def test_without_the_cookie_mode_header_tokens_stay_in_the_body(
    redis_server: RedisServer, mail_sink: MailSink
) -> None:
    settings = auth_settings(redis_server.url, mail_sink.port, cookies=MODES["none-partitioned"])
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10, cookies=no_cookies()) as client,
    ):
        email = new_email()
        await client.post("/v1/auth/otp/start", json={"email": email})
        code = (await wait_mail(mail_sink, email, 1)).code
        verified = await client.post("/v1/auth/otp/verify", json={"email": email, "code": code})
        assert verified.status_code == 200, verified.text
        assert verified.json()["access_token"]
        assert not verified.headers.get_list("set-cookie")


REFUSED = [
    pytest.param(
        {"SAME_SITE": "none", "SECURE": "false"},
        'invalid setting cookies.same_site: "none" requires cookies.secure = true',
        id="none-insecure",
    ),
    pytest.param(
        {"PARTITIONED": "true", "SECURE": "false"},
        "invalid setting cookies.partitioned: requires cookies.secure = true",
        id="partitioned-insecure",
    ),
    pytest.param(
        {"SAME_SITE": "none", "PARTITIONED": "true", "SECURE": "false"},
        'invalid setting cookies.same_site: "none" requires cookies.secure = true',
        id="both-insecure",
    ),
    pytest.param({"SAME_SITE": "None"}, "invalid setting cookies.same_site", id="misspelt"),
]


def cookie_env(values: dict[str, str]) -> dict[str, str]:
    return {f"TIERGATE_AUTH_COOKIES__{key}": value for key, value in values.items()}


@pytest.mark.parametrize(("values", "message"), REFUSED)
def test_settings_refuse_cookies_browsers_would_drop(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(cookie_env(values))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "values",
    [
        {"SAME_SITE": "none"},
        {"SAME_SITE": "none", "PARTITIONED": "true"},
        {"SAME_SITE": "lax", "SECURE": "false"},
        {"SAME_SITE": "strict", "SECURE": "false"},
    ],
    ids=lambda values: ",".join(f"{k}={v}" for k, v in values.items()),
)
def test_settings_accept_cookies_browsers_keep(values: dict[str, str]) -> None:
    settings = load(cookie_env(values)).cookies
    assert settings.same_site == values["SAME_SITE"]
    assert settings.partitioned is (values.get("PARTITIONED") == "true")


def test_create_app_refuses_insecure_same_site_none(
    redis_server: RedisServer, mail_sink: MailSink
) -> None:
    cookies = CookieSettings(enabled=True, same_site="none", secure=False)
    settings = auth_settings(redis_server.url, mail_sink.port, cookies=cookies)
    with pytest.raises(SettingsError, match=r"cookies\.same_site"):
        create_app(settings)


def test_the_service_refuses_to_start_with_insecure_partitioned_cookies() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_AUTH_")}
    env.update(cookie_env({"SAME_SITE": "none", "PARTITIONED": "true", "SECURE": "false"}))
    env["TIERGATE_AUTH_SERVER__PORT"] = "1"  # never reached: refused before listening
    done = subprocess.run(
        [sys.executable, "-m", "tiergate_auth"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert (
        'auth: invalid setting cookies.same_site: "none" requires cookies.secure = true'
        in done.stderr
    )
