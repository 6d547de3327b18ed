"""The real thing, in the browser: an anonymous visitor asks about tiergate and the real small
model (SmolLM2 on llama.cpp, the cpu-llm service) streams an answer grounded by the rag service
over tiergate's own documentation (config/rag.toml's corpus), with its sources listed.

No fake anywhere: rag, cpu-llm and a gateway serving the built widget run as processes (this
module's own; marked `model`: it starts one, through tiergate_testkit.grounded).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from tiergate_testkit.grounded import grounded_backends, shipped_corpus
from tiergate_testkit.services import ServiceProcess

from .conftest import SMALL, Watched
from .test_chat_browser import asked, axe, visitor

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ENGINE_MODEL = "smollm2-135m-instruct"
# Grounded by the shipped docs (evals/answer.toml, `ground = true`; the decision itself is
# tests/gateway/test_grounding_decisions.py's).
QUESTION = "How many requests may an anonymous visitor send to tiergate in 15 minutes?"


@pytest.fixture(scope="module")
def gateway(web_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("web-grounded")
    with grounded_backends(
        work / "index",
        shipped_corpus(REPO),
        model_id=ENGINE_MODEL,
        cpu_env={"TIERGATE_CPU_LLM_ENGINE__PARALLEL": "2"},
    ) as backends:
        rag, cpu = backends.rag, backends.cpu
        env = {
            "TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL": f"{cpu.base_url}/v1",
            "TIERGATE_GATEWAY_BACKENDS__CPU__KIND": "llamacpp",
            "TIERGATE_GATEWAY_BACKENDS__CPU__HEALTH_URL": f"{cpu.base_url}/readyz",
            "TIERGATE_GATEWAY_MODELS": json.dumps(
                [{"id": SMALL, "backend": "cpu", "engine_model": ENGINE_MODEL}]
            ),
            "TIERGATE_GATEWAY_TIERS": json.dumps(
                {"anonymous": {"models": [SMALL], "grounding": True, "max_tokens": 96}}
            ),
            "TIERGATE_GATEWAY_RAG__URL": rag.base_url,
            # The decision, not the latency: a busy machine must not make it ungrounded.
            "TIERGATE_GATEWAY_RAG__TIMEOUT_S": "10",
            "TIERGATE_GATEWAY_AUTH__URL": "",
            "TIERGATE_GATEWAY_WEB__DIST_DIR": str(web_dist),
        }
        with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as gateway:
            yield gateway.base_url


async def test_an_anonymous_question_about_tiergate_streams_a_grounded_answer_with_sources(
    gateway: str, context: BrowserContext, watched: Watched
) -> None:
    page = watched.page
    await visitor(context)
    await page.goto(gateway + "/")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    response = await asked(page, QUESTION)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-tiergate-grounding"] == "grounded"
    listed = json.loads(urllib.parse.unquote(response.headers["x-tiergate-source-list"]))
    assert listed, response.headers
    answer = page.get_by_test_id("answer").last
    # Finished: the feedback buttons come once the stream has ended.
    await expect(answer.get_by_test_id("feedback-up")).to_be_visible(timeout=120_000)
    await expect(answer).to_have_attribute("aria-busy", "false")
    # Streamed: the body was many SSE events, ended by [DONE].
    events = [line for line in (await response.text()).splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert sum('"content"' in line for line in events) > 3, events[:5]
    assert (await answer.get_by_test_id("answer-note").count()) == 0  # no error, no cut
    assert (await answer.locator(".body").inner_text()).strip()
    # The sources, as the gateway listed them: title, heading path, document.
    items = answer.get_by_test_id("source-item")
    await expect(items).to_have_count(len(listed))
    for item, source in zip(await items.all(), listed, strict=True):
        assert await item.get_attribute("data-source-id") == source["id"]
        assert await item.get_attribute("data-n") == str(source["n"])
        await expect(item).to_contain_text(source["source"])
    assert any(s["source"].endswith(".md") for s in listed), listed
    await expect(page.get_by_test_id("model-label")).to_contain_text("small model on CPU")
    await expect(answer.get_by_test_id("answer-model")).to_have_text("small model on CPU")
    await expect(page.get_by_test_id("tier-label")).to_contain_text("Anonymous")
    await expect(page.get_by_test_id("announcer")).to_contain_text("Answer:")
    assert await axe(page) == []
