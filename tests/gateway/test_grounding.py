"""Grounding through the gateway, in process: a real rag app, the fake engine."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import msgspec

from tiergate_gateway.grounding import INSTRUCTION
from tiergate_gateway.settings import RagLink, TierPolicy
from tiergate_rag.app import create_app as create_rag
from tiergate_rag.settings import RagSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.openai_schema import validate_chat_completion, validate_sse

from .conftest import Gateway, chat_body, gateway_settings, last_chat, running

QUESTION = [{"role": "user", "content": "How many requests do anonymous users get?"}]


async def test_anonymous_answers_are_grounded_with_sources(
    engine: FakeEngine, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "limits.md").write_text(
        "# Limits\n\nAnonymous users get twenty requests per fifteen minutes."
    )
    rag_settings = RagSettings(index_dir=str(tmp_path / "index"), corpus=[str(corpus)])
    async with serve_in_loop(create_rag(rag_settings)) as rag_url:
        settings = msgspec.structs.replace(
            gateway_settings(engine.base_url),
            tiers={"anonymous": TierPolicy(grounding=True)},
            rag=RagLink(url=rag_url, timeout_s=2),
        )
        async with running(settings, engine) as gateway:
            response = await gateway.client.post(
                "/v1/chat/completions",
                json=chat_body(messages=[{"role": "system", "content": "Be brief."}, *QUESTION]),
            )
            assert response.status_code == 200
            assert response.headers["x-tiergate-grounding"] == "grounded"
            assert response.headers["x-tiergate-sources"] == "limits.md#0"
            # Our extension rides along in an answer that is still OpenAI's schema.
            answer = validate_chat_completion(response.content)
            assert answer["tiergate_sources"][0]["doc_id"] == "limits.md"
            sent = last_chat(engine).body
            assert isinstance(sent, dict)
            roles = [m["role"] for m in sent["messages"]]
            assert roles == ["system", "system", "user"]
            # The grounding first, its fixed instruction leading (the prompt cache's prefix),
            # then the caller's own system message and the conversation.
            grounding = sent["messages"][0]["content"]
            assert grounding.startswith(INSTRUCTION + "\n\n[1] ")
            assert sent["messages"][1] == {"role": "system", "content": "Be brief."}
            assert "[1] Limits" in grounding
            assert "twenty requests per fifteen minutes" in grounding
            stream = await gateway.client.post(
                "/v1/chat/completions", json=chat_body(messages=QUESTION, stream=True)
            )
            assert stream.headers["x-tiergate-sources"] == "limits.md#0"
            # A stream has no body field to carry them: the web chat reads this header.
            listed = json.loads(unquote(stream.headers["x-tiergate-source-list"]))
            assert listed == [
                {
                    "n": 1,
                    "id": "limits.md#0",
                    "title": "Limits",
                    "heading_path": listed[0]["heading_path"],
                    "source": listed[0]["source"],
                }
            ]
            assert listed[0]["source"].endswith("limits.md")
            assert stream.text.endswith("data: [DONE]\n\n")
            validate_sse(stream.content)


async def test_retrieval_down_answers_ungrounded(engine: FakeEngine) -> None:
    settings = msgspec.structs.replace(
        gateway_settings(engine.base_url),
        tiers={"anonymous": TierPolicy(grounding=True)},
        rag=RagLink(url="http://127.0.0.1:9", timeout_s=0.2),
    )
    async with running(settings, engine) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(messages=QUESTION)
        )
        assert response.status_code == 200
        assert response.headers["x-tiergate-grounding"] == "ungrounded; reason=error"
        assert "x-tiergate-sources" not in response.headers
        assert "tiergate_sources" not in response.json()
        sent = last_chat(engine).body
        assert isinstance(sent, dict)
        assert [m["role"] for m in sent["messages"]] == ["user"]


DOCS = {
    "limits.md": "# Limits\n\n## Anonymous tier\n\n"
    + "Anonymous visitors may send twenty requests per fifteen minutes.\n"
    + "".join(f"Row {n}: the dashboard shows graph number {n} of the week.\n" for n in range(30))
    + "Each anonymous answer is capped at three hundred tokens.\n",
    "keys.md": "# Keys\n\nAPI keys are stored as an HMAC under the pepper.\n"
    + "".join(f"Note {n}: rotate the pepper only with a migration plan.\n" for n in range(30)),
    "engines.md": "# Engines\n\nThe small model runs on llama.cpp; anonymous visitors meet it.\n",
}


@contextlib.asynccontextmanager
async def _grounded_gateway(
    engine: FakeEngine, tmp_path: Path, **tier: object
) -> AsyncIterator[Gateway]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    rag_settings = RagSettings(index_dir=str(tmp_path / "index"), corpus=[str(corpus)])
    async with serve_in_loop(create_rag(rag_settings)) as rag_url:
        settings = msgspec.structs.replace(
            gateway_settings(engine.base_url),
            tiers={"anonymous": TierPolicy(grounding=True, **tier)},  # type: ignore[arg-type]
            rag=RagLink(url=rag_url, timeout_s=2),
        )
        async with running(settings, engine) as gateway:
            yield gateway


def _ask(question: str) -> dict[str, object]:
    return chat_body(messages=[{"role": "user", "content": question}])


async def test_an_irrelevant_question_goes_ungrounded(engine: FakeEngine, tmp_path: Path) -> None:
    async with _grounded_gateway(engine, tmp_path) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions", json=_ask("What is the capital of France?")
        )
        assert response.status_code == 200
        assert response.headers["x-tiergate-grounding"] == "ungrounded; reason=not_relevant"
        assert "x-tiergate-sources" not in response.headers
        assert "tiergate_sources" not in response.json()
        sent = last_chat(engine).body
        assert isinstance(sent, dict)
        assert [m["role"] for m in sent["messages"]] == ["user"]  # no sources, no instruction


async def test_sources_are_the_passages_that_matched_within_the_budget(
    engine: FakeEngine, tmp_path: Path
) -> None:
    # 100 estimated tokens = 300 characters at the default 3 characters per token.
    async with _grounded_gateway(engine, tmp_path, grounding_tokens=100) as gateway:
        question = "How many requests may anonymous visitors send, and how are API keys stored?"
        response = await gateway.client.post("/v1/chat/completions", json=_ask(question))
        assert response.headers["x-tiergate-grounding"] == "grounded"
        sent = last_chat(engine).body
        assert isinstance(sent, dict)
        message = sent["messages"][0]["content"]
        assert message.startswith(INSTRUCTION)
        sources = message[len(INSTRUCTION) :]
        assert len(sources) <= 300 + 2
        # The matching lines, not the thirty rows of filler around them.
        assert "twenty requests per fifteen minutes" in sources
        assert "Row 12" not in sources
        assert "Note 12" not in sources


async def test_the_budget_bounds_the_sources_of_every_question(
    engine: FakeEngine, tmp_path: Path
) -> None:
    async with _grounded_gateway(engine, tmp_path, grounding_tokens=50) as gateway:
        for question in (
            "How many requests may anonymous visitors send?",
            "How are API keys stored under the pepper?",
            "Which model do anonymous visitors meet?",
        ):
            response = await gateway.client.post("/v1/chat/completions", json=_ask(question))
            assert response.headers["x-tiergate-grounding"] == "grounded", question
            sent = last_chat(engine).body
            assert isinstance(sent, dict)
            assert len(sent["messages"][0]["content"]) - len(INSTRUCTION) <= 150 + 2
