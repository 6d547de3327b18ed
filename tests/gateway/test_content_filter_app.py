"""The content filter through the gateway: prompts refused before any engine (lease
returned), answers cut in streams and whole (chat, legacy completions, Responses), the
official client, the metric; the fake engine plays the model."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import openai
import pytest

from tiergate_gateway.content_filter import ContentFilterSettings
from tiergate_gateway.guard import GuardSettings
from tiergate_gateway.settings import GatewaySettings, TierPolicy
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.openai_schema import validate_chat_completion, validate_sse

from .conftest import ALIAS, Gateway, chat_body, gateway_settings, running

CURSE = "shithead"


def _filtered(engine: FakeEngine, **tier: Any) -> GatewaySettings:
    policy = TierPolicy(
        max_tokens=100_000, content_filter=ContentFilterSettings(), max_concurrent=1, **tier
    )
    return msgspec.structs.replace(gateway_settings(engine.base_url), tiers={"anonymous": policy})


def _engine_calls(engine: FakeEngine) -> int:
    return sum(1 for r in engine.requests if r.path.startswith("/v1/") and r.method == "POST")


def _metric(text: str, direction: str) -> float:
    series = f'content_filtered_total{{direction="{direction}",tier="anonymous"}} '
    found = re.search(re.escape(series) + r"(\S+)", text)
    assert found, text[:2000]
    return float(found.group(1))


def _events(body: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in body.split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def _assert_refused(response: Any, param: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "content_policy_violation"
    assert error["param"] == param
    assert CURSE not in response.text
    assert "Arschloch" not in response.text


REFUSED = [
    (
        "/v1/chat/completions",
        chat_body(messages=[{"role": "user", "content": f"you {CURSE}"}]),
        "messages",
    ),
    (
        "/v1/chat/completions",
        chat_body(
            messages=[
                {"role": "system", "content": "Du bist ein Arschloch."},
                {"role": "user", "content": "hi"},
            ]
        ),
        "messages",
    ),
    (
        "/v1/chat/completions",
        chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "f.u.c.k"}]}]),
        "messages",
    ),
    ("/v1/completions", {"model": ALIAS, "prompt": f"Once upon a {CURSE}"}, "prompt"),
    ("/v1/responses", {"model": ALIAS, "input": f"tell me, {CURSE}"}, "input"),
    (
        "/v1/responses",
        {"model": ALIAS, "instructions": "Speak like a bastard.", "input": "hi"},
        "input",
    ),
]


@pytest.mark.parametrize(("path", "body", "param"), REFUSED)
async def test_a_flagged_prompt_is_refused_before_any_engine(
    engine: FakeEngine, path: str, body: dict[str, Any], param: str
) -> None:
    async with running(_filtered(engine), engine) as gateway:
        before = _engine_calls(engine)
        for _ in range(3):  # max_concurrent = 1: a lease kept by a refusal would 429 the next
            _assert_refused(await gateway.client.post(path, json=body), param)
        assert _engine_calls(engine) == before  # nothing reached the engine
        streamed = {**body, "stream": True}
        _assert_refused(await gateway.client.post(path, json=streamed), param)
        ok = await gateway.client.post("/v1/chat/completions", json=chat_body())
        assert ok.status_code == 200, ok.text  # the slot was returned
        metrics = (await gateway.client.get("/metrics")).text
        assert _metric(metrics, "input") == 4
        assert _metric(metrics, "output") == 0


async def test_tool_schemas_and_image_urls_are_not_read(engine: FakeEngine) -> None:
    async with running(_filtered(engine), engine) as gateway:
        body = chat_body(
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "what is this?"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": json.dumps({"q": CURSE})},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "nothing"},
            ],
            tools=[{"type": "function", "function": {"name": "f", "description": CURSE}}],
        )
        response = await gateway.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text


async def test_an_agent_tier_without_a_filter_passes_everything(engine: FakeEngine) -> None:
    async with running(gateway_settings(engine.base_url), engine) as gateway:
        body = chat_body(
            messages=[{"role": "user", "content": f"you {CURSE}"}],
            fake={"content": f"Right back at you, {CURSE}."},
        )
        response = await gateway.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        assert CURSE in response.json()["choices"][0]["message"]["content"]


PIECES = ["Well", ",", " you", " are", " a", " real", " shit", "head", " and", " more", " text"]
LONG = [*PIECES, *[" and", " then", " some", " more"] * 25]
"""Long enough after the word that the filter finds it (a 32-character batch) well before
the engine's end: the gateway must close the engine's stream."""


async def _official_stream(gateway: Gateway, pieces: list[str]) -> tuple[str, list[Any]]:
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anonymous", max_retries=0)
    stream = await client.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "say something"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"fake": {"pieces": pieces, "tokens_per_s": 200}},
    )
    text, finishes = "", []
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    await client.close()
    return text, finishes


async def test_a_streamed_answer_ends_before_the_word_with_the_official_client(
    engine: FakeEngine,
) -> None:
    async with running(_filtered(engine), engine) as gateway:
        text, finishes = await _official_stream(gateway, LONG)
        assert text == "Well, you are a real "
        assert finishes == ["content_filter"]
        sent = [r for r in engine.requests if r.path == "/v1/chat/completions"][-1]
        assert sent.outcome != "completed"  # the gateway closed the engine's stream
        assert sent.chunks_sent < len(LONG)
        metrics = (await gateway.client.get("/metrics")).text
        assert _metric(metrics, "output") == 1
        clean, finishes = await _official_stream(gateway, ["All", " good", " here", "."])
        assert clean == "All good here."
        assert finishes == ["stop"]


async def test_a_streamed_answer_on_the_wire(engine: FakeEngine) -> None:
    async with running(_filtered(engine, guard=GuardSettings()), engine) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(
                stream=True,
                stream_options={"include_usage": True},
                fake={"pieces": PIECES, "tokens_per_s": 200},
            ),
        )
        assert response.status_code == 200
        validate_sse(response.content)
        assert "shit" not in response.text
        assert response.text.endswith("data: [DONE]\n\n")
        assert response.text.count("[DONE]") == 1
        events = _events(response.text)
        finals = [e for e in events if any(c["finish_reason"] for c in e["choices"])]
        assert len(finals) == 1
        assert finals[0]["tiergate_filter"] == "profanity"
        assert events[-1]["choices"] == []
        assert events[-1]["usage"]["completion_tokens"] >= 1


async def test_tool_call_arguments_are_not_filtered(engine: FakeEngine) -> None:
    async with running(_filtered(engine), engine) as gateway:
        for stream in (False, True):
            response = await gateway.client.post(
                "/v1/chat/completions",
                json=chat_body(
                    stream=stream,
                    fake={"tool_call": {"name": "f", "arguments": json.dumps({"q": CURSE})}},
                ),
            )
            assert response.status_code == 200
            if stream:
                calls = [
                    call["function"].get("arguments") or ""
                    for e in _events(response.text)
                    for c in e["choices"]
                    for call in c["delta"].get("tool_calls") or []
                ]
                arguments = "".join(calls)
            else:
                arguments = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]
                arguments = arguments["arguments"]
            assert json.loads(arguments) == {"q": CURSE}
            assert "content_filter" not in response.text


async def test_a_whole_answer_is_cut_before_the_word(engine: FakeEngine) -> None:
    async with running(_filtered(engine), engine) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(fake={"pieces": PIECES})
        )
        assert response.status_code == 200
        body = response.json()
        validate_chat_completion(body)
        assert body["choices"][0]["message"]["content"] == "Well, you are a real "
        assert body["choices"][0]["finish_reason"] == "content_filter"
        assert body["tiergate_filter"] == "profanity"
        assert response.headers["x-tiergate-filter"] == "profanity"
        metrics = (await gateway.client.get("/metrics")).text
        assert _metric(metrics, "output") == 1


async def test_legacy_completions_are_cut(engine: FakeEngine) -> None:
    async with running(_filtered(engine), engine) as gateway:
        whole = await gateway.client.post(
            "/v1/completions", json={"model": ALIAS, "prompt": "Once", "fake": {"pieces": PIECES}}
        )
        assert whole.status_code == 200
        assert whole.json()["choices"][0]["text"] == "Well, you are a real "
        assert whole.json()["choices"][0]["finish_reason"] == "content_filter"
        streamed = await gateway.client.post(
            "/v1/completions",
            json={"model": ALIAS, "prompt": "Once", "stream": True, "fake": {"pieces": PIECES}},
        )
        assert streamed.status_code == 200
        assert "shit" not in streamed.text
        text = "".join(c["text"] for e in _events(streamed.text) for c in e["choices"])
        assert text == "Well, you are a real "
        assert '"finish_reason":"content_filter"' in streamed.text
        assert streamed.text.endswith("data: [DONE]\n\n")


async def test_responses_are_incomplete_for_the_content_filter(engine: FakeEngine) -> None:
    async with running(_filtered(engine), engine) as gateway:
        whole = await gateway.client.post(
            "/v1/responses", json={"model": ALIAS, "input": "hi", "fake": {"pieces": PIECES}}
        )
        assert whole.status_code == 200, whole.text
        body = whole.json()
        assert body["status"] == "incomplete"
        assert body["incomplete_details"] == {"reason": "content_filter"}
        assert "shit" not in whole.text
        assert body["output"][0]["content"][0]["text"] == "Well, you are a real "
        streamed = await gateway.client.post(
            "/v1/responses",
            json={"model": ALIAS, "input": "hi", "stream": True, "fake": {"pieces": PIECES}},
        )
        assert streamed.status_code == 200
        assert "shit" not in streamed.text
        assert "event: response.incomplete" in streamed.text
        assert '"reason":"content_filter"' in streamed.text
