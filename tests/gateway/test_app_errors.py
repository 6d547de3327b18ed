"""Every error path of the gateway returns OpenAI's envelope with the right status."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import openai
import pytest

from tiergate_gateway.app import create_app
from tiergate_gateway.settings import ResilienceSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.openai_schema import validate_error

from .conftest import ALIAS, BODY_LIMIT, Gateway, chat_body, gateway_settings, last_chat

CHAT = "/v1/chat/completions"
TRACEBACK_ENVELOPE = json.dumps(
    {"error": {"message": "Traceback (most recent call last): KeyError: 'secret-internal'"}}
)


def assert_envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    validate_error(body)  # OpenAI's published ErrorResponse schema
    return dict(body["error"])


@pytest.mark.parametrize(
    ("content", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (b'"just a string"', None, "invalid_json"),
        (
            b'{"messages": [{"role": "user", "content": "x"}]}',
            "model",
            "missing_required_parameter",
        ),
        (b'{"model": "tiergate-small"}', "messages", "missing_required_parameter"),
        (b'{"model": 5, "messages": []}', "model", "invalid_value"),
        (b'{"model": "tiergate-small", "messages": "hi"}', "messages", "invalid_value"),
        (
            b'{"model": "tiergate-small", "messages": [{"role": "wizard", "content": "x"}]}',
            "messages[0].role",
            "invalid_value",
        ),
        (
            b'{"model": "tiergate-small", "messages": [{"role": "user"}]}',
            "messages[0].content",
            "missing_required_parameter",
        ),
        (
            b'{"model": "tiergate-small", "messages": [{"role": "user", "content": 5}]}',
            "messages[0].content",
            "invalid_value",
        ),
        (
            b'{"model": "tiergate-small", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": "hot"}',
            "temperature",
            "invalid_value",
        ),
        (
            b'{"model": "tiergate-small", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": -1}',
            "max_tokens",
            "invalid_value",
        ),
        (
            b'{"model": "tiergate-small", "messages": [{"role": "user", "content": "x"}], '
            b'"stream": "yes"}',
            "stream",
            "invalid_value",
        ),
        (
            b'{"model": "tiergate-small", "messages": [{"role": "user", "content": '
            b'[{"type": "video", "video": 1}]}]}',
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (b'\xff\xfe{"bad": "utf8"}', None, "invalid_json"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    gateway: Gateway, content: bytes, param: str | None, code: str
) -> None:
    def chats() -> int:
        return sum(1 for r in gateway.engine.requests if r.path == CHAT)

    before = chats()
    response = await gateway.client.post(
        CHAT, content=content, headers={"content-type": "application/json"}
    )
    error = assert_envelope(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert response.headers["x-request-id"]
    assert chats() == before  # nothing reached the engine


async def test_unknown_model_is_404(gateway: Gateway) -> None:
    response = await gateway.client.post(CHAT, json={**chat_body(), "model": "gpt-9"})
    error = assert_envelope(response, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-9" in error["message"]


async def test_body_over_limit_is_413_with_and_without_length(gateway: Gateway) -> None:
    big = json.dumps(chat_body(padding="x" * BODY_LIMIT)).encode()
    response = await gateway.client.post(
        CHAT, content=big, headers={"content-type": "application/json"}
    )
    assert assert_envelope(response, 413)["code"] == "request_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    response = await gateway.client.post(
        CHAT, content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_envelope(response, 413)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_wrong_content_type_is_415(gateway: Gateway, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await gateway.client.post(
        CHAT, content=json.dumps(chat_body()).encode(), headers=headers
    )
    assert assert_envelope(response, 415)["code"] == "unsupported_media_type"


async def test_json_with_charset_is_accepted(gateway: Gateway) -> None:
    response = await gateway.client.post(
        CHAT,
        content=json.dumps(chat_body()).encode(),
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", CHAT, 405),
        ("DELETE", "/v1/models", 405),
        ("GET", "/v1/nothing-here", 404),
        ("POST", "/", 405),  # / is the web chat's page (GET, HEAD)
        ("POST", "/v1/nothing-here", 404),
        ("GET", "/v1/chat/completions/extra", 404),
    ],
)
async def test_framework_errors_are_envelopes(
    gateway: Gateway, method: str, path: str, status: int
) -> None:
    response = await gateway.client.request(method, path)
    assert_envelope(response, status)
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("fake", "status", "retry_after", "message_part"),
    [
        ({"status": 500}, 502, "1", "failed (status 500)"),
        (
            {"status": 500, "error_body": "<html><body>Internal trace at line 3</body></html>"},
            502,
            "1",
            "failed (status 500)",
        ),
        ({"status": 500, "error_body": TRACEBACK_ENVELOPE}, 502, "1", "failed (status 500)"),
        ({"status": 401}, 502, "1", "failed (status 401)"),
        (
            {"status": 404, "error_body": '{"error": "model engine-small not found"}'},
            502,
            "1",
            "failed (status 404)",
        ),
        ({"status": 503, "headers": {"Retry-After": "7"}}, 503, "7", "unavailable"),
        (
            {"status": 503, "headers": {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}},
            503,
            "2",
            "unavailable",
        ),
        ({"status": 503, "headers": {"Retry-After": "999999"}}, 503, "3600", "unavailable"),
        ({"status": 503}, 503, "2", "unavailable"),
        ({"status": 429, "headers": {"Retry-After": "9"}}, 429, "9", ""),
        ({"status": 400}, 400, None, ""),
        ({"status": 422, "error_body": '{"detail": "bad stuff"}'}, 422, None, "bad stuff"),
        ({"status": 504}, 504, None, "timed out"),
        ({"drop_before_headers": True}, 502, "1", "without an answer"),
        ({"header_delay_s": 5}, 504, None, "did not answer in time"),
        ({"malformed": True}, 502, None, "invalid answer"),
    ],
)
async def test_upstream_failures_before_first_byte(
    gateway: Gateway,
    fake: dict[str, Any],
    status: int,
    retry_after: str | None,
    message_part: str,
) -> None:
    response = await gateway.client.post(CHAT, json=chat_body(fake=fake))
    error = assert_envelope(response, status)
    assert message_part in error["message"]
    for leaked in ("<html>", "Traceback", "secret-internal", "engine-small"):
        assert leaked not in error["message"]
    assert response.headers.get("retry-after") == retry_after
    assert response.headers["x-tiergate-backend"] == "cpu"


@pytest.mark.parametrize(
    "fake",
    [
        {"headers": {"content-type": "application/json"}},  # a JSON answer to a stream request
        {"status": 500},
    ],
)
async def test_stream_request_gets_an_envelope_unless_upstream_streams(
    gateway: Gateway, fake: dict[str, Any]
) -> None:
    response = await gateway.client.post(CHAT, json=chat_body(stream=True, fake=fake))
    assert_envelope(response, 502)
    assert response.headers["retry-after"] == "1"


async def test_upstream_is_asked_for_uncompressed_bytes(gateway: Gateway) -> None:
    await gateway.client.post(CHAT, json=chat_body(stream=True))
    assert last_chat(gateway.engine).headers["accept-encoding"] == "identity"


async def test_deeply_nested_json_is_400(gateway: Gateway) -> None:
    body = b'{"model": "tiergate-small", "x": ' + b"[" * 1900 + b"]" * 1900 + b"}"
    response = await gateway.client.post(
        CHAT, content=body, headers={"content-type": "application/json"}
    )
    assert assert_envelope(response, 400)["code"] == "invalid_json"


async def test_upstream_4xx_envelope_is_relayed(gateway: Gateway) -> None:
    envelope = {
        "error": {
            "message": "context too long",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    response = await gateway.client.post(
        CHAT, json=chat_body(fake={"status": 400, "error_body": json.dumps(envelope)})
    )
    assert assert_envelope(response, 400) == envelope["error"]


async def test_stream_request_failing_before_first_byte_is_an_envelope(gateway: Gateway) -> None:
    response = await gateway.client.post(
        CHAT, json=chat_body(stream=True, fake={"status": 503, "headers": {"Retry-After": "3"}})
    )
    assert_envelope(response, 503)
    assert response.headers["retry-after"] == "3"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_backend_is_503_with_retry_after() -> None:
    app = create_app(gateway_settings(f"http://127.0.0.1:{closed_port()}"))
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(CHAT, json=chat_body())
        error = assert_envelope(response, 503)
        assert "not reachable" in error["message"]
        assert response.headers["retry-after"] == "2"
        ready = await client.get("/readyz")
        assert_envelope(ready, 503)
        assert ready.headers["retry-after"]
        # The official client sees a 503 as InternalServerError after its own retries.
        oai = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="anonymous", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            await oai.chat.completions.create(
                model=ALIAS, messages=[{"role": "user", "content": "x"}]
            )
        assert caught.value.status_code == 503
        await oai.close()


async def test_openai_client_errors_carry_param_and_code(gateway: Gateway) -> None:
    oai = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anonymous", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        await oai.chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "x"}], temperature=9
        )
    assert bad.value.param == "temperature"
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"
    await oai.close()


def data_events(text: str) -> list[str]:
    return [e.removeprefix("data: ") for e in text.split("\n\n") if e.startswith("data: ")]


async def test_drop_mid_stream_ends_with_error_event_then_done(gateway: Gateway) -> None:
    response = await gateway.client.post(
        # Paced like a real engine: aiohttp (our pool) drops bytes still unread when the
        # connection breaks in the same instant, which a paced stream never hits.
        CHAT,
        json=chat_body(stream=True, fake={"chunks": 6, "drop_after": 2, "tokens_per_s": 50}),
    )
    assert response.status_code == 200
    events = data_events(response.text)
    assert events[-1] == "[DONE]"  # after the error: never a fallback once bytes went out
    last = json.loads(events[-2])
    assert last["error"]["code"] == "upstream_stream_error"
    contents = [json.loads(e) for e in events[:-2]]
    assert sum(1 for c in contents if c["choices"] and c["choices"][0]["delta"].get("content")) == 2


async def test_stall_mid_stream_times_out_with_error_event(gateway: Gateway) -> None:
    response = await gateway.client.post(
        CHAT, json=chat_body(stream=True, fake={"chunks": 6, "stall_after": 1})
    )
    events = data_events(response.text)
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert "timeout" in last["error"]["message"]
    async with asyncio.timeout(5):
        await gateway.engine.wait_settled()
    assert last_chat(gateway.engine).outcome == "client_disconnected"


async def test_openai_client_raises_on_mid_stream_error(gateway: Gateway) -> None:
    oai = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anonymous", max_retries=0)
    stream = await oai.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_body={"fake": {"chunks": 5, "drop_after": 2}},
    )
    with pytest.raises(openai.APIError, match="broke off the stream"):
        async for _ in stream:
            pass
    await oai.close()


async def test_client_disconnect_mid_stream_closes_upstream_at_once(gateway: Gateway) -> None:
    body = chat_body(stream=True, fake={"chunks": 200, "tokens_per_s": 20})
    async with gateway.client.stream("POST", CHAT, json=body) as response:
        seen = 0
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen == 3:
                break
    # Leaving the block closed our connection; the engine must see its own close promptly.
    async with asyncio.timeout(2):
        await gateway.engine.wait_settled()
    record = last_chat(gateway.engine)
    assert record.outcome == "client_disconnected"
    assert record.chunks_sent < 20


async def test_client_disconnect_while_waiting_for_non_stream_answer(gateway: Gateway) -> None:
    body = chat_body(fake={"header_delay_s": 1.2})
    with pytest.raises(httpx.ReadTimeout):
        await gateway.client.post(CHAT, json=body, timeout=httpx.Timeout(5, read=0.3))
    async with asyncio.timeout(2):
        await gateway.engine.wait_settled()
    assert last_chat(gateway.engine).outcome == "client_disconnected"


async def test_upstream_error_metrics_are_counted(engine: FakeEngine) -> None:
    settings = msgspec.structs.replace(
        gateway_settings(engine.base_url), resilience=ResilienceSettings(retries=2)
    )
    app = create_app(settings)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
        await client.post(CHAT, json=chat_body(fake={"status": 500}))
        await client.post(CHAT, json=chat_body(stream=True, fake={"drop_after": 1}))
        metrics = (await client.get("/metrics")).text
    # A 500 before the first byte is tried three times (two retries with backoff).
    assert 'tiergate_gateway_upstream_errors_total{backend="cpu",kind="status"} 3.0' in metrics
    assert 'tiergate_gateway_upstream_errors_total{backend="cpu",kind="midstream"} 1.0' in metrics
    assert (
        'tiergate_gateway_upstream_calls_total{api="chat",backend="cpu",mode="stream",'
        'model="tiergate-small",outcome="upstream_error"} 1.0' in metrics
    )
