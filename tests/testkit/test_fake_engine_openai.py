"""The fake engine through the official openai AsyncClient, as our services' clients see it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from tiergate_testkit.fake_engine import FakeEngine

MESSAGES: list[Any] = [{"role": "user", "content": "hello fake engine"}]


async def test_models_list(oai: openai.AsyncOpenAI) -> None:
    page = await oai.models.list()
    assert [m.id for m in page.data] == ["fake-model", "other-model"]
    assert all(m.owned_by == "fake" for m in page.data)


async def test_completion(oai: openai.AsyncOpenAI, engine: FakeEngine) -> None:
    completion = await oai.chat.completions.create(
        model="other-model", messages=MESSAGES, extra_body={"fake": {"content": "Hi from fake"}}
    )
    assert completion.model == "other-model"
    assert completion.choices[0].message.content == "Hi from fake"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 3)
    assert engine.requests[0].body == {
        "model": "other-model",
        "messages": MESSAGES,
        "fake": {"content": "Hi from fake"},
    }


async def test_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="fake-model",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=4,
        extra_body={"fake": {"chunks": 9}},
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The quick brown fox"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.total_tokens == 4 + 3


async def test_status_with_retry_after(oai: openai.AsyncOpenAI) -> None:
    fake = {"status": 429, "headers": {"Retry-After": "7"}}
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(
            model="fake-model", messages=MESSAGES, extra_body={"fake": fake}
        )
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body == {
        "message": "fake engine: injected status 429",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_raw_error_body(oai: openai.AsyncOpenAI) -> None:
    html = "<html>upstream exploded</html>"
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(
            model="fake-model",
            messages=MESSAGES,
            extra_body={"fake": {"status": 502, "error_body": html}},
        )
    assert caught.value.status_code == 502
    assert caught.value.response.text == html


async def test_header_delay_times_out_the_client(
    oai: openai.AsyncOpenAI, engine: FakeEngine
) -> None:
    with pytest.raises(openai.APITimeoutError):
        await oai.chat.completions.create(
            model="fake-model",
            messages=MESSAGES,
            timeout=0.2,
            extra_body={"fake": {"header_delay_s": 5}},
        )
    async with asyncio.timeout(1.0):
        await engine.wait_settled()
    assert engine.requests[0].outcome == "client_disconnected"


async def test_first_token_delay(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="fake-model",
        messages=MESSAGES,
        stream=True,
        extra_body={"fake": {"first_token_delay_s": 0.2, "tokens_per_s": 100}},
    )
    assert len([c async for c in stream]) == 1 + 5 + 1


async def test_stall_then_client_closes(oai: openai.AsyncOpenAI, engine: FakeEngine) -> None:
    stream = await oai.chat.completions.create(
        model="fake-model",
        messages=MESSAGES,
        stream=True,
        extra_body={"fake": {"stall_after": 3}},
    )
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 4:  # role + 3 content chunks; the next read would hang
            break
    await stream.close()

    async with asyncio.timeout(1.0):
        await engine.wait_settled()
    assert (engine.requests[0].outcome, engine.requests[0].chunks_sent) == (
        "client_disconnected",
        3,
    )


async def test_drop_after_surfaces_as_connection_error(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="fake-model", messages=MESSAGES, stream=True, extra_body={"fake": {"drop_after": 1}}
    )
    with pytest.raises(openai.APIConnectionError):
        [_ async for _ in stream]


async def test_drop_before_headers(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(
            model="fake-model",
            messages=MESSAGES,
            extra_body={"fake": {"drop_before_headers": True}},
        )


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_body_fails_to_parse(oai: openai.AsyncOpenAI, stream: bool) -> None:
    with pytest.raises(json.JSONDecodeError):
        await _complete(oai, stream=stream, fake={"malformed": True})


async def _complete(oai: openai.AsyncOpenAI, *, stream: bool, fake: dict[str, Any]) -> None:
    """Run one request to the end, consuming the stream if there is one."""
    response = await oai.chat.completions.create(
        model="fake-model", messages=MESSAGES, stream=stream, extra_body={"fake": fake}
    )
    if isinstance(response, openai.AsyncStream):
        [_ async for _ in response]
