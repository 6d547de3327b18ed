"""What a visitor sees and how they can use it: the CPU-first upgrade (the small model answers
while the large one wakes, then the large one takes over), English and French, keyboard-only
use with visible focus and the screen-reader announcement, and the bubble's lazy chunk and
the full page's layout stability (CLS 0).

The mesh is this module's own (module scope), so its GPU fake starts asleep here: the upgrade
test is the first to ask for the large model.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from .conftest import LARGE, SMALL, Mesh, Watched, chat_page, serve_page, sign_in, statuses
from .test_chat_browser import ask, axe, engine_says, visitor

pytestmark = pytest.mark.browser

_DEEP_FOCUS = """() => {
  let el = document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  if (!el) return null;
  const style = getComputedStyle(el);
  return {testid: el.dataset.testid ?? null, tag: el.tagName,
          outline: style.outlineStyle, width: style.outlineWidth};
}"""

_CLS = """
window.__cls = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__cls.push({value: e.value, input: e.hadRecentInput});
}).observe({type: 'layout-shift', buffered: true});
"""


async def focused(page: Page) -> dict[str, Any]:
    found: dict[str, Any] | None = await page.evaluate(_DEEP_FOCUS)
    assert found is not None
    return found


async def tab_to(page: Page, testid: str, presses: int = 25) -> dict[str, Any]:
    """Presses Tab until the control `testid` has the focus (keyboard only, as a visitor)."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        now = await focused(page)
        if now["testid"] == testid:
            return now
    raise AssertionError(f"{testid} never got the focus by Tab")


async def test_cpu_first_upgrade_labels_the_quick_answer_then_the_large_one(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await page.goto(mesh.url + "/")
    assert LARGE not in await statuses(mesh)  # anonymous visitors are never told of it
    await sign_in(page, mesh)
    assert (await statuses(mesh, context))[LARGE] != "ready"  # the GPU fake is still asleep
    await engine_says(page, {"content": "Meanwhile, the small one."})
    await ask(page, "Hello?")
    first = page.get_by_test_id("answer").nth(0)  # a locator: `.last` would move on
    await expect(first).to_contain_text("Meanwhile, the small one.")
    await expect(first).to_have_attribute("data-model", SMALL)
    await expect(first).to_have_attribute("data-backend", "cpu")
    await expect(first.get_by_test_id("answer-model")).to_have_text("small model on CPU")
    await expect(first.get_by_test_id("quick-answer")).to_be_visible()
    await expect(page.get_by_test_id("model-label")).to_contain_text("small model on CPU")
    # The large one takes 3 s to load: the page must not claim it is ready before it is.
    assert (await statuses(mesh, context))[LARGE] != "ready"
    await expect(page.get_by_test_id("large-ready")).to_have_count(0)
    await expect(page.get_by_test_id("large-ready")).to_be_visible(timeout=30_000)
    assert (await statuses(mesh, context))[LARGE] == "ready"
    assert await axe(page) == []
    await engine_says(page, {"content": "Now the large one."})
    await ask(page, "And now?")
    second = page.get_by_test_id("answer").nth(1)
    await expect(second).to_contain_text("Now the large one.")
    await expect(second).to_have_attribute("data-model", LARGE)
    await expect(second).to_have_attribute("data-backend", "gpu")
    await expect(second.get_by_test_id("answer-model")).to_have_text("large model on GPU")
    await expect(second.get_by_test_id("quick-answer")).to_have_count(0)
    await expect(page.get_by_test_id("model-label")).to_contain_text("large model on GPU")
    await expect(page.get_by_test_id("large-ready")).to_have_count(0)
    # The first answer keeps its own label: it still says which model wrote it.
    await expect(first.get_by_test_id("answer-model")).to_have_text("small model on CPU")


async def test_french_from_the_pages_lang_and_english_otherwise(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await page.goto(mesh.url + "/")  # the browser is en-US, the page says nothing else
    await expect(page.get_by_test_id("send")).to_have_text("Send")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    await serve_page(
        page,
        mesh.url + "/fr.html",
        chat_page("", '<tiergate-chat mode="page"></tiergate-chat>', lang="fr"),
    )
    await page.goto(mesh.url + "/fr.html")
    await expect(page.get_by_test_id("send")).to_have_text("Envoyer")
    await expect(page.get_by_test_id("ai-notice")).to_contain_text("Vous discutez avec un modèle")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonyme")
    await expect(page.get_by_test_id("account-toggle")).to_have_text("Se connecter")
    await engine_says(page, {"content": "Bonjour."})
    await ask(page, "Salut ?")
    await expect(page.get_by_test_id("answer").last).to_contain_text("Bonjour.")
    await expect(page.get_by_test_id("model-label")).to_contain_text("petit modèle sur CPU")
    await expect(page.get_by_test_id("announcer")).to_have_text("Réponse : Bonjour.")
    assert await axe(page) == []


async def test_keyboard_only_enter_sends_escape_stops_focus_shows_and_answers_are_announced(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await page.goto(mesh.url + "/")
    await expect(page.get_by_test_id("send")).to_be_visible()
    # Every control reached by Tab shows its focus (a real outline, not `outline: none`).
    for testid in ("account-toggle", "new-conversation", "send"):
        await page.mouse.click(1, 1)  # start again from the page's top
        ring = await tab_to(page, testid)
        assert ring["outline"] not in ("none", ""), ring
        assert ring["width"] != "0px", ring
    await page.mouse.click(1, 1)
    await tab_to(page, "chat-input")
    await engine_says(page, {"chunks": 400, "tokens_per_s": 10})
    await page.keyboard.type("Tell me a long story.")
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("stop")).to_be_visible()
    await expect(page.get_by_test_id("user-message").last).to_contain_text("Tell me a long story.")
    await expect(page.get_by_test_id("answer").last).not_to_have_text("", timeout=10_000)
    await page.keyboard.press("Escape")
    await expect(page.get_by_test_id("send")).to_be_visible()
    note = page.get_by_test_id("answer").last.get_by_test_id("answer-note")
    await expect(note).to_have_attribute("data-note", "stopped")
    # Nothing is announced for a stopped answer; a finished one is, once, in full.
    await expect(page.get_by_test_id("announcer")).to_have_text("")
    assert (await focused(page))["testid"] == "chat-input"  # focus stays where the visitor is
    await engine_says(page, {"pieces": ["A short ", "and **complete** ", "answer."]})
    await page.keyboard.type("A short one, please.")
    await page.keyboard.press("Enter")
    announcer = page.get_by_test_id("announcer")
    await expect(announcer).to_have_text("Answer: A short and complete answer.")
    assert await announcer.get_attribute("aria-live") == "polite"


async def test_the_bubble_loads_the_chat_only_when_used(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await serve_page(
        page, mesh.url + "/bubble.html", chat_page("", "<p>A host page.</p><tiergate-chat>")
    )
    await page.goto(mesh.url + "/bubble.html")
    launcher = page.get_by_test_id("launcher")
    await expect(launcher).to_be_visible()
    await page.wait_for_load_state("networkidle")
    loaded: list[str] = await page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert any(name.endswith("/widget/widget.js") for name in loaded), loaded
    assert not any("/widget/app-" in name for name in loaded), loaded
    await expect(page.get_by_test_id("chat-input")).to_have_count(0)
    await launcher.click()
    await expect(page.get_by_test_id("chat-input")).to_be_visible()
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    loaded = await page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert sum("/widget/app-" in name for name in loaded) == 1, loaded
    await page.keyboard.press("Escape")  # closes the bubble, focus back on the launcher
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    assert await launcher.evaluate("el => el.getRootNode().activeElement === el")


async def test_the_full_page_does_not_shift_as_the_chat_arrives(
    mesh: Mesh, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await page.add_init_script(_CLS)
    await page.goto(mesh.url + "/")
    await expect(page.get_by_test_id("chat-input")).to_be_visible()
    await page.wait_for_load_state("networkidle")
    # Two frames: any shift of the chat's arrival has been laid out and reported.
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    shifts: list[dict[str, Any]] = await page.evaluate("window.__cls")
    assert sum(s["value"] for s in shifts if not s["input"]) == 0, shifts
    await engine_says(page, {"content": "A first answer."})
    await ask(page, "Hello.")
    await expect(page.get_by_test_id("answer").last).to_contain_text("A first answer.")
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    shifts = await page.evaluate("window.__cls")
    assert sum(s["value"] for s in shifts if not s["input"]) == 0, shifts
