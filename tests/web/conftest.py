"""The web chat in a real browser: Debian's Chromium driven by Playwright, against real
processes — the auth service (records on SQLite, cookie sign-in, a real SMTP sink), the
gateway serving the built `web/dist`, and fake engines standing in for the models (a CPU one,
and a GPU one that scales to zero and takes seconds to wake).

Every page a test opens is watched: a console error or a Content-Security-Policy violation
fails the test that caused it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright, expect

from tiergate_auth.sink import MailSink
from tiergate_gateway.web import PAGE_CSP
from tiergate_testkit.ports import free_port
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "web" / "dist"
SMALL, LARGE = "tiergate-small", "tiergate-large"
PEPPER = "web-pepper-0123456789abcdefghijklmnopqr"
ADMIN = "web-admin-0123456789abcdefghijklmnopqrs"
INTERNAL = "web-internal-0123456789abcdefghijklmno"
ANONYMOUS_REQUESTS = 20


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Chromium is not installed: run `make setup` (Debian package chromium)")
    return found


@dataclass
class Mesh:
    gateway: ServiceProcess
    auth: ServiceProcess
    sink: MailSink
    gpu_url: str
    cpu_url: str
    gateway_env: dict[str, str] = field(default_factory=dict)
    """The gateway's environment, for a test that starts a variant of it."""
    auth_env: dict[str, str] = field(default_factory=dict)
    """The auth service's, likewise."""

    @property
    def url(self) -> str:
        return self.gateway.base_url


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    http_errors_expected: bool = False
    """Chromium logs every 4xx/5xx fetch as "Failed to load resource"; a test that asks for
    a 429 or a 503 sets this, and only those lines are then let through."""

    def unexpected_errors(self) -> list[str]:
        return [
            line
            for line in self.console_errors
            if not (self.http_errors_expected and line.startswith("Failed to load resource"))
        ]

    async def csp_violations(self) -> list[Any]:
        found: list[Any] = await self.page.evaluate("window.__cspViolations || []")
        return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _fake_engine(port: int, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tiergate_testkit.fake_engine", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def gateway_env(auth_url: str, cpu_url: str, gpu_url: str, web_dist: Path) -> dict[str, str]:
    """The mesh gateway's environment (a test may start a second gateway with a variant)."""
    return {
        "PYTHONUNBUFFERED": "1",
        "TIERGATE_GATEWAY_AUTH__URL": auth_url,
        "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
        "TIERGATE_GATEWAY_AUTH__INTERNAL_TOKEN": INTERNAL,
        "TIERGATE_GATEWAY_AUTH__ACCESS_COOKIE": "tg_access",
        "TIERGATE_GATEWAY_WEB__DIST_DIR": str(web_dist),
        # Each browser context is its own visitor (X-Forwarded-For from the test).
        "TIERGATE_GATEWAY_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "TIERGATE_GATEWAY_BACKENDS": json.dumps(
            {
                "cpu": {"base_url": f"{cpu_url}/v1", "kind": "vllm"},
                "gpu": {
                    "base_url": f"{gpu_url}/v1",
                    "kind": "vllm",
                    "required_for_ready": False,
                    "connect_retries": 0,
                    "wake": {"url": f"{gpu_url}/_fake/wake", "probe_interval_s": 0.2},
                },
            }
        ),
        "TIERGATE_GATEWAY_MODELS": json.dumps(
            [
                {"id": SMALL, "backend": "cpu", "engine_model": "engine-small"},
                {"id": LARGE, "backend": "gpu", "engine_model": "engine-large"},
                {
                    "id": "tiergate",
                    "backend": "cpu",
                    "engine_model": "engine-small",
                    "routed": True,
                },
            ]
        ),
        "TIERGATE_GATEWAY_ROUTES": json.dumps(
            [
                {"tier": "anonymous", "models": [SMALL]},
                {"models": [LARGE, SMALL], "when_cold": "cpu_first"},
            ]
        ),
        "TIERGATE_GATEWAY_TIERS": json.dumps(
            {
                # As shipped: anonymous visitors may use the small model only (and
                # `tiergate`, which routes them to it); signed-in users everything.
                "anonymous": {
                    "models": [SMALL, "tiergate"],
                    "max_tokens": 300,
                    "requests": {"limit": ANONYMOUS_REQUESTS, "window_s": 900},
                },
                "user": {"models": ["*"]},
            }
        ),
    }


@pytest.fixture(scope="session")
def web_dist() -> Path:
    if not (DIST / "widget" / "widget.js").is_file() or not (DIST / "index.html").is_file():
        raise RuntimeError(f"{DIST} is not built: run `make setup` (it runs the npm build)")
    return DIST


@pytest.fixture(scope="module")
def mesh(web_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    sink = MailSink().start()
    cpu_port, gpu_port = free_port(), free_port()
    engines = [
        _fake_engine(cpu_port, "--model", "engine-small"),
        _fake_engine(gpu_port, "--model", "engine-large", "--scaled-to-zero", "--load-time", "3"),
    ]
    cpu_url, gpu_url = f"http://127.0.0.1:{cpu_port}", f"http://127.0.0.1:{gpu_port}"
    records = tmp_path_factory.mktemp("web-records")
    try:
        assert wait_until(lambda: _listening(cpu_port) and _listening(gpu_port), 15)
        auth_env = {
            "PYTHONUNBUFFERED": "1",
            "TIERGATE_AUTH_PEPPER": PEPPER,
            "TIERGATE_AUTH_ADMIN_TOKEN": ADMIN,
            "TIERGATE_AUTH_INTERNAL_TOKEN": INTERNAL,
            "TIERGATE_AUTH_SMTP__PORT": str(sink.port),
            "TIERGATE_AUTH_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "TIERGATE_AUTH_COOKIES__ENABLED": "true",
            "TIERGATE_AUTH_DATABASE__URL": f"sqlite+aiosqlite:///{records}/auth.db",
            "TIERGATE_AUTH_DATABASE__UPGRADE_ON_START": "true",
        }
        with ServiceProcess("tiergate_auth", "TIERGATE_AUTH_", auth_env) as auth:
            env = gateway_env(auth.base_url, cpu_url, gpu_url, web_dist)
            with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as gateway:
                yield Mesh(
                    gateway=gateway,
                    auth=auth,
                    sink=sink,
                    gpu_url=gpu_url,
                    cpu_url=cpu_url,
                    gateway_env=env,
                    auth_env=auth_env,
                )
    finally:
        for engine in engines:
            engine.terminate()
            engine.wait(10)
        sink.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI});
});
"""


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(locale="en-US")
    await context.add_init_script(_WATCH)
    yield context
    await context.close()


@pytest.fixture
async def watched(context: BrowserContext) -> AsyncIterator[Watched]:
    page = await context.new_page()
    watched = Watched(page)
    page.on(
        "console",
        lambda message: (
            watched.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: watched.console_errors.append(str(error)))
    yield watched
    # Expected HTTP errors (a 429 the test asked for) are the widget's to show, not the
    # console's: fetch failures the app handles do not log. Anything logged is a defect.
    violations = await watched.csp_violations() if not page.is_closed() else []
    assert violations == [], violations
    assert watched.unexpected_errors() == [], watched.console_errors


def chat_page(widget_base: str, element: str, lang: str = "en") -> str:
    """A host page with the widget: the loader from `widget_base` (`""`: the same origin)
    and `element` (a `<tiergate-chat ...>` tag); no inline script or style."""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>host</title>'
        f'<link rel="stylesheet" href="{widget_base}/widget/page.css">'
        f'<script type="module" src="{widget_base}/widget/widget.js"></script></head>'
        f"<body><main>{element}</main></body></html>"
    )


async def serve_page(page: Page, url: str, html: str) -> None:
    """`url` (on the gateway's origin) answers `html` under the gateway's own page CSP, so
    the CSP watch of `watched` still holds for a page the test wrote."""

    async def fulfil(route: Route) -> None:
        await route.fulfill(
            status=200,
            content_type="text/html; charset=utf-8",
            headers={"content-security-policy": PAGE_CSP},
            body=html,
        )

    await page.route(url, fulfil)


async def sign_in(page: Page, mesh: Mesh, *, confirmed: bool = True) -> str:
    """Signs a fresh address in through the widget on the page already open (cookie mode);
    `confirmed=False`: only enter the code (the caller checks what came of it)."""
    email = f"web-{uuid.uuid4().hex[:8]}@example.org"
    await page.get_by_test_id("account-toggle").click()
    await page.get_by_test_id("signin-email").fill(email)
    await page.get_by_test_id("signin-send-code").click()
    await expect(page.get_by_test_id("signin-code")).to_be_visible()
    code = mesh.sink.wait_for(email, 1, 10).code
    assert code is not None
    await page.get_by_test_id("signin-code").fill(code)
    await page.get_by_test_id("signin-verify").click()
    if confirmed:
        await expect(page.get_by_test_id("tier-label")).to_contain_text("Signed in")
        await page.get_by_test_id("account-toggle").click()  # close the panel again
    return email


async def statuses(mesh: Mesh, context: BrowserContext | None = None) -> dict[str, str]:
    """`GET /v1/status` as the browser's visitor sees it: anonymous, or with the context's
    access cookie the signed-in user's models (model id → state)."""
    cookies = {c["name"]: c["value"] for c in await context.cookies()} if context else {}
    headers = {"cookie": f"tg_access={cookies['tg_access']}"} if "tg_access" in cookies else {}
    async with httpx.AsyncClient(timeout=10) as http:
        found = (await http.get(f"{mesh.url}/v1/status", headers=headers)).json()
    return {d["id"]: d["state"] for d in found["data"]}
