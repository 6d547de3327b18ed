"""Browser safety at the gateway: security headers everywhere, CORS allowlist, origin checks."""

from __future__ import annotations

import msgspec

from tiergate_runtime.browser import BrowserSettings
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import chat_body, gateway_settings, running

SITE = "https://chat.example.org"


def settings(engine: FakeEngine, tls: bool = False):  # type: ignore[no-untyped-def]
    base = gateway_settings(engine.base_url)
    return msgspec.structs.replace(base, browser=BrowserSettings(allowed_origins=[SITE], tls=tls))


async def test_security_headers_on_every_response(engine: FakeEngine) -> None:
    async with running(settings(engine, tls=True), engine) as gateway:
        for response in (
            await gateway.client.post("/v1/chat/completions", json=chat_body()),
            await gateway.client.post("/v1/chat/completions", content=b"{"),
            await gateway.client.get("/nowhere"),
            await gateway.client.get("/healthz"),
        ):
            headers = response.headers
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["strict-transport-security"].startswith("max-age=")


async def test_no_hsts_without_tls(engine: FakeEngine) -> None:
    async with running(settings(engine), engine) as gateway:
        response = await gateway.client.get("/healthz")
        assert "strict-transport-security" not in response.headers


async def test_allowed_origin_gets_cors(engine: FakeEngine) -> None:
    async with running(settings(engine), engine) as gateway:
        preflight = await gateway.client.options(
            "/v1/chat/completions",
            headers={
                "origin": SITE,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == SITE
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers={"origin": SITE}
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == SITE
        assert (
            "x-ratelimit-remaining-requests" not in response.headers["access-control-allow-origin"]
        )
        assert "x-tiergate-tier" in response.headers["access-control-expose-headers"]


async def test_other_origins_may_not_mutate_or_send_credentials(engine: FakeEngine) -> None:
    evil = "https://evil.example"
    async with running(settings(engine), engine) as gateway:
        preflight = await gateway.client.options(
            "/v1/chat/completions",
            headers={"origin": evil, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 403
        assert preflight.json()["error"]["code"] == "origin_not_allowed"
        post = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers={"origin": evil}
        )
        assert post.status_code == 403
        assert "access-control-allow-origin" not in post.headers
        with_cookie = await gateway.client.get(
            "/v1/models", headers={"origin": evil, "cookie": "tg_access=x"}
        )
        assert with_cookie.status_code == 403
        plain_get = await gateway.client.get("/v1/models", headers={"origin": evil})
        assert plain_get.status_code == 200
        assert "access-control-allow-origin" not in plain_get.headers
        chats = [r for r in engine.requests if r.path == "/v1/chat/completions"]
        assert chats == []


async def test_the_gateways_own_page_is_same_origin(engine: FakeEngine) -> None:
    """The web chat served at / posts with an Origin of the host it posts to."""
    async with running(settings(engine), engine) as gateway:
        host = gateway.url.removeprefix("http://")
        for origin in (f"http://{host}", f"https://{host}"):  # a TLS proxy in front
            own = await gateway.client.post(
                "/v1/chat/completions",
                json=chat_body(),
                headers={"origin": origin, "cookie": "x=1"},
            )
            assert own.status_code == 200, own.text
            assert "access-control-allow-origin" not in own.headers  # not a CORS answer
        # Another port on the same host is another origin.
        other_port = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(),
            headers={"origin": "http://127.0.0.1:1"},
        )
        assert other_port.status_code == 403
        # A Host that names the attacker's site does not make its Origin ours either: a
        # browser sends the Host of the URL it fetches, and that is this gateway's.
        spoofed = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(),
            headers={"origin": "https://evil.example", "host": "gateway.example"},
        )
        assert spoofed.status_code == 403
