"""Chat Completions → Responses (`from_chat`), what is stored, and ids: pure table tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from tiergate_gateway.responses import (
    conversation_after,
    from_chat,
    new_call_id,
    new_function_call_id,
    new_message_id,
    new_reasoning_id,
    new_response_id,
    to_chat,
)
from tiergate_proto.openai import (
    AssistantMessage,
    ChatCompletion,
    FunctionCallItem,
    OutputMessage,
    ReasoningItem,
    StoredResponse,
    SystemMessage,
    ToolMessage,
    UserMessage,
)

if TYPE_CHECKING:
    from tests.gateway.conftest import ResponsesSchema

from .test_responses_translate import (
    CHAT_WEATHER_TOOL,
    WEATHER_TOOL,
    completion,
    encoded,
    request,
)

# --- from_chat --------------------------------------------------------------------------------

USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
RESPONSE_USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 17,
}


def _shape(output: list[Any]) -> list[Any]:
    """Output items without their random ids."""
    shaped = []
    for item in output:
        rest = dict(item)
        prefix = {"message": "msg_", "function_call": "fc_", "reasoning": "rs_"}[rest["type"]]
        assert rest.pop("id").startswith(prefix)
        shaped.append(rest)
    return shaped


def _text(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


@pytest.mark.parametrize(
    ("message", "finish_reason", "status", "details", "output"),
    [
        ({"content": "Hello."}, "stop", "completed", None, [_text("Hello.")]),
        (
            {"content": "Hel"},
            "length",
            "incomplete",
            {"reason": "max_output_tokens"},
            [_text("Hel", "incomplete")],
        ),
        (
            {"content": ""},
            "content_filter",
            "incomplete",
            {"reason": "content_filter"},
            [_text("", "incomplete")],
        ),
        ({"content": None}, "stop", "completed", None, [_text("")]),
        (
            {"content": None, "refusal": "I can't."},
            "stop",
            "completed",
            None,
            [
                {
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "refusal", "refusal": "I can't."}],
                }
            ],
        ),
        (
            {"content": "4", "reasoning_content": "2+2 is 4."},
            "stop",
            "completed",
            None,
            [
                {
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "2+2 is 4."}],
                    "status": "completed",
                },
                _text("4"),
            ],
        ),
        (
            {
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            "tool_calls",
            "completed",
            None,
            [
                _text("Let me check."),
                {
                    "type": "function_call",
                    "call_id": "call_a",
                    "name": "get_weather",
                    "arguments": '{"city":"Oslo"}',
                    "status": "completed",
                },
                {
                    "type": "function_call",
                    "call_id": "call_b",
                    "name": "get_weather",
                    "arguments": '{"city":"Rome"}',
                    "status": "completed",
                },
            ],
        ),
    ],
    ids=["text", "length", "content-filter", "empty", "refusal", "reasoning", "tool-calls"],
)
def test_completions_become_responses(
    responses_schema: ResponsesSchema,
    message: dict[str, Any],
    finish_reason: str,
    status: str,
    details: Any,
    output: list[Any],
) -> None:
    parsed = request(input="hi", tools=[WEATHER_TOOL])
    response = from_chat(
        completion(message, finish_reason, usage=USAGE), parsed, "resp_1", 100, completed_at=101
    )
    body = responses_schema.validate("Response", encoded(response))
    assert body["status"] == status
    assert body["incomplete_details"] == details
    assert _shape(body["output"]) == output
    assert body["usage"] == RESPONSE_USAGE
    assert body.get("completed_at") == (101 if status == "completed" else None)


def test_the_request_is_echoed(responses_schema: ResponsesSchema) -> None:
    parsed = request(
        input="hi",
        instructions="Be brief.",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        temperature=0.5,
        top_p=0.8,
        max_output_tokens=99,
        previous_response_id="resp_0",
        store=False,
        metadata={"k": "v"},
        text={"format": {"type": "json_object"}},
        user="u1",
    )
    response = from_chat(completion({"content": "{}"}), parsed, "resp_1", 100)
    body = responses_schema.validate("Response", encoded(response))
    assert body["id"] == "resp_1"
    assert body["object"] == "response"
    assert body["created_at"] == 100
    assert body["model"] == "public-alias"
    assert body["instructions"] == "Be brief."
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["parallel_tool_calls"] is False
    assert (body["temperature"], body["top_p"], body["max_output_tokens"]) == (0.5, 0.8, 99)
    assert body["previous_response_id"] == "resp_0"
    assert body["store"] is False
    assert body["metadata"] == {"k": "v"}
    assert body["text"] == {"format": {"type": "json_object"}}
    assert body["user"] == "u1"
    assert "usage" not in body  # the engine reported none


def test_defaults_are_echoed_as_openai_does(responses_schema: ResponsesSchema) -> None:
    response = from_chat(completion({"content": "x"}), request(input="hi"), "resp_1", 1, model="m2")
    body = responses_schema.validate("Response", encoded(response))
    assert body["model"] == "m2"
    assert body["tools"] == []
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is True
    assert body["metadata"] == {}
    assert body["text"] == {"format": {"type": "text"}}
    assert body["truncation"] == "disabled"
    assert body["store"] is True
    for key in (
        "error",
        "instructions",
        "temperature",
        "top_p",
        "max_output_tokens",
        "previous_response_id",
    ):
        assert body[key] is None


def test_a_completion_without_choices_still_answers(responses_schema: ResponsesSchema) -> None:
    empty = msgspec.convert(
        {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []},
        ChatCompletion,
    )
    body = responses_schema.validate(
        "Response", encoded(from_chat(empty, request(input="hi"), "resp_1", 1))
    )
    assert _shape(body["output"]) == [_text("")]


# --- a function tool round trip and what is stored --------------------------------------------


def test_function_tool_round_trip() -> None:
    # Turn 1: the client offers a tool; the engine calls it.
    first = request(instructions="Use tools.", input="Weather in Oslo?", tools=[WEATHER_TOOL])
    body = to_chat(first)
    assert body["tools"] == [CHAT_WEATHER_TOOL]
    assert body["messages"][0] == {"role": "system", "content": "Use tools."}
    answer = completion(
        {
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        "tool_calls",
    )
    response = from_chat(answer, first, new_response_id(), 1)
    (call,) = response.output
    assert isinstance(call, FunctionCallItem)
    assert (call.call_id, call.name, call.arguments) == ("call_7", "get_weather", '{"city":"Oslo"}')
    stored = StoredResponse(
        subject="user:1", messages=conversation_after(first, [], response), response=response
    )

    # The store round trip (Redis holds the JSON).
    stored = msgspec.json.decode(msgspec.json.encode(stored), type=StoredResponse)
    assert stored.response == response
    assert stored.messages == [
        UserMessage(content="Weather in Oslo?"),
        AssistantMessage(tool_calls=answer.choices[0].message.tool_calls),
    ]

    # Turn 2: the client sends the result, continuing the stored response.
    second = request(
        previous_response_id=response.id,
        input=[{"type": "function_call_output", "call_id": "call_7", "output": '{"temp": 21}'}],
        tools=[WEATHER_TOOL],
    )
    body = to_chat(second, stored.messages)
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_7",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_7"},
    ]
    final = from_chat(completion({"content": "21 °C in Oslo."}), second, new_response_id(), 2)
    assert conversation_after(second, stored.messages, final)[2:] == [
        ToolMessage(content='{"temp": 21}', tool_call_id="call_7"),
        AssistantMessage(content="21 °C in Oslo."),
    ]


def test_the_stored_conversation_leaves_instructions_and_reasoning_out() -> None:
    parsed = request(
        instructions="Secret rules.",
        input=[{"role": "system", "content": "Kept."}, {"role": "user", "content": "q"}],
    )
    response = from_chat(
        completion({"content": "a", "reasoning_content": "think"}), parsed, "resp_1", 1
    )
    assert [type(item) for item in response.output] == [ReasoningItem, OutputMessage]
    assert conversation_after(parsed, [], response) == [
        SystemMessage(content="Kept."),
        UserMessage(content="q"),
        AssistantMessage(content="a"),
    ]


def test_output_after_calls_starts_a_new_assistant_message() -> None:
    parsed = request(input="q")
    response = from_chat(
        completion(
            {
                "content": "x",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            }
        ),
        parsed,
        "resp_1",
        1,
    )
    later = msgspec.structs.replace(response, output=[*response.output, response.output[0]])
    messages = conversation_after(parsed, [], later)
    assert [type(m).__name__ for m in messages] == [
        "UserMessage",
        "AssistantMessage",
        "AssistantMessage",
    ]
    assert msgspec.to_builtins(messages[1]) == {
        "role": "assistant",
        "content": "x",
        "tool_calls": [
            {"type": "function", "id": "c", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert msgspec.to_builtins(messages[2]) == {"role": "assistant", "content": "x"}


# --- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "prefix"),
    [
        (new_response_id, "resp_"),
        (new_message_id, "msg_"),
        (new_function_call_id, "fc_"),
        (new_reasoning_id, "rs_"),
        (new_call_id, "call_"),
    ],
)
def test_ids_have_openai_prefixes_and_do_not_repeat(make: Any, prefix: str) -> None:
    made = {make() for _ in range(100)}
    assert len(made) == 100
    assert all(value.startswith(prefix) and len(value) > len(prefix) + 20 for value in made)
