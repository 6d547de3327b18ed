"""The web chat in Chromium against the real gateway and auth service (fake engines behind).

What the fake engine answers is chosen per test: the page's chat requests are intercepted on
their way to the gateway and given a `fake` field (the engine's instructions); everything
else — the gateway, its headers, the cookies, the records — is real.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Response, Route, expect

from .conftest import ADMIN, ANONYMOUS_REQUESTS, Mesh, Watched, sign_in

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"


async def engine_says(page: Page, behaviour: dict[str, Any]) -> None:
    """Every chat request of `page` from now on carries `fake: behaviour` to the engine."""

    async def add_fake(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["fake"] = behaviour
        await route.continue_(post_data=json.dumps(body))

    await page.unroute("**/v1/chat/completions")
    await page.route("**/v1/chat/completions", add_fake)


async def visitor(context: BrowserContext) -> str:
    """A fresh client address for this context (the gateway trusts the test's proxy header)."""
    address = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    await context.set_extra_http_headers({"x-forwarded-for": address})
    return address


async def ask(page: Page, text: str) -> None:
    box = page.get_by_test_id("chat-input")
    await box.fill(text)
    await box.press("Enter")


async def asked(page: Page, text: str) -> Response:
    """`ask`, and the gateway's answer to the chat request it made (headers in)."""
    async with page.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as chat:
        await ask(page, text)
    return await chat.value


async def axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page (shadow roots included)."""
    # Through the debugger protocol: a <script> tag would be (rightly) refused by the page's
    # Content-Security-Policy.
    await page.evaluate("(source) => { (0, eval)(source); }", AXE.read_text())
    found: list[dict[str, Any]] = await page.evaluate(
        """axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa']}).then(r =>
             r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
               .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target)})))"""
    )
    return found


async def engine_requests(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{url}/_fake/requests")
    return [r for r in answer.json() if r["path"] == "/v1/chat/completions"]


async def test_an_anonymous_answer_streams_as_safe_markdown_with_its_labels(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await engine_says(
        page,
        {
            "pieces": [
                "**Tiers** route ",
                "requests.<script>window.__pwned = 1</script>",
                '<img src=x onerror="window.__pwned = 2">',
                " [link](javascript:alert(1)) and ",
                "[docs](https://example.org)\n\n```python\nprint('hi')\n```\n",
            ]
        },
    )
    await page.goto(mesh.url + "/")
    await expect(page.get_by_test_id("ai-notice")).to_be_visible()
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    await ask(page, "How are requests routed?")
    answer = page.get_by_test_id("answer").last
    await expect(answer.get_by_test_id("feedback-up")).to_be_visible()
    html = await answer.inner_html()
    assert "<strong>Tiers</strong>" in html
    for unsafe in ("<script", "<img", "javascript:"):
        assert unsafe not in html, unsafe
    assert "&lt;img" in html  # the model's HTML is shown as text, never parsed
    handlers = await answer.evaluate(
        "el => [...el.querySelectorAll('*')].flatMap(n => [...n.attributes])"
        ".filter(a => a.name.startsWith('on')).length"
    )
    assert handlers == 0
    assert await page.evaluate("window.__pwned") is None
    link = answer.locator("a[href='https://example.org']")
    assert await link.get_attribute("rel") == "noopener noreferrer"
    await expect(answer.get_by_test_id("copy-code")).to_have_count(1)
    await expect(page.get_by_test_id("model-label")).to_contain_text("small model on CPU")
    await expect(page.get_by_test_id("remaining")).to_contain_text(
        f"{ANONYMOUS_REQUESTS - 1} of {ANONYMOUS_REQUESTS}"
    )
    # Feedback reaches the records, with the answer's id.
    answer_id = await answer.get_attribute("data-answer-id")
    assert answer_id is not None
    assert answer_id.startswith("chatcmpl-")
    await answer.get_by_test_id("feedback-down").click()
    await expect(answer.get_by_test_id("feedback-thanks")).to_be_visible()
    async with httpx.AsyncClient(timeout=10) as http:
        admin = await http.get(
            f"{mesh.auth.base_url}/v1/admin/feedback",
            headers={"authorization": f"Bearer {ADMIN}"},
        )
    listed = admin.json()["data"]
    assert [(f["answer_id"], f["rating"]) for f in listed if f["answer_id"] == answer_id] == [
        (answer_id, "down")
    ]
    assert await axe(page) == []


async def test_stop_ends_the_stream_and_the_engine_sees_it(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await engine_says(page, {"chunks": 400, "tokens_per_s": 10})
    await page.goto(mesh.url + "/")
    await ask(page, "Tell me a long story.")
    await expect(page.get_by_test_id("stop")).to_be_visible()
    await expect(page.get_by_test_id("answer").last).not_to_have_text("", timeout=10_000)
    await page.get_by_test_id("stop").click()
    await expect(page.get_by_test_id("send")).to_be_visible()
    await expect(page.get_by_test_id("answer").last.get_by_test_id("answer-note")).to_be_visible()

    async def engine_saw_the_client_leave() -> bool:
        last = (await engine_requests(mesh.cpu_url))[-1]
        return bool(last["outcome"] == "client_disconnected" and last["chunks_sent"] < 400)

    for _ in range(100):
        if await engine_saw_the_client_leave():
            break
        await page.wait_for_timeout(100)
    assert await engine_saw_the_client_leave(), (await engine_requests(mesh.cpu_url))[-1]


async def test_a_stream_that_breaks_shows_an_error_with_retry(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await engine_says(page, {"chunks": 20, "drop_after": 3})
    await page.goto(mesh.url + "/")
    await ask(page, "Say something.")
    await expect(page.get_by_test_id("error-banner")).to_be_visible(timeout=15_000)
    retry = page.get_by_test_id("banner-retry")
    await expect(retry).to_be_visible()
    await engine_says(page, {"content": "Back again."})
    await retry.click()
    await expect(page.get_by_test_id("answer").last).to_contain_text("Back again.")


async def test_sign_in_consent_history_erase_and_sign_out(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await page.goto(mesh.url + "/")
    await sign_in(page, mesh)  # through the widget, with the code from the mail sink
    await page.get_by_test_id("account-toggle").click()  # the account panel again
    # The session lives in HttpOnly cookies only: nothing readable by script.
    assert "tg_" not in await page.evaluate("document.cookie")
    stored = await page.evaluate("JSON.stringify(localStorage)")
    assert "eyJ" not in stored  # no JWT
    assert "tgr_" not in stored  # no refresh token
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies["tg_access"]["httpOnly"] is True
    assert cookies["tg_access"]["sameSite"] == "Strict"
    await page.get_by_test_id("consent-switch").check()
    await expect(page.get_by_test_id("history-empty")).to_be_visible()
    await engine_says(page, {"content": "Kept for you."})
    await ask(page, "Please remember this.")
    await expect(page.get_by_test_id("answer").last).to_contain_text("Kept for you.")
    await expect(page.get_by_test_id("history-item")).to_have_count(1, timeout=15_000)
    assert await axe(page) == []
    await page.get_by_test_id("history-erase").click()
    await expect(page.get_by_test_id("history-item")).to_have_count(0)
    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    assert "tg_access" not in {c["name"] for c in await context.cookies()}


async def test_an_expiring_session_is_refreshed_before_the_next_question(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    """The browser drops the access cookie when it expires (15 minutes): a question sent
    without it would be answered as anonymous. The widget refreshes first."""
    page = watched.page
    await visitor(context)
    await page.clock.install()  # the page's clock: time flows, and can be moved on
    await page.goto(mesh.url + "/")
    await sign_in(page, mesh)
    # 16 minutes later: the browser has let the access cookie go (only the refresh one,
    # scoped to /v1/auth, is left).
    await page.clock.fast_forward("16:00")
    await context.clear_cookies(name="tg_access")
    refreshes: list[int] = []
    page.on(
        "response",
        lambda r: refreshes.append(r.status) if r.url.endswith("/v1/auth/refresh") else None,
    )
    await engine_says(page, {"content": "Still you."})
    chat = await asked(page, "Am I still signed in?")
    assert refreshes == [200]
    assert chat.headers["x-tiergate-tier"] == "user"
    await expect(page.get_by_test_id("answer").last).to_contain_text("Still you.")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Signed in")
    assert "tg_access" in {c["name"] for c in await context.cookies()}
