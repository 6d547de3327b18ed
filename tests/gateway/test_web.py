"""The web chat's files as the gateway serves them: the page under its own CSP, the widget
embeddable from other origins, caching, and a clear 404 where nothing was built."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tiergate_gateway.settings import GatewaySettings
from tiergate_gateway.web import PAGE_CSP, WebSettings
from tiergate_runtime.browser import BrowserSettings
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import gateway_settings, running

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SITE = "https://shop.example.org"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "widget").mkdir(parents=True)
    (root / "index.html").write_text(
        '<!doctype html><html lang="en"><script type="module" src="/widget/widget.js">'
        "</script><tiergate-chat mode=page></tiergate-chat></html>"
    )
    (root / "widget" / "widget.js").write_text("import('./chat-3f9a1c2b.js');\n")
    (root / "widget" / "chat-3f9a1c2b.js").write_text("export const chat = 1;\n")
    (root / "widget" / "chat-3f9a1c2b.css").write_text(":host { display: block }\n")
    return root


def with_web(engine: FakeEngine, web: WebSettings, **more: object) -> GatewaySettings:
    return msgspec.structs.replace(gateway_settings(engine.base_url), web=web, **more)


async def test_the_page_has_its_own_csp_and_the_api_keeps_its(
    engine: FakeEngine, dist: Path
) -> None:
    async with running(with_web(engine, WebSettings(dist_dir=str(dist))), engine) as gateway:
        page = await gateway.client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers.get_list("content-security-policy") == [PAGE_CSP]
        assert "'unsafe-inline'" not in PAGE_CSP
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert b"<tiergate-chat" in page.content
        # Everything else keeps the API's policy.
        models = await gateway.client.get("/v1/models")
        assert models.headers.get_list("content-security-policy") == [API_CSP]
        head = await gateway.client.head("/")
        assert head.status_code == 200
        assert head.content == b""


async def test_the_widget_is_embeddable_and_cached_by_its_names(
    engine: FakeEngine, dist: Path
) -> None:
    async with running(with_web(engine, WebSettings(dist_dir=str(dist))), engine) as gateway:
        loader = await gateway.client.get("/widget/widget.js", headers={"origin": SITE})
        assert loader.status_code == 200
        assert loader.headers["content-type"] == "text/javascript; charset=utf-8"
        assert loader.headers["cache-control"] == "no-cache"  # a new build reaches sites at once
        assert loader.headers.get_list("access-control-allow-origin") == ["*"]
        assert loader.headers["cross-origin-resource-policy"] == "cross-origin"
        chunk = await gateway.client.get("/widget/chat-3f9a1c2b.js")
        assert chunk.headers["cache-control"] == "public, max-age=31536000, immutable"
        css = await gateway.client.get("/widget/chat-3f9a1c2b.css")
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        again = await gateway.client.get(
            "/widget/widget.js", headers={"if-none-match": loader.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.content == b""
        for missing in ("/widget/nope.js", "/widget/../index.html", "/widget/%2e%2e/index.html"):
            refused = await gateway.client.get(missing)
            assert refused.status_code == 404, missing
            assert refused.json()["error"]["type"] == "invalid_request_error"


async def test_an_allowlisted_origin_gets_one_cors_answer(engine: FakeEngine, dist: Path) -> None:
    settings = with_web(
        engine,
        WebSettings(dist_dir=str(dist)),
        browser=BrowserSettings(allowed_origins=[SITE]),
    )
    async with running(settings, engine) as gateway:
        loader = await gateway.client.get("/widget/widget.js", headers={"origin": SITE})
        assert loader.headers.get_list("access-control-allow-origin") == [SITE]
        assert loader.headers["access-control-allow-credentials"] == "true"


async def test_any_origin_may_read_the_widget_but_not_call_the_api(
    engine: FakeEngine, dist: Path
) -> None:
    settings = with_web(
        engine,
        WebSettings(dist_dir=str(dist)),
        browser=BrowserSettings(allowed_origins=["https://listed.example.org"]),
    )
    preflight = {
        "origin": SITE,
        "access-control-request-method": "GET",
        "access-control-request-headers": "x-custom",
    }
    async with running(settings, engine) as gateway:
        client = gateway.client
        # A preflight for the widget's files: answered for any origin, without credentials.
        answer = await client.options("/widget/widget.js", headers=preflight)
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "*"
        assert answer.headers["access-control-allow-methods"] == "GET, HEAD"
        assert answer.headers["access-control-allow-headers"] == "x-custom"
        assert "access-control-allow-credentials" not in answer.headers
        # ... a GET with the site's cookies too (the file reads none) ...
        loader = await client.get(
            "/widget/widget.js", headers={"origin": SITE, "cookie": "tg_access=x"}
        )
        assert loader.status_code == 200
        assert loader.headers.get_list("access-control-allow-origin") == ["*"]
        # ... but not the API: a preflight, a credentialed read, a write are refused.
        for method, path, headers in (
            ("OPTIONS", "/v1/chat/completions", preflight),
            ("GET", "/v1/models", {"origin": SITE, "cookie": "tg_access=x"}),
            ("POST", "/v1/chat/completions", {"origin": SITE}),
        ):
            refused = await client.request(method, path, headers=headers)
            assert refused.status_code == 403, (method, path)
            assert refused.json()["error"]["code"] == "origin_not_allowed"


async def test_nothing_built_is_a_404_naming_the_command(
    engine: FakeEngine, tmp_path: Path
) -> None:
    empty = WebSettings(dist_dir=str(tmp_path / "not-built"))
    async with running(with_web(engine, empty), engine) as gateway:
        for path in ("/", "/widget/widget.js"):
            answer = await gateway.client.get(path)
            assert answer.status_code == 404
            error = answer.json()["error"]
            assert error["code"] == "web_not_built"
            assert "make setup" in error["message"]


async def test_widget_only_and_off(engine: FakeEngine, dist: Path) -> None:
    only = WebSettings(dist_dir=str(dist), page=False)
    async with running(with_web(engine, only), engine) as gateway:
        assert (await gateway.client.get("/")).status_code == 404
        assert (await gateway.client.get("/widget/widget.js")).status_code == 200
    off = WebSettings(dist_dir=str(dist), enabled=False)
    async with running(with_web(engine, off), engine) as gateway:
        assert (await gateway.client.get("/widget/widget.js")).status_code == 404
