"""The widget at the gateway's limits: the anonymous request limit (429) and a model that is
still waking (503 `model_waking`), each shown as its own banner with when to ask again.

The gateway, its limiter and its wake coordinator are real; only the engines are fakes (the GPU
one is scaled to zero and takes 3 s to load). Chromium logs every 4xx/5xx fetch as "Failed to
load resource", so these tests declare the HTTP errors they provoke.
"""

from __future__ import annotations

import math
import re

import httpx
import pytest
from playwright.async_api import BrowserContext, Response, expect

from .conftest import (
    ANONYMOUS_REQUESTS,
    LARGE,
    SMALL,
    Mesh,
    Watched,
    chat_page,
    serve_page,
    sign_in,
    statuses,
)
from .test_chat_browser import ask, axe, engine_says, visitor

pytestmark = pytest.mark.browser


def _chat(response: Response) -> bool:
    return response.url.endswith("/v1/chat/completions") and response.request.method == "POST"


def _when(seconds: int) -> list[str]:
    """What the banner may say for a Retry-After of `seconds` (i18n.ts `duration`), allowing
    for the second or two that pass before the text is read."""
    if seconds < 90:
        return [f"{n} s" for n in range(seconds, seconds - 3, -1)]
    return sorted({f"{math.ceil((seconds - d) / 60)} min" for d in (0, 2)})


async def test_the_21st_anonymous_message_shows_the_limit_and_a_sign_in_nudge(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    watched.http_errors_expected = True  # the 429 is the point
    address = await visitor(context)
    # The first 19 requests of this visitor go straight to the gateway (same client address):
    # the limiter counts requests, not pages.
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(ANONYMOUS_REQUESTS - 1):
            answer = await http.post(
                f"{mesh.url}/v1/chat/completions",
                headers={"x-forwarded-for": address},
                json={
                    "model": SMALL,
                    "messages": [{"role": "user", "content": "hi"}],
                    "fake": {"content": "ok"},
                },
            )
            assert answer.status_code == 200, answer.text
    await engine_says(page, {"content": "The last one."})
    await page.goto(mesh.url + "/")
    await ask(page, "Message 20.")
    await expect(page.get_by_test_id("answer").last).to_contain_text("The last one.")
    await expect(page.get_by_test_id("remaining")).to_have_attribute("data-remaining", "0")
    await expect(page.get_by_test_id("signin-nudge")).to_be_visible()
    await expect(page.get_by_test_id("limit-banner")).to_have_count(0)

    async with page.expect_response(_chat) as refused:
        await ask(page, "Message 21.")
    response = await refused.value
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "rate_limit_exceeded"
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= 900
    banner = page.get_by_test_id("limit-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text(re.compile("|".join(map(re.escape, _when(retry_after)))))
    await expect(banner).to_contain_text("sign in for more")
    await expect(page.get_by_test_id("answer")).to_have_count(1)  # no empty answer is left
    nudge = page.get_by_test_id("limit-signin")
    await expect(nudge).to_be_visible()
    assert await axe(page) == []
    await nudge.click()
    await expect(page.get_by_test_id("signin-email")).to_be_visible()


async def test_a_model_still_waking_shows_the_waking_state_then_retry_answers(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    watched.http_errors_expected = True  # the 503 is the point
    await visitor(context)
    await page.goto(mesh.url + "/")
    await sign_in(page, mesh)
    # A page that asks the large model by name: a named model is never swapped for another,
    # so while its GPU backend is asleep the gateway wakes it and answers 503 model_waking.
    await serve_page(
        page,
        mesh.url + "/test-page.html",
        chat_page("", f'<tiergate-chat mode="page" model="{LARGE}"></tiergate-chat>'),
    )
    await page.goto(mesh.url + "/test-page.html")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Signed in")
    await engine_says(page, {"content": "Awake now."})
    async with page.expect_response(_chat) as refused:
        await ask(page, "Are you there?")
    response = await refused.value
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "model_waking"
    retry_after = int(response.headers["retry-after"])
    banner = page.get_by_test_id("waking-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("The model is waking up")
    await expect(banner).to_have_attribute("role", "status")
    await expect(banner.get_by_test_id("banner-retry")).to_be_visible()
    assert await axe(page) == []
    # The widget polls /v1/status; once the large model is ready the banner says "a moment".
    await expect(banner).to_contain_text("Try again in a moment", timeout=(retry_after + 15) * 1000)
    assert (await statuses(mesh, context))[LARGE] == "ready"
    await banner.get_by_test_id("banner-retry").click()
    answer = page.get_by_test_id("answer").last
    await expect(answer).to_contain_text("Awake now.")
    await expect(answer).to_have_attribute("data-backend", "gpu")
    await expect(answer.get_by_test_id("answer-model")).to_have_text("large model on GPU")
    await expect(page.get_by_test_id("waking-banner")).to_have_count(0)
