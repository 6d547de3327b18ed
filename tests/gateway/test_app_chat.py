"""The chat endpoint in process, against the fake engine: relay, headers, streaming, usage."""

from __future__ import annotations

import asyncio
import json
import re

import openai
import pytest

from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.openai_schema import (
    validate_chat_completion,
    validate_chat_completion_chunk,
    validate_error,
    validate_model,
    validate_model_list,
    validate_sse,
)

from .conftest import ALIAS, ENGINE_MODEL, Gateway, chat_body, last_chat


def sse_events(text: str) -> list[str]:
    return [e.removeprefix("data: ") for e in text.split("\n\n") if e]


async def test_non_stream_with_openai_client(gateway: Gateway) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anonymous", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model=ALIAS, messages=[{"role": "user", "content": "hello there"}], max_tokens=3
    )
    validate_chat_completion(raw.content)  # OpenAI's schema, not only what the SDK reads
    completion = raw.parse()
    assert completion.model == ALIAS
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    assert completion.choices[0].finish_reason == "length"
    assert raw.headers["x-tiergate-backend"] == "cpu"
    assert raw.headers["x-tiergate-model"] == ALIAS
    assert re.fullmatch(r"[0-9a-f]{32}", raw.headers["x-request-id"])
    await client.close()


async def test_stream_with_openai_client(gateway: Gateway) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anonymous", max_retries=0)
    stream = await client.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    for chunk in chunks:  # each as received (the SDK keeps the fields that were sent)
        validate_chat_completion_chunk(chunk.to_dict())
    assert {c.model for c in chunks} == {ALIAS}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    await client.close()


async def test_unknown_fields_reach_the_engine_with_the_engine_model(gateway: Gateway) -> None:
    body = chat_body(top_k=5, repetition_penalty=1.1, fake={"chunks": 2})
    response = await gateway.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    sent = last_chat(gateway.engine).body
    assert isinstance(sent, dict)
    assert sent["model"] == ENGINE_MODEL
    assert sent["top_k"] == 5
    assert sent["repetition_penalty"] == 1.1
    assert sent["fake"] == {"chunks": 2}
    assert sent["messages"] == body["messages"]


async def test_request_id_is_echoed_forwarded_or_replaced(gateway: Gateway) -> None:
    good = "req-123.abc:XYZ"
    response = await gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers={"x-request-id": good}
    )
    assert response.headers["x-request-id"] == good
    assert last_chat(gateway.engine).headers["x-request-id"] == good
    for bad in ("has space", "x" * 129, 'quote"d', "é"):
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers=[(b"x-request-id", bad.encode())]
        )
        assert response.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_usage_only_when_asked_but_always_requested(
    gateway: Gateway, include_usage: bool
) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": include_usage})
    response = await gateway.client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    validate_sse(response.content)
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    assert all(p["model"] == ALIAS for p in payloads)
    has_usage_chunk = any(p.get("usage") and not p["choices"] for p in payloads)
    assert has_usage_chunk is include_usage
    sent = last_chat(gateway.engine).body
    assert isinstance(sent, dict)
    assert sent["stream_options"]["include_usage"] is True


async def test_stream_chunks_arrive_unbuffered(gateway: Gateway) -> None:
    # Paced chunks: when the first content reaches the client, the engine must still be
    # generating. A buffering relay would deliver nothing until the engine had finished.
    body = chat_body(stream=True, fake={"chunks": 6, "tokens_per_s": 10})
    sent_when_first_seen: int | None = None
    async with gateway.client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if sent_when_first_seen is None and re.search(r'"content":"[^"]', line):
                sent_when_first_seen = last_chat(gateway.engine).chunks_sent
    assert sent_when_first_seen is not None
    assert sent_when_first_seen < 6
    assert last_chat(gateway.engine).outcome == "completed"


async def test_models_list_and_get(gateway: Gateway) -> None:
    listed = validate_model_list((await gateway.client.get("/v1/models")).content)
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == [ALIAS]
    assert set(listed["data"][0]) == {"id", "object", "created", "owned_by", "capabilities"}
    capabilities = listed["data"][0]["capabilities"]
    assert capabilities["chat"] is True
    assert capabilities["embeddings"] is False
    one = await gateway.client.get(f"/v1/models/{ALIAS}")
    assert validate_model(one.content)["id"] == ALIAS
    head = await gateway.client.head("/v1/models")
    assert head.status_code == 200
    assert not head.content
    missing = await gateway.client.get("/v1/models/nope/with/slashes")
    assert missing.status_code == 404
    assert validate_error(missing.content)["error"]["code"] == "model_not_found"


async def test_health_ready_and_metrics(gateway: Gateway, engine: FakeEngine) -> None:
    health = await gateway.client.get("/healthz")
    assert health.content == b'{"status":"ok"}'
    assert (await gateway.client.head("/healthz")).status_code == 200
    for _ in range(50):
        ready = await gateway.client.get("/readyz")
        if ready.status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert ready.content == b'{"status":"ok"}'
    await gateway.client.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    await gateway.client.post("/v1/chat/completions", json=chat_body(stream=True))
    metrics = (await gateway.client.get("/metrics")).text
    assert (
        'tiergate_gateway_upstream_calls_total{api="chat",backend="cpu",mode="json",'
        'model="tiergate-small",outcome="ok"} 1.0' in metrics
    )
    assert (
        'tiergate_gateway_tokens_total{backend="cpu",kind="completion",model="tiergate-small"}'
        in metrics
    )
    assert "tiergate_gateway_time_to_first_token_seconds_bucket" in metrics
    assert 'route="/v1/chat/completions"' in metrics
    del engine


@pytest.mark.parametrize("stream", [False, True])
async def test_each_response_carries_its_own_headers_once(gateway: Gateway, stream: bool) -> None:
    ids = set()
    for _ in range(3):
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=stream))
        assert response.status_code == 200
        if stream:
            validate_sse(response.content)
        else:
            validate_chat_completion(response.content)
        for name in ("x-request-id", "x-tiergate-model", "x-tiergate-backend", "content-type"):
            assert len(response.headers.get_list(name)) == 1, (name, response.headers)
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 3


async def test_upstream_cookies_are_neither_kept_nor_relayed(gateway: Gateway) -> None:
    # One pool serves every user: a cookie the engine sets for one request must not ride
    # along on the next (someone else's) request, nor reach the client.
    for stream in (False, True):
        cookie = {"headers": {"Set-Cookie": "sid=secret; Path=/"}}
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(stream=stream, fake=cookie)
        )
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=stream))
        assert response.status_code == 200
        assert "cookie" not in last_chat(gateway.engine).headers
