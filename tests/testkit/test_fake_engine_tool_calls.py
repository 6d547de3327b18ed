"""The fake engine's function calls (`fake.tool_call`) and engine extras (`fake.extra_fields`)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import openai
import pytest

from tiergate_testkit.fake_engine import Behaviour, FakeEngine
from tiergate_testkit.fake_engine.request import ChatRequest, plan_answer
from tiergate_testkit.openai_schema import sse_payloads

CHAT = "/v1/chat/completions"
ARGUMENTS = '{"city": "Oslo", "unit": "celsius"}'
CALL = {"name": "get_weather", "arguments": ARGUMENTS, "id": "call_42", "pieces": 4}
MESSAGES: list[Any] = [{"role": "user", "content": "weather in Oslo?"}]


def body(*, stream: bool, **fake: object) -> dict[str, Any]:
    return {"model": "fake-model", "messages": MESSAGES, "stream": stream, "fake": fake}


async def test_streamed_call_first_delta_then_arguments_in_pieces(http: httpx.AsyncClient) -> None:
    response = await http.post(
        CHAT, json={**body(stream=True, tool_call=CALL), "stream_options": {"include_usage": True}}
    )
    payloads = sse_payloads(response.content)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_42",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    pieces = [d["tool_calls"][0] for d in deltas[2:-1]]
    assert len(pieces) == 4
    assert all(set(p) == {"index", "function"} and p["index"] == 0 for p in pieces)
    assert "".join(p["function"]["arguments"] for p in pieces) == ARGUMENTS
    assert deltas[-1] == {}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


async def test_whole_call(http: httpx.AsyncClient) -> None:
    # Not checked against OpenAI's schema: like some engines, the fake sends
    # `"system_fingerprint": null`, which the gateway must drop (tests/gateway).
    answer = (await http.post(CHAT, json=body(stream=False, tool_call=CALL))).json()
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_42",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ARGUMENTS},
            }
        ],
    }


async def test_openai_client_accumulates_the_streamed_call(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="fake-model",
        messages=MESSAGES,
        stream=True,
        extra_body={"fake": {"tool_call": CALL}},
    )
    name, arguments, finish = "", "", None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function is not None:
                    name += call.function.name or ""
                    arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert (name, json.loads(arguments), finish) == (
        "get_weather",
        json.loads(ARGUMENTS),
        "tool_calls",
    )


@pytest.mark.parametrize(
    ("options", "cap", "pieces", "finish"),
    [
        ({"name": "f"}, None, ("{", "}"), "tool_calls"),  # default: 3 pieces at most
        ({"name": "f", "arguments": ""}, None, ("",), "tool_calls"),
        (
            {"name": "f", "arguments": "abcdefghij", "pieces": 4},
            None,
            ("abc", "def", "ghi", "j"),
            "tool_calls",
        ),
        ({"name": "f", "arguments": "ab", "pieces": 5}, None, ("a", "b"), "tool_calls"),
        ({"name": "f", "arguments": "abcdef", "pieces": 3}, 2, ("ab", "cd"), "length"),
    ],
)
def test_plan(
    options: dict[str, Any], cap: int | None, pieces: tuple[str, ...], finish: str
) -> None:
    request = msgspec.convert({"max_tokens": cap, "fake": {"tool_call": options}}, ChatRequest)
    answer = plan_answer(request)
    assert (answer.chunks, answer.finish_reason) == (pieces, finish)
    assert answer.tool_call is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tool_call": {"name": "f", "argument": "{}"}}, "argument"),
        ({"tool_call": {}}, "name"),
        ({"tool_call": {"name": "f", "pieces": 0}}, "pieces"),
        ({"tool_call": {"name": "f"}, "content": "x"}, "not both"),
        ({"tool_call": {"name": "f"}, "chunks": 2}, "not both"),
    ],
)
def test_misspelt_or_impossible_options_fail(options: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(options, Behaviour)


async def test_tool_call_with_a_fault(engine: FakeEngine, http: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(CHAT, json=body(stream=True, tool_call=CALL, drop_after=2))
    assert engine.requests[-1].chunks_sent == 2
    assert engine.requests[-1].outcome == "drop_after"


async def test_extra_fields_on_the_completion_and_every_chunk(http: httpx.AsyncClient) -> None:
    extra = {"timings": {"predicted_n": 2}, "kv_transfer_params": None}
    whole = (await http.post(CHAT, json=body(stream=False, extra_fields=extra))).json()
    assert {k: whole[k] for k in extra} == extra
    assert whole["choices"][0]["message"]["content"]
    streamed = await http.post(CHAT, json=body(stream=True, extra_fields=extra))
    chunks = [json.loads(p) for p in sse_payloads(streamed.content)[:-1]]
    assert len(chunks) > 2
    assert all({k: c[k] for k in extra} == extra for c in chunks)
