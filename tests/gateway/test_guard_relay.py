"""The runaway guard through the gateway: loops cut in streams and whole answers, near-misses
kept, the engine's stream closed, the metric counted; the fake engine plays the model."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from tiergate_gateway.guard import GuardSettings
from tiergate_gateway.settings import GatewaySettings, TierPolicy
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.openai_schema import validate_chat_completion, validate_sse

from .conftest import chat_body, gateway_settings, last_chat, running

LOOP = "The TiEgate server uses a custom configuration to decide which model answers. "
"""The small model's loop from the issue, sentence for sentence."""


def _words(text: str) -> list[str]:
    """Deltas as a model streams them: a word with its leading space."""
    pieces, word = [], ""
    for char in text:
        if char == " " and word.strip():
            pieces.append(word)
            word = ""
        word += char
    return [*pieces, word] if word else pieces


def _guarded(engine: FakeEngine, guard: GuardSettings | None = None) -> GatewaySettings:
    return msgspec.structs.replace(
        gateway_settings(engine.base_url),
        tiers={"anonymous": TierPolicy(max_tokens=100_000, guard=guard or GuardSettings())},
    )


def _events(body: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in body.split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for e in events for choice in e.get("choices", [])
    )


async def test_a_streamed_loop_is_cut_within_two_repetitions(engine: FakeEngine) -> None:
    pieces = _words("Sure. " + LOOP * 6)
    async with running(_guarded(engine), engine) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(
                stream=True,
                stream_options={"include_usage": True},
                fake={"pieces": pieces, "tokens_per_s": 200},
            ),
        )
        assert response.status_code == 200
        validate_sse(response.content)
        assert response.text.endswith("data: [DONE]\n\n")
        events = _events(response.text)
        text = _text(events)
        assert text.count("custom configuration") == 3  # the sentence, then two repeats
        assert text.startswith("Sure. ")
        finals = [e for e in events if any(c["finish_reason"] for c in e["choices"])]
        assert len(finals) == 1
        assert finals[0]["choices"][0]["finish_reason"] == "length"
        assert finals[0]["tiergate_guard"] == "repetition"
        usage = events[-1]["usage"]
        assert events[-1]["choices"] == []
        relayed = sum(1 for e in events for c in e["choices"] if c["delta"].get("content"))
        assert usage["completion_tokens"] == relayed
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        await engine.wait_settled()
        # The gateway closed the engine's stream at the cut: it did not run to its end.
        sent = last_chat(engine)
        assert sent.outcome != "completed"
        assert sent.chunks_sent < len(pieces)
        metrics = (await gateway.client.get("/metrics")).text
        assert 'tiergate_gateway_guard_cuts_total{kind="sentence",model="tiergate-small"} 1.0' in (
            metrics
        )


async def test_a_whole_answer_is_cut_where_a_stream_would_be(engine: FakeEngine) -> None:
    content = "Sure. " + LOOP * 6
    async with running(_guarded(engine), engine) as gateway:
        streamed = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(stream=True, fake={"pieces": _words(content)}),
        )
        whole = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(fake={"pieces": _words(content)})
        )
        assert whole.status_code == 200
        assert whole.headers["x-tiergate-guard"] == "repetition"
        answer = validate_chat_completion(whole.content)
        assert answer["tiergate_guard"] == "repetition"
        choice = answer["choices"][0]
        assert choice["finish_reason"] == "length"
        kept = choice["message"]["content"]
        assert kept.count("custom configuration") == 3
        # The stream relays whole deltas, so it may hold the few characters after the cut.
        assert _text(_events(streamed.text)).startswith(kept)
        assert "x-tiergate-guard" not in streamed.headers  # a stream says it in its last chunk


@pytest.mark.parametrize(
    "content",
    [
        "Steps:\n1. Install the package.\n2. Install the config.\n3. Install the service.\n",
        "| a | b |\n|---|---|\n| 1 | yes |\n| 2 | yes |\n| 3 | yes |\n",
        "```python\nx = []\nx.append(0)\nx.append(0)\nx.append(0)\n}\n}\n}\n```\n",
        "The sea is wide,\nRow, row, row.\nThe sky is high,\nRow, row, row.\nThe end.\n",
        "Ha ha ha! No, no, no. That is... well... fine.\n",
    ],
    ids=["numbered-list", "table", "code", "refrain", "laughter"],
)
async def test_near_misses_are_not_cut(engine: FakeEngine, content: str) -> None:
    async with running(_guarded(engine), engine) as gateway:
        for stream in (True, False):
            response = await gateway.client.post(
                "/v1/chat/completions",
                json=chat_body(stream=stream, fake={"pieces": _words(content)}),
            )
            assert response.status_code == 200
            if stream:
                events = _events(response.text)
                assert _text(events) == content
                assert all("tiergate_guard" not in e for e in events)
                finish = [c["finish_reason"] for e in events for c in e["choices"]]
                assert finish[-1] == "stop"
            else:
                assert "x-tiergate-guard" not in response.headers
                assert response.json()["choices"][0]["message"]["content"] == content


async def test_a_tier_without_the_guard_relays_the_loop(engine: FakeEngine) -> None:
    content = LOOP * 6
    off = msgspec.structs.replace(GuardSettings(), enabled=False)
    async with running(_guarded(engine, off), engine) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(fake={"pieces": _words(content)})
        )
        assert response.json()["choices"][0]["message"]["content"] == content
        assert "x-tiergate-guard" not in response.headers


async def test_thresholds_come_from_the_tier(engine: FakeEngine) -> None:
    # Five copies allowed: the six-copy loop is cut at the fifth.
    loose = GuardSettings(sentence_repeats=5)
    async with running(_guarded(engine, loose), engine) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(fake={"pieces": _words(LOOP * 6)})
        )
        kept = response.json()["choices"][0]["message"]["content"]
        assert kept.count("custom configuration") == 5


async def test_a_responses_stream_cut_by_the_guard_is_incomplete(engine: FakeEngine) -> None:
    async with running(_guarded(engine), engine) as gateway:
        response = await gateway.client.post(
            "/v1/responses",
            json={
                "model": "tiergate-small",
                "input": "Tell me about tiergate.",
                "stream": True,
                "store": False,
                "fake": {"pieces": _words(LOOP * 6)},
            },
        )
        assert response.status_code == 200
        kinds = [
            json.loads(line[6:])["type"]
            for line in response.text.split("\n")
            if line.startswith("data: ")
        ]
        assert kinds[-1] == "response.incomplete"
