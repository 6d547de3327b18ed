"""`fake.pieces`: an answer sent as exactly the given deltas (newlines, spacing, splits in a
word), as the repetition guard's relay tests need; `fake.content` keeps newlines but drops
trailing whitespace."""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import pytest

from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.fake_engine.behaviour import Behaviour
from tiergate_testkit.openai_schema import validate_sse, validate_text_completion_chunk

CHAT = "/v1/chat/completions"
PIECES = ["Paris is", " the cap", "ital\n", "\n", "", "  我们", "是。", " ", "!!", "\n\n"]


def chat(*, stream: bool, max_tokens: int | None = None, **fake: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "say it"}],
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
        "fake": fake,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return {key: value for key, value in body.items() if value is not None}


def content_deltas(raw: bytes) -> tuple[list[str], list[Any]]:
    """The content deltas after the role chunk, and all the stream's chunks."""
    chunks = validate_sse(raw)
    deltas = [c["choices"][0]["delta"] for c in chunks[1:] if c["choices"]]
    return [d["content"] for d in deltas if "content" in d], chunks


async def test_streamed_pieces_are_the_deltas(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    deltas, chunks = content_deltas(
        (await http.post(CHAT, json=chat(stream=True, pieces=PIECES))).content
    )
    assert deltas == PIECES
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == len(PIECES)
    assert engine.requests[0].chunks_sent == len(PIECES)


async def test_whole_answer_is_the_pieces_joined(http: httpx.AsyncClient) -> None:
    # Not checked against OpenAI's schema: the fake sends `"system_fingerprint": null`.
    answer = (await http.post(CHAT, json=chat(stream=False, pieces=PIECES))).json()
    assert answer["choices"][0]["message"]["content"] == "".join(PIECES)
    assert answer["usage"]["completion_tokens"] == len(PIECES)


async def test_max_tokens_cuts_the_pieces(http: httpx.AsyncClient) -> None:
    body = chat(stream=True, max_tokens=3, pieces=PIECES)
    deltas, chunks = content_deltas((await http.post(CHAT, json=body)).content)
    assert deltas == PIECES[:3]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


async def test_legacy_completion_streams_the_pieces(http: httpx.AsyncClient) -> None:
    body = {"model": "fake-model", "prompt": "x", "stream": True, "fake": {"pieces": PIECES}}
    chunks = validate_sse(
        (await http.post("/v1/completions", json=body)).content,
        chunk=validate_text_completion_chunk,
    )
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == PIECES


async def test_content_keeps_newlines_but_not_trailing_whitespace(http: httpx.AsyncClient) -> None:
    text = "Paris is the capital\n\nParis  is\tthe capital\n"
    deltas, _ = content_deltas(
        (await http.post(CHAT, json=chat(stream=True, content=text))).content
    )
    assert "".join(deltas) == text.rstrip()
    assert deltas[4] == "\n\nParis"


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        ({"pieces": ["a"], "content": "a"}, "give `pieces` or `chunks`/`content`/`tool_call`"),
        ({"pieces": ["a"], "chunks": 1}, "give `pieces` or `chunks`/`content`/`tool_call`"),
        ({"pieces": ["a"], "tool_call": {"name": "f"}}, "give `pieces` or"),
        ({"pieces": "abc"}, "Expected `array | null`, got `str` - at `$.pieces`"),
    ],
    ids=["content", "chunks", "tool_call", "not a list"],
)
def test_pieces_rejects(fake: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        msgspec.convert(fake, Behaviour)


async def test_pieces_are_no_embeddings_option(http: httpx.AsyncClient) -> None:
    body = {"model": "fake-model", "input": "x", "fake": {"pieces": ["a"]}}
    refused = await http.post("/v1/embeddings", json=body)
    assert refused.status_code == 400
    assert "`fake.pieces` shapes generated text" in refused.text
