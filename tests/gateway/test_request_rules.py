"""Requests that can never succeed are a 400 naming the field, before any engine sees them
(issue 10, defects 2, 8, 9, 11, 12); an engine's answer to a client mistake is never retried
and never counts against its breaker."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import (
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    ResilienceSettings,
    TierPolicy,
)
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import ALIAS, ENGINE_MODEL, Gateway, chat_body, gateway_settings, running
from .test_app_errors import assert_envelope

CHAT = "/v1/chat/completions"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
FILE = {"type": "file", "file": {"file_data": "AAAA", "filename": "a.pdf"}}
TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {}}}]
GOOD_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def strict_settings(engine: FakeEngine, *, tools: bool = False) -> GatewaySettings:
    """A text-only model without tool support, retries on and a breaker that opens at once."""
    base = gateway_settings(engine.base_url)
    return msgspec.structs.replace(
        base,
        models=[ModelAlias(id=ALIAS, backend="cpu", engine_model=ENGINE_MODEL, tools=tools)],
        resilience=ResilienceSettings(retries=2, breaker_threshold=1, breaker_cooldown_s=60),
    )


def engine_chats(engine: FakeEngine) -> int:
    return len([r for r in engine.requests if r.path == "/v1/chat/completions"])


async def breaker_open(gateway: Gateway) -> bool:
    """Whether the cpu backend's breaker is open (the gauge appears with the first event)."""
    metrics = (await gateway.client.get("/metrics")).text
    return 'tiergate_gateway_breaker_state{backend="cpu"} 1.0' in metrics


def user(content: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


# (messages or extra body fields, expected param, expected code)
REJECTED: list[tuple[dict[str, Any], str, str]] = [
    # Defect 2: a field of another role, even null, never reaches llama.cpp.
    ({"messages": [user(tool_call_id=None)]}, "messages[0].tool_call_id", "unknown_parameter"),
    ({"messages": [user(tool_calls=[GOOD_CALL])]}, "messages[0].tool_calls", "unknown_parameter"),
    (
        {"messages": [{"role": "system", "content": "s", "tool_call_id": "x"}]},
        "messages[0].tool_call_id",
        "unknown_parameter",
    ),
    (
        {"messages": [user(), {"role": "tool", "content": "r", "tool_call_id": None}]},
        "messages[1].tool_call_id",
        "invalid_value",
    ),
    (
        {"messages": [user(), {"role": "tool", "content": "r"}]},
        "messages[1].tool_call_id",
        "missing_required_parameter",
    ),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
                }
            ]
        },
        "messages[0].tool_calls[0].type",
        "missing_required_parameter",
    ),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}}
                    ],
                }
            ]
        },
        "messages[0].tool_calls[0].function.arguments",
        "invalid_value",
    ),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                }
            ]
        },
        "messages[0].tool_calls[0].id",
        "missing_required_parameter",
    ),
    # Defect 11: caught here instead of relayed from the engine as "code": "400".
    (
        {"messages": [user(), {"role": "assistant", "content": None}]},
        "messages[1].content",
        "missing_required_parameter",
    ),
    (
        {"messages": [user(), {"role": "assistant"}]},
        "messages[1].content",
        "missing_required_parameter",
    ),
    # Defect 8: media parts to a text-only model.
    (
        {"messages": [user([{"type": "text", "text": "what?"}, IMAGE])]},
        "messages[0].content[1]",
        "unsupported_content",
    ),
    ({"messages": [user(), user([AUDIO])]}, "messages[1].content[0]", "unsupported_content"),
    ({"messages": [user([FILE])]}, "messages[0].content[0]", "unsupported_content"),
    # Defect 9.
    ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({"stream": False, "stream_options": {}}, "stream_options", "invalid_value"),
    # Defect 12: a tool call required of a model that cannot make one.
    ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice", "unsupported_value"),
    (
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        "tool_choice",
        "unsupported_value",
    ),
    (
        {
            "tools": TOOLS,
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [{"type": "function"}]},
            },
        },
        "tool_choice",
        "unsupported_value",
    ),
]


@pytest.mark.parametrize(("fields", "param", "code"), REJECTED)
async def test_a_request_that_cannot_succeed_is_a_400_no_engine_sees(
    engine: FakeEngine, fields: dict[str, Any], param: str, code: str
) -> None:
    async with running(strict_settings(engine), engine) as gateway:
        for _ in range(3):  # repeated: a client's mistakes never open the breaker
            response = await gateway.client.post(CHAT, json=chat_body(**fields))
            error = assert_envelope(response, 400)
            assert (error["param"], error["code"]) == (param, code), error
            assert error["type"] == "invalid_request_error"
        assert engine_chats(engine) == 0
        assert not await breaker_open(gateway)


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": TOOLS, "tool_choice": "auto"},
        {"tools": TOOLS},
        {"tools": TOOLS, "tool_choice": "none"},
        {"stream": True, "stream_options": {"include_usage": False}},
        {"stream_options": None},
        {"messages": [user(), {"role": "assistant", "content": None, "tool_calls": [GOOD_CALL]}]},
        {"messages": [user(), {"role": "assistant", "content": "ok", "refusal": None}]},
        {"messages": [user([{"type": "text", "text": "hi"}])]},
    ],
)
async def test_requests_the_model_can_serve_are_forwarded(
    engine: FakeEngine, fields: dict[str, Any]
) -> None:
    async with running(strict_settings(engine), engine) as gateway:
        response = await gateway.client.post(CHAT, json=chat_body(**fields))
        assert response.status_code == 200, response.text
        assert engine_chats(engine) == 1


async def test_null_fields_of_a_message_are_not_forwarded(engine: FakeEngine) -> None:
    async with running(strict_settings(engine), engine) as gateway:
        body = chat_body(
            messages=[user(name=None), {"role": "assistant", "content": "a", "name": None}]
        )
        response = await gateway.client.post(CHAT, json=body)
        assert response.status_code == 200, response.text
        sent = [r for r in engine.requests if r.path == "/v1/chat/completions"][-1].body
        assert isinstance(sent, dict)
        assert sent["messages"][:2] == [user(), {"role": "assistant", "content": "a"}]


async def test_a_model_with_tools_takes_a_required_tool_call(engine: FakeEngine) -> None:
    async with running(strict_settings(engine, tools=True), engine) as gateway:
        body = chat_body(tools=TOOLS, tool_choice="required")
        assert (await gateway.client.post(CHAT, json=body)).status_code == 200


# An engine's own answer to a client mistake: (status, body) → (status, code, param).
LLAMA_TYPE_ERROR = (
    '{"error":{"code":500,"message":"[json.exception.type_error.302] type must be string, '
    'but is null","type":"server_error"}}'
)
LLAMA_400 = (
    '{"error":{"code":400,"message":"Assistant message must contain either \'content\' or '
    '\'tool_calls\'!","type":"invalid_request_error"}}'
)
LLAMA_CONTEXT = (
    '{"error":{"code":400,"message":"the request exceeds the available context size, try '
    'increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}'
)
VLLM_CONTEXT = (
    '{"object":"error","message":"This model\'s maximum context length is 4096 tokens. However, '
    'you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}'
)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, LLAMA_TYPE_ERROR, (400, "invalid_value", None)),
        (400, LLAMA_400, (400, "invalid_value", None)),
        (400, LLAMA_CONTEXT, (400, "context_length_exceeded", "messages")),
        (400, VLLM_CONTEXT, (400, "context_length_exceeded", "messages")),
        (422, '{"detail":"bad field"}', (422, "invalid_value", None)),
    ],
)
async def test_an_engine_refusing_the_request_is_not_retried_nor_a_breaker_failure(
    engine: FakeEngine, status: int, body: str, expected: tuple[int, str, str | None]
) -> None:
    async with running(strict_settings(engine), engine) as gateway:
        for _ in range(2):
            response = await gateway.client.post(
                CHAT, json=chat_body(fake={"status": status, "error_body": body})
            )
            error = assert_envelope(response, expected[0])
            assert (error["code"], error["param"]) == expected[1:], error
            assert error["type"] == "invalid_request_error"
        assert engine_chats(engine) == 2  # once per request: never retried
        assert not await breaker_open(gateway)


async def test_a_routed_request_goes_only_to_models_that_accept_it(engine: FakeEngine) -> None:
    async with FakeEngine(models=["engine-vision"]) as vision:
        base = gateway_settings(engine.base_url)
        settings = msgspec.structs.replace(
            base,
            backends={**base.backends, "gpu": BackendSettings(base_url=f"{vision.base_url}/v1")},
            models=[
                *base.models,
                ModelAlias(
                    id="tiergate-vision", backend="gpu", engine_model="engine-vision", vision=True
                ),
                ModelAlias(id="tiergate", backend="cpu", engine_model=ENGINE_MODEL, routed=True),
            ],
            # The text-only model is listed first: a request with an image skips it.
            routes=[RouteRule(models=[ALIAS, "tiergate-vision"])],
            tiers={"anonymous": TierPolicy(max_tokens=100)},
        )
        async with running(settings, engine) as gateway:
            body = chat_body(model="tiergate", messages=[user([IMAGE])])
            response = await gateway.client.post(CHAT, json=body)
            assert response.status_code == 200, response.text
            assert response.headers["x-tiergate-backend"] == "gpu"
            text = await gateway.client.post(CHAT, json=chat_body(model="tiergate"))
            assert text.headers["x-tiergate-backend"] == "cpu"
            audio = await gateway.client.post(
                CHAT, json=chat_body(model="tiergate", messages=[user([AUDIO])])
            )
            # Nobody on the rule accepts audio: the first model's 400.
            assert assert_envelope(audio, 400)["param"] == "messages[0].content[0]"
        assert engine_chats(engine) == 1


@pytest.mark.parametrize(
    "content",
    [
        b'{"model":"\xff\xfe","messages":[]}',
        b'{"model":"tiergate-small","messages":[{"role":"user","content":"\xc3\x28"}]}',
        b'{"\xff":1}',
    ],
)
async def test_invalid_utf8_inside_json_is_a_400(gateway: Gateway, content: bytes) -> None:
    response = await gateway.client.post(
        CHAT, content=content, headers={"content-type": "application/json"}
    )
    assert assert_envelope(response, 400)["code"] == "invalid_json"


def test_assert_envelope_is_strict() -> None:
    """The helper these tests lean on rejects a non-envelope (so they can fail)."""
    fake = httpx.Response(400, json={"detail": "x"})
    with pytest.raises(AssertionError):
        assert_envelope(fake, 400)
