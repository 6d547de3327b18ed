"""The fake engine over raw HTTP (httpx): OpenAI shapes, SSE framing, every fault, keep-alive."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from tiergate_testkit.fake_engine import FakeEngine

CHAT = "/v1/chat/completions"
# Generous bound for "the fake noticed the client left"; detection is event-driven.
SETTLE_S = 1.0


def chat_body(*, stream: bool = False, **fake: object) -> dict[str, Any]:
    """A minimal chat request, with `fake` options when given."""
    body: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "say something nice"}],
        "stream": stream,
    }
    if fake:
        body["fake"] = fake
    return body


def parse_events(raw: bytes) -> list[str]:
    """Split an SSE body into its `data:` payloads, checking the framing on the way."""
    assert raw.endswith(b"\n\n")
    events = raw.decode().split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events), events
    return [e.removeprefix("data: ") for e in events]


def contents(payloads: list[str]) -> list[str]:
    """The content deltas after the role chunk."""
    chunks = [json.loads(p) for p in payloads[1:] if p != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    return [d["content"] for d in deltas if "content" in d]


async def settled(engine: FakeEngine) -> None:
    async with asyncio.timeout(SETTLE_S):
        await engine.wait_settled()


async def test_health_and_models(http: httpx.AsyncClient) -> None:
    health = await http.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})

    models = (await http.get("/v1/models")).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["fake-model", "other-model"]
    assert all(m["object"] == "model" and m["owned_by"] == "fake" for m in models["data"])
    assert all(isinstance(m["created"], int) for m in models["data"])


async def test_non_streaming_completion(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    body = chat_body() | {"model": "other-model", "user": "u1", "seed": 3}
    response = await http.post(CHAT, json=body, headers={"Authorization": "Bearer k"})

    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "other-model"
    choice = data["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "The quick brown fox jumps",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    [record] = engine.requests
    assert (record.method, record.path, record.outcome, record.status) == (
        "POST",
        CHAT,
        "completed",
        200,
    )
    assert record.headers["authorization"] == "Bearer k"
    assert record.body == body  # unknown OpenAI fields arrive and are recorded
    assert data["id"] == f"chatcmpl-fake-{record.id}"


async def test_stream_with_usage(http: httpx.AsyncClient) -> None:
    body = chat_body(stream=True, content="Hello there, streaming world")
    body["stream_options"] = {"include_usage": True}
    response = await http.post(CHAT, json=body)

    assert response.headers["content-type"] == "text/event-stream"
    payloads = parse_events(response.content)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == "fake-model" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert contents(payloads) == ["Hello", " there,", " streaming", " world"]
    final, usage = chunks[-2], chunks[-1]
    assert final["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_stream_without_include_usage_has_no_usage_chunk(http: httpx.AsyncClient) -> None:
    payloads = parse_events((await http.post(CHAT, json=chat_body(stream=True))).content)
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)
    assert len(contents(payloads)) == 5


@pytest.mark.parametrize("cap_field", ["max_tokens", "max_completion_tokens"])
async def test_token_cap_ends_with_length(http: httpx.AsyncClient, cap_field: str) -> None:
    streamed = chat_body(stream=True, chunks=10) | {cap_field: 3}
    payloads = parse_events((await http.post(CHAT, json=streamed)).content)
    assert len(contents(payloads)) == 3
    assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "length"

    whole = (await http.post(CHAT, json=chat_body(chunks=10) | {cap_field: 3})).json()
    assert whole["choices"][0]["finish_reason"] == "length"
    assert whole["usage"]["completion_tokens"] == 3


async def test_invalid_fake_options_are_rejected_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    for fake, expected in [
        ({"chunkz": 3}, "unknown field `chunkz`"),
        ({"chunks": -1}, "$.fake.chunks"),
        ({"status": 200}, "$.fake.status"),
        ({"stall_after": 1, "drop_after": 2}, "one fault per request"),
    ]:
        response = await http.post(CHAT, json={"messages": [], "fake": fake})
        assert response.status_code == 400
        assert expected in response.json()["error"]["message"]


async def test_unknown_route_and_method_get_error_envelopes(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert (await http.get(CHAT)).status_code == 405


async def test_status_with_retry_after(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    fake = {"status": 429, "headers": {"Retry-After": "7"}}
    response = await http.post(CHAT, json=chat_body(stream=True, **fake))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["message"] == "fake engine: injected status 429"
    assert (engine.requests[0].outcome, engine.requests[0].status) == ("status", 429)


async def test_raw_error_body_is_sent_as_is(http: httpx.AsyncClient) -> None:
    html = "<html><body>502 Bad Gateway</body></html>"
    response = await http.post(CHAT, json=chat_body(status=502, error_body=html))

    assert response.status_code == 502
    assert response.text == html
    assert response.headers["content-type"].startswith("text/html")

    fake: dict[str, Any] = {
        "status": 500,
        "error_body": "{}",
        "headers": {"content-type": "application/json"},
    }
    overridden = await http.post(CHAT, json=chat_body(**fake))
    assert overridden.headers.get_list("content-type") == ["application/json"]


async def test_header_delay_holds_back_the_headers(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    start = time.monotonic()
    response = await http.post(CHAT, json=chat_body(header_delay_s=0.3))
    assert response.status_code == 200
    assert time.monotonic() - start >= 0.3

    # A client that gives up while waiting for headers is recorded as gone.
    with pytest.raises(httpx.ReadTimeout):
        await http.post(CHAT, json=chat_body(header_delay_s=5), timeout=0.2)
    await settled(engine)
    assert engine.requests[-1].outcome == "client_disconnected"
    assert engine.requests[-1].status is None


async def test_first_token_delay_sends_headers_first(http: httpx.AsyncClient) -> None:
    body = chat_body(stream=True, first_token_delay_s=5)
    async with http.stream("POST", CHAT, json=body, timeout=0.5) as response:
        assert response.status_code == 200  # headers arrived well before the delay ended
        with pytest.raises(httpx.ReadTimeout):
            await response.aread()


async def test_tokens_per_s_paces_the_stream(http: httpx.AsyncClient) -> None:
    start = time.monotonic()
    response = await http.post(CHAT, json=chat_body(stream=True, chunks=4, tokens_per_s=20))
    assert len(contents(parse_events(response.content))) == 4
    assert time.monotonic() - start >= 4 / 20


@pytest.mark.parametrize("fake", [{"stall_after": 2}, {"stall_after": 2, "tokens_per_s": 50}])
async def test_stall_then_client_closes(
    http: httpx.AsyncClient, engine: FakeEngine, fake: dict[str, Any]
) -> None:
    async with http.stream("POST", CHAT, json=chat_body(stream=True, **fake)) as response:
        lines = response.aiter_lines()
        received = [line async for line in _take_events(lines, 3)]  # role + 2 content
    assert len(received) == 3

    await settled(engine)
    [record] = engine.requests
    assert (record.outcome, record.chunks_sent) == ("client_disconnected", 2)


async def test_paced_stream_notices_client_leaving(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = chat_body(stream=True, chunks=10_000, tokens_per_s=50)
    async with http.stream("POST", CHAT, json=body) as response:
        [_ async for _ in _take_events(response.aiter_lines(), 4)]

    await settled(engine)
    [record] = engine.requests
    assert record.outcome == "client_disconnected"
    assert 3 <= record.chunks_sent < 10


async def _take_events(lines: Any, count: int) -> Any:
    taken = 0
    async for line in lines:
        if line.startswith("data: "):
            yield line
            taken += 1
            if taken == count:
                return


async def test_drop_after_cuts_the_stream(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    async with http.stream("POST", CHAT, json=chat_body(stream=True, drop_after=2)) as response:
        lines = response.aiter_lines()
        received = [line async for line in _take_events(lines, 3)]  # role + 2 content chunks
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await _rest(lines)  # then nothing: no final chunk, no [DONE]
    assert len(received) == 3
    [record] = engine.requests
    assert (record.outcome, record.chunks_sent) == ("drop_after", 2)


async def _rest(lines: Any) -> list[str]:
    return [line async for line in lines if line]


async def test_drop_after_cuts_a_non_streaming_body(http: httpx.AsyncClient) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await http.post(CHAT, json=chat_body(drop_after=0))


async def test_stall_in_a_non_streaming_body(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await http.post(CHAT, json=chat_body(stall_after=0), timeout=0.3)
    await settled(engine)
    assert engine.requests[0].outcome == "client_disconnected"


async def test_drop_before_headers(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await http.post(CHAT, json=chat_body(drop_before_headers=True))
    assert (engine.requests[0].outcome, engine.requests[0].status) == ("drop_before_headers", None)


async def test_malformed(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    whole = await http.post(CHAT, json=chat_body(malformed=True))
    assert whole.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        whole.json()

    payloads = parse_events(
        (await http.post(CHAT, json=chat_body(stream=True, malformed=True))).content
    )
    assert payloads[-1] == "[DONE]"
    with pytest.raises(json.JSONDecodeError):
        json.loads(payloads[1])
    assert [r.outcome for r in engine.requests] == ["malformed", "malformed"]


async def test_keep_alive_serves_requests_on_one_connection(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await http.post(CHAT, json=chat_body())
    await http.post(CHAT, json=chat_body(stream=True))
    await http.get("/health")

    assert {r.connection for r in engine.requests} == {engine.requests[0].connection}
    assert [r.outcome for r in engine.requests] == ["completed"] * 3


async def test_introspection_endpoints(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    await http.post(CHAT, json=chat_body(chunks=2), params={"trace": "1"})

    listed = (await http.get("/_fake/requests")).json()
    assert len(listed) == 1
    entry = listed[0]
    assert set(entry) == {
        "id",
        "connection",
        "method",
        "path",
        "query",
        "headers",
        "body",
        "outcome",
        "status",
        "chunks_sent",
    }
    assert (entry["path"], entry["query"], entry["chunks_sent"]) == (CHAT, "trace=1", 2)
    assert entry["body"]["fake"] == {"chunks": 2}

    assert (await http.post("/_fake/reset")).status_code == 200
    assert engine.requests == []
    assert (await http.get("/_fake/requests")).json() == []


async def test_stop_cuts_open_connections() -> None:
    body = chat_body(stream=True, stall_after=1)
    async with (
        FakeEngine() as engine,
        httpx.AsyncClient(base_url=engine.base_url) as http,
        http.stream("POST", CHAT, json=body) as response,
    ):
        lines = response.aiter_lines()
        [_ async for _ in _take_events(lines, 2)]
        await engine.stop()
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await _rest(lines)
