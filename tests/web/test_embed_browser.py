"""Embedding the widget in another site, both ways issue 16 names.

The host site is a tiny HTTP server of the test's own, reached as `http://localhost:<port>`
while the gateway is `http://127.0.0.1:<port>`: two origins and two *sites* (both secure
contexts for Chromium, so Secure cookies are allowed on plain HTTP here, as on HTTPS there).

Cross-origin (`<script src="{gateway}/widget/widget.js">`, `<tiergate-chat api="{gateway}">`):

- works: anonymous chat, once the site's origin is on the gateway's `browser.allowed_origins`
  (credentialed CORS, the tiergate headers exposed, so the labels show);
- refused: the same page against a gateway without it — `403 origin_not_allowed`, and the
  widget shows an error;
- cookie sign-in needs the auth service's `[cookies] same_site = "none"` (with `secure`):
  with the default `strict` a cross-site response cannot set the cookies, so the code is
  accepted but the browser keeps no session — the widget finds that out (`/v1/auth/me`
  answers 401) and says so instead of "signed in", and the next chat is still anonymous.
  With `none` (and `partitioned`, for browsers that block third-party cookies) sign-in
  works across sites; the gateway's origin allowlist is then what keeps other sites from
  using the session (tested in tests/gateway/test_browser.py).

Same origin through the site's own proxy of `/v1/*` and `/widget/*` (as the seeds' edge
proxies `/api/*`): the proxy strips `Origin` (as the gateway's own relay does), so no
allowlist is needed; chat works and so does sign-in, the cookies being first-party.

The host pages load the widget's files from the gateway they call, allowlisted or not: the
test's per-visitor `x-forwarded-for` (a Playwright extra header, which no real browser adds)
turns even the module script's fetch into a CORS preflight, which the gateway answers for any
origin on `/widget/*` (public files, no credentials) and refuses elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.async_api import BrowserContext, expect

from tiergate_gateway.web import PAGE_CSP
from tiergate_testkit.services import ServiceProcess

from .conftest import Mesh, Watched, chat_page, sign_in
from .test_chat_browser import ask, asked, engine_says, visitor

pytestmark = pytest.mark.browser

_DROP = {"host", "origin", "connection", "content-length", "accept-encoding", "keep-alive"}
_DROP_BACK = {"content-length", "transfer-encoding", "connection", "content-encoding"}


class Site(ThreadingHTTPServer):
    """Host pages by path; with `upstream`, also the proxy of /v1/* and /widget/* to it."""

    daemon_threads = True

    def __init__(self, upstream: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pages: dict[str, tuple[str, str]] = {}  # path -> (html, CSP)
        self.upstream = upstream
        self.http = httpx.Client(timeout=30)

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Site

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test's output is the gateway's."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        if self.path in self.server.pages:
            html, csp = self.server.pages[self.path]
            body = html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-security-policy", csp)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.server.upstream and self.path.startswith(("/v1/", "/widget/")):
            self._forward(self.server.upstream)
        else:
            self.send_error(404)

    def _forward(self, upstream: str) -> None:
        """Streams the gateway's answer back (SSE included), Set-Cookie untouched."""
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _DROP]
        request = self.server.http.build_request(
            self.command, upstream + self.path, headers=headers, content=body
        )
        answer = self.server.http.send(request, stream=True)
        try:
            self.send_response(answer.status_code)
            for name, value in answer.headers.multi_items():
                if name.lower() not in _DROP_BACK:
                    self.send_header(name, value)
            self.send_header("connection", "close")
            self.end_headers()
            for chunk in answer.iter_bytes():
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            answer.close()
        self.close_connection = True


def _running(site: Site) -> Iterator[Site]:
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.shutdown()
        site.server_close()
        site.http.close()
        thread.join(10)


@dataclass
class CrossOrigin:
    site: Site
    allowed: ServiceProcess
    """A second gateway of the mesh, with the site's origin on its allowlist."""
    refusing: str
    """The mesh's own gateway: no allowlist."""


@pytest.fixture(scope="module")
def cross_origin(mesh: Mesh) -> Iterator[CrossOrigin]:
    for site in _running(Site()):
        env = {
            **mesh.gateway_env,
            "TIERGATE_GATEWAY_BROWSER": f'{{"allowed_origins": ["{site.origin}"]}}',
        }
        with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as allowed:
            yield CrossOrigin(site, allowed, mesh.url)


@pytest.fixture(scope="module")
def proxy(mesh: Mesh) -> Iterator[Site]:
    yield from _running(Site(upstream=mesh.url))


def _host_csp(gateway: str) -> str:
    """What a host page's own CSP must allow for the widget (README: Embedding)."""
    return (
        f"default-src 'none'; script-src {gateway}; style-src {gateway}; "
        f"connect-src {gateway}; img-src data:; base-uri 'none'; form-action 'none'"
    )


def _embed(cross: CrossOrigin, path: str, gateway: str) -> str:
    """A host page on the site: the widget's files from `gateway`, and its API calls."""
    element = f'<tiergate-chat mode="page" api="{gateway}"></tiergate-chat>'
    cross.site.pages[path] = (chat_page(gateway, element), _host_csp(gateway))
    return cross.site.origin + path


async def test_cross_origin_anonymous_chat_with_the_allowlist(
    mesh: Mesh, cross_origin: CrossOrigin, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await engine_says(page, {"content": "Hello from afar."})
    await page.goto(_embed(cross_origin, "/allowed.html", cross_origin.allowed.base_url))
    response = await asked(page, "Hi from another site.")
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == cross_origin.site.origin
    assert response.headers["access-control-allow-credentials"] == "true"
    await expect(page.get_by_test_id("answer").last).to_contain_text("Hello from afar.")
    # The tiergate headers are exposed to the other origin: the labels can be read.
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    await expect(page.get_by_test_id("model-label")).to_contain_text("small model on CPU")
    await expect(page.get_by_test_id("remaining")).to_be_visible()


@pytest.fixture(scope="module")
def cross_site(
    mesh: Mesh, cross_origin: CrossOrigin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """An auth service with `SameSite=None; Secure; Partitioned` cookies and a gateway in
    front of it that lists the site's origin (the mesh's engines and mail sink)."""
    records = tmp_path_factory.mktemp("cross-site")
    auth_env = {
        **mesh.auth_env,
        "TIERGATE_AUTH_COOKIES__SAME_SITE": "none",
        "TIERGATE_AUTH_COOKIES__PARTITIONED": "true",
        "TIERGATE_AUTH_DATABASE__URL": f"sqlite+aiosqlite:///{records}/auth.db",
    }
    with ServiceProcess("tiergate_auth", "TIERGATE_AUTH_", auth_env) as auth:
        env = {
            **mesh.gateway_env,
            "TIERGATE_GATEWAY_AUTH__URL": auth.base_url,
            "TIERGATE_GATEWAY_BROWSER": f'{{"allowed_origins": ["{cross_origin.site.origin}"]}}',
        }
        with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as gateway:
            yield gateway


async def test_cross_site_sign_in_with_samesite_none_cookies(
    mesh: Mesh,
    cross_origin: CrossOrigin,
    cross_site: ServiceProcess,
    context: BrowserContext,
    watched: Watched,
) -> None:
    page = watched.page
    await visitor(context)
    await page.goto(_embed(cross_origin, "/none.html", cross_site.base_url))
    async with page.expect_response(lambda r: r.url.endswith("/v1/auth/otp/verify")) as verify:
        await sign_in(page, mesh)  # the widget says "Signed in" only once /v1/auth/me agrees
    set_cookie = (await (await verify.value).header_value("set-cookie") or "").lower()
    assert "samesite=none" in set_cookie, set_cookie
    assert "partitioned" in set_cookie, set_cookie
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies["tg_access"]["domain"] == "127.0.0.1"  # the gateway's, not the site's
    assert cookies["tg_access"]["sameSite"] == "None"
    assert cookies["tg_access"]["httpOnly"]
    assert cookies["tg_access"]["secure"]
    await engine_says(page, {"content": "Signed in from another site."})
    chat = await asked(page, "Who am I here?")
    assert chat.headers["x-tiergate-tier"] == "user"
    await expect(page.get_by_test_id("answer").last).to_contain_text("Signed in from another")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Signed in")
    # Sign-out clears them (same attributes, or a browser keeps a partitioned cookie).
    await page.get_by_test_id("account-toggle").click()
    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    assert "tg_access" not in {c["name"] for c in await context.cookies()}


async def test_cross_origin_cookie_sign_in_does_not_survive_samesite_strict(
    mesh: Mesh, cross_origin: CrossOrigin, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    watched.http_errors_expected = True
    await visitor(context)
    await page.goto(_embed(cross_origin, "/signin.html", cross_origin.allowed.base_url))
    # The code is accepted (the auth service answers 200) ...
    async with page.expect_response(lambda r: r.url.endswith("/v1/auth/otp/verify")) as verify:
        await sign_in(page, mesh, confirmed=False)
    answer = await verify.value
    assert answer.status == 200
    assert "samesite=strict" in (await answer.header_value("set-cookie") or "").lower()
    # ... but the browser keeps no session cookie from a cross-site response, and the
    # widget, asking /v1/auth/me, says so instead of claiming the visitor is signed in.
    error = page.get_by_test_id("signin-error")
    await expect(error).to_contain_text("did not keep the sign-in cookie")
    assert "tg_access" not in {c["name"] for c in await context.cookies()}
    await page.get_by_test_id("account-toggle").click()
    # ... so the gateway sees the next chat as anonymous, and the label says so.
    await engine_says(page, {"content": "Still anonymous."})
    chat = await asked(page, "Who am I?")
    assert chat.headers["x-tiergate-tier"] == "anonymous"
    await expect(page.get_by_test_id("answer").last).to_contain_text("Still anonymous.")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")


async def test_cross_origin_without_the_allowlist_is_refused_and_the_widget_says_so(
    mesh: Mesh, cross_origin: CrossOrigin, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    watched.http_errors_expected = True
    address = await visitor(context)
    await page.goto(_embed(cross_origin, "/refused.html", cross_origin.refusing))
    await ask(page, "Hello?")
    await expect(page.get_by_test_id("error-banner")).to_be_visible()
    await expect(page.get_by_test_id("answer")).to_have_count(1)
    # What the gateway answered the browser (the browser hides it from the page):
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(
            f"{cross_origin.refusing}/v1/chat/completions",
            headers={"origin": cross_origin.site.origin, "x-forwarded-for": address},
            json={"model": "tiergate-small", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    # Chromium reports the blocked requests on the console; those, and only those, are
    # expected here.
    blocked = [line for line in watched.console_errors if "CORS policy" in line]
    assert blocked, watched.console_errors
    watched.console_errors[:] = [e for e in watched.console_errors if e not in blocked]


async def test_same_origin_through_the_sites_proxy_chat_and_sign_in(
    mesh: Mesh, proxy: Site, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    proxy.pages["/chat.html"] = (
        chat_page("", '<tiergate-chat mode="page"></tiergate-chat>'),
        PAGE_CSP,
    )
    await engine_says(page, {"content": "Through the proxy."})
    await page.goto(proxy.origin + "/chat.html")
    await ask(page, "Hello, proxy.")
    await expect(page.get_by_test_id("answer").last).to_contain_text("Through the proxy.")
    await expect(page.get_by_test_id("model-label")).to_contain_text("small model on CPU")
    await sign_in(page, mesh)
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies["tg_access"]["domain"] == "localhost"  # first-party, on the site's origin
    assert cookies["tg_access"]["httpOnly"] is True
    await engine_says(page, {"content": "Signed in, through the proxy."})
    chat = await asked(page, "Who am I now?")
    assert chat.headers["x-tiergate-tier"] == "user"
    await expect(page.get_by_test_id("answer").last).to_contain_text("Signed in, through")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Signed in")
