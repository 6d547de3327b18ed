"""The README's screenshots of the web chat, taken from the real mesh (gateway, auth, fake
engines) in Chromium: anonymous and empty, an answer with its sources, the quick answer from
the small model while the large one wakes, and the signed-in account panel with consent on
and the history.

The one staged part: the fake mesh has no retrieval corpus, so the answer-with-sources shot
takes the real gateway's response (its real headers, the fake engine's real stream) and adds
an `x-tiergate-source-list` header naming two README sections, as a grounded answer would.

By default the PNGs go to a temporary directory (so a test run never dirties the tree);
`TIERGATE_SCREENSHOTS=docs .venv/bin/pytest tests/web/test_screenshots.py` rewrites the
committed ones under docs/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import BrowserContext, Page, Route, ViewportSize, expect

from .conftest import REPO, Mesh, Watched, sign_in
from .test_chat_browser import ask, engine_says, visitor

pytestmark = pytest.mark.browser

VIEWPORT: ViewportSize = {"width": 1000, "height": 700}
MAX_BYTES = 200_000
NAMES = ("web-chat-anonymous", "web-chat-sources", "web-chat-waking", "web-chat-signed-in")

STAGED_ANSWER = (
    "Anonymous visitors are answered by the **small model on CPU**, with a request limit per"
    " window [1]. Signed-in users reach the large model on the GPU box; while it wakes, the"
    " small one answers first and the label says so [2]."
)
STAGED_SOURCES = [
    {
        "n": 1,
        "id": "README.md#12",
        "title": "Tiers, sign-in and API keys",
        "heading_path": ["Tiers, sign-in and API keys"],
        "source": "README.md",
    },
    {
        "n": 2,
        "id": "README.md#17",
        "title": "The GPU box and CPU-first",
        "heading_path": ["The GPU box and CPU-first"],
        "source": "README.md",
    },
]


def out_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get("TIERGATE_SCREENSHOTS")
    target = (REPO / chosen) if chosen else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    return target


async def staged_sources(page: Page) -> None:
    """The next chat answers come from the real gateway, plus a source list (staged)."""

    async def add_sources(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["fake"] = {"content": STAGED_ANSWER}
        response = await route.fetch(post_data=json.dumps(body))
        headers = {**response.headers, "x-tiergate-source-list": quote(json.dumps(STAGED_SOURCES))}
        await route.fulfill(response=response, headers=headers)

    await page.unroute("**/v1/chat/completions")
    await page.route("**/v1/chat/completions", add_sources)


async def shoot(page: Page, where: Path, name: str) -> Path:
    await page.mouse.move(0, 0)  # no hover state in the picture
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    path = where / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


async def test_screenshots_of_the_widget(
    mesh: Mesh, context: BrowserContext, watched: Watched, tmp_path: Path
) -> None:
    page = watched.page
    where = out_dir(tmp_path)
    await page.set_viewport_size(VIEWPORT)
    await visitor(context)
    await page.goto(mesh.url + "/")
    await expect(page.get_by_test_id("ai-notice")).to_be_visible()
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    shots = [await shoot(page, where, NAMES[0])]

    await staged_sources(page)
    await ask(page, "How does tiergate choose the model that answers me?")
    answer = page.get_by_test_id("answer").last
    await expect(answer.get_by_test_id("source-item")).to_have_count(2)
    await expect(answer.get_by_test_id("citation")).to_have_count(2)
    await expect(answer.get_by_test_id("feedback-up")).to_be_visible()
    shots.append(await shoot(page, where, NAMES[1]))

    # Signed in, the routed model asks for the large one first; its GPU fake is asleep, so
    # the small one answers meanwhile (CPU-first) and the answer is marked as such.
    await sign_in(page, mesh)
    await page.get_by_test_id("new-conversation").click()
    await page.get_by_test_id("account-toggle").click()
    await page.get_by_test_id("consent-switch").check()
    await expect(page.get_by_test_id("history-empty")).to_be_visible()
    await page.get_by_test_id("account-toggle").click()
    await engine_says(page, {"content": "The small model answers now; the large one is waking."})
    await ask(page, "Can the large model answer this?")
    first = page.get_by_test_id("answer").last
    await expect(first.get_by_test_id("quick-answer")).to_be_visible()
    await expect(first.get_by_test_id("answer-model")).to_have_text("small model on CPU")
    shots.append(await shoot(page, where, NAMES[2]))

    await page.get_by_test_id("account-toggle").click()
    await expect(page.get_by_test_id("consent-switch")).to_be_checked()
    await expect(page.get_by_test_id("history-item")).to_have_count(1, timeout=15_000)
    shots.append(await shoot(page, where, NAMES[3]))

    for shot in shots:
        assert shot.is_file(), shot
        size = shot.stat().st_size
        assert 1_000 < size <= MAX_BYTES, (shot, size)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
    assert await watched.csp_violations() == []
    assert watched.unexpected_errors() == [], watched.console_errors
