"""Responses ⇄ Chat Completions (`responses/request.py`, `translate.py`): pure table tests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from tiergate_gateway.responses import (
    extra_fields,
    parse_response_request,
    to_chat,
)
from tiergate_proto.openai import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    FunctionCall,
    FunctionToolCall,
    Message,
    ResponseCreateRequest,
    UserMessage,
)
from tiergate_runtime.errors import InvalidRequest

if TYPE_CHECKING:
    pass

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": True,
}
CHAT_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": WEATHER_TOOL["parameters"],
        "strict": True,
    },
}


def request(**fields: Any) -> ResponseCreateRequest:
    return parse_response_request({"model": "m", **fields})


def chat(**fields: Any) -> dict[str, Any]:
    return to_chat(request(**fields))


def completion(
    message: dict[str, Any], finish_reason: str = "stop", **extra: Any
) -> ChatCompletion:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "public-alias",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish_reason,
            }
        ],
        **extra,
    }
    return msgspec.convert(body, ChatCompletion)


def encoded(value: object) -> Any:
    return json.loads(msgspec.json.encode(value))


# --- reading the request ----------------------------------------------------------------------


def test_untyped_items_are_tagged_and_the_raw_dict_is_left_alone() -> None:
    raw: dict[str, Any] = {
        "model": "m",
        "input": [{"role": "user", "content": "hi"}, {"id": "msg_1"}],
    }
    parsed = parse_response_request(raw)
    assert isinstance(parsed.input, list)
    assert [type(item).__name__ for item in parsed.input] == ["InputMessage", "ItemReference"]
    assert "type" not in raw["input"][0]


def test_defaults_follow_openai() -> None:
    parsed = request(input="hi")
    assert parsed.store is True
    assert parsed.stream is False
    assert parsed.input == "hi"


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        (
            {"input": [{"type": "web_search_call", "id": "ws_1"}]},
            "input[0].type",
            "web_search_call",
        ),
        (
            {"input": ["hi", {"type": "computer_call_output", "call_id": "c"}]},
            "input[1].type",
            "computer_call_output",
        ),
        ({"tools": [{"type": "teleport"}]}, "tools[0].type", "teleport"),
        ({"input": [{"role": "bot", "content": "x"}]}, "input[0].role", "bot"),
        ({"max_output_tokens": 0}, "max_output_tokens", ">= 1"),
        ({"temperature": 3}, "temperature", "<= 2"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type", "yaml"),
    ],
)
def test_invalid_requests_are_400s_naming_the_field(
    fields: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_response_request({"model": "m", "input": "hi", **fields})
    assert caught.value.param == param
    assert words in caught.value.message


def test_extra_fields_are_what_the_struct_does_not_model() -> None:
    raw = {"model": "m", "input": "hi", "top_k": 5, "min_p": 0.1, "temperature": 0.2}
    assert extra_fields(raw) == {"top_k": 5, "min_p": 0.1}
    body = to_chat(parse_response_request(raw), extras=extra_fields(raw))
    assert body["top_k"] == 5
    assert body["temperature"] == 0.2


def test_extras_never_override_translated_fields() -> None:
    body = to_chat(request(input="hi"), extras={"messages": [], "model": "other", "top_k": 1})
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "user", "content": "hi"}]


# --- to_chat ----------------------------------------------------------------------------------

IMAGE = "data:image/png;base64,iVBORw0KGgo="


@pytest.mark.parametrize(
    ("fields", "messages"),
    [
        ({"input": "hi"}, [{"role": "user", "content": "hi"}]),
        (
            {"instructions": "Be brief.", "input": "hi"},
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        ),
        (
            {
                "input": [
                    {"role": "developer", "content": "Rules."},
                    {"role": "user", "content": "q"},
                ]
            },
            [{"role": "system", "content": "Rules."}, {"role": "user", "content": "q"}],
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {"type": "input_image", "image_url": IMAGE, "detail": "low"},
                            {"type": "input_file", "file_data": "JVBER", "filename": "a.pdf"},
                        ],
                    }
                ]
            },
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
                        {"type": "file", "file": {"file_data": "JVBER", "filename": "a.pdf"}},
                    ],
                }
            ],
        ),
        (
            {
                "input": [
                    {"role": "system", "content": [{"type": "input_text", "text": "S"}]},
                    {"role": "user", "content": "q"},
                    {
                        "type": "message",
                        "id": "msg_1",
                        "role": "assistant",
                        "status": "completed",
                        "content": [
                            {"type": "output_text", "text": "a", "annotations": []},
                            {"type": "output_text", "text": "b"},
                        ],
                    },
                    {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
                    {"role": "user", "content": "again"},
                ]
            },
            [
                {"role": "system", "content": [{"type": "text", "text": "S"}]},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "ab"},
                {"role": "assistant", "refusal": "No."},
                {"role": "user", "content": "again"},
            ],
        ),
        (
            # a replayed turn: text, two parallel calls, both outputs, reasoning dropped
            {
                "input": [
                    {"role": "user", "content": "Oslo and Rome?"},
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {"type": "message", "role": "assistant", "content": "Checking."},
                    {
                        "type": "function_call",
                        "call_id": "c1",
                        "name": "w",
                        "arguments": '{"c":"Oslo"}',
                    },
                    {
                        "type": "function_call",
                        "call_id": "c2",
                        "name": "w",
                        "arguments": '{"c":"Rome"}',
                    },
                    {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                    {
                        "type": "function_call_output",
                        "call_id": "c2",
                        "output": [{"type": "input_text", "text": "rain"}],
                    },
                ]
            },
            [
                {"role": "user", "content": "Oslo and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "type": "function",
                            "id": "c1",
                            "function": {"name": "w", "arguments": '{"c":"Oslo"}'},
                        },
                        {
                            "type": "function",
                            "id": "c2",
                            "function": {"name": "w", "arguments": '{"c":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                {
                    "role": "tool",
                    "content": [{"type": "text", "text": "rain"}],
                    "tool_call_id": "c2",
                },
            ],
        ),
    ],
    ids=["string", "instructions", "developer", "user-parts", "replayed-turns", "function-calls"],
)
def test_input_becomes_chat_messages(fields: dict[str, Any], messages: list[Any]) -> None:
    body = chat(**fields)
    assert body["messages"] == messages
    msgspec.convert(body, ChatCompletionRequest)  # a valid chat request


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {}),
        ({"max_output_tokens": 64}, {"max_tokens": 64}),
        ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2, "top_p": 0.9}),
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
        ({"text": {"format": {"type": "text"}}}, {}),
        (
            {"text": {"format": {"type": "json_object"}}},
            {"response_format": {"type": "json_object"}},
        ),
        (
            {
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "pt",
                        "schema": {"type": "object"},
                        "strict": True,
                    }
                }
            },
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "pt", "schema": {"type": "object"}, "strict": True},
                }
            },
        ),
        ({"text": {"verbosity": "low"}}, {"verbosity": "low"}),
        ({"reasoning": {"effort": "high", "summary": "auto"}}, {"reasoning_effort": "high"}),
        (
            {"user": "u", "safety_identifier": "s", "prompt_cache_key": "k"},
            {"user": "u", "safety_identifier": "s", "prompt_cache_key": "k"},
        ),
        # the gateway's business or ignored: never sent to the engine
        (
            {
                "store": False,
                "metadata": {"a": "b"},
                "include": ["message.output_text.logprobs"],
                "truncation": "auto",
                "max_tool_calls": 2,
                "service_tier": "flex",
                "top_logprobs": 2,
                "previous_response_id": "resp_1",
                "parallel_tool_calls": False,
            },
            {},
        ),
        ({"tools": [WEATHER_TOOL]}, {"tools": [CHAT_WEATHER_TOOL]}),
        (
            {"tools": [WEATHER_TOOL], "parallel_tool_calls": False, "tool_choice": "required"},
            {"tools": [CHAT_WEATHER_TOOL], "parallel_tool_calls": False, "tool_choice": "required"},
        ),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": "none"},
            {"tools": [CHAT_WEATHER_TOOL], "tool_choice": "none"},
        ),
        ({"tool_choice": "auto"}, {}),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"}},
            {
                "tools": [CHAT_WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
        ),
        (
            {
                "tools": [WEATHER_TOOL, {"type": "function", "name": "other", "parameters": None}],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "required",
                    "tools": [{"type": "function", "name": "get_weather"}],
                },
            },
            {"tools": [CHAT_WEATHER_TOOL], "tool_choice": "required"},
        ),
    ],
    ids=[
        "plain",
        "max-output-tokens",
        "sampling",
        "stream",
        "text-format",
        "json-object",
        "json-schema",
        "verbosity",
        "reasoning",
        "identifiers",
        "not-for-the-engine",
        "tools",
        "required",
        "none",
        "auto-without-tools",
        "named-function",
        "allowed-tools",
    ],
)
def test_options_map_onto_chat(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = chat(input="hi", **fields)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], **expected}
    msgspec.convert(body, ChatCompletionRequest)


BUILTIN_TOOLS = [
    {"type": "web_search"},
    {"type": "web_search_preview"},
    {"type": "web_search_preview_2025_03_11"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {
        "type": "computer_use_preview",
        "environment": "browser",
        "display_width": 1,
        "display_height": 1,
    },
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation"},
    {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"},
    {"type": "local_shell"},
    {"type": "shell"},
    {"type": "apply_patch"},
]


@pytest.mark.parametrize("tool", BUILTIN_TOOLS, ids=lambda tool: tool["type"])
def test_builtin_tools_are_refused_by_name(tool: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat(input="hi", tools=[WEATHER_TOOL, tool])
    assert caught.value.param == "tools[1].type"
    assert f"'{tool['type']}'" in caught.value.message
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tools": [{"type": "custom", "name": "sql"}]}, "tools[0].type", "Custom tools"),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools[1].name", "Duplicate"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "web_search_preview"),
        ({"tool_choice": {"type": "mcp", "server_label": "x"}}, "tool_choice", "'mcp'"),
        ({"tool_choice": "required"}, "tool_choice", "requires 'tools'"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "nope"}},
            "tool_choice.name",
            "'nope'",
        ),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "mcp"}],
                },
            },
            "tool_choice.tools[0]",
            "function tools",
        ),
        (
            {"input": [{"type": "item_reference", "id": "msg_1"}]},
            "input[0].id",
            "previous_response_id",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
            "input[0].call_id",
            "'call_x'",
        ),
        (
            {
                "input": [
                    {"role": "system", "content": [{"type": "input_image", "image_url": IMAGE}]}
                ]
            },
            "input[0].content[0].type",
            "input_text",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}
                ]
            },
            "input[0].content[0].image_url",
            "file_id",
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}],
                    }
                ]
            },
            "input[0].content[0].file_url",
            "file_data",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
            "input[0].content[0].type",
            "assistant",
        ),
        (
            {
                "input": [
                    {"role": "assistant", "content": [{"type": "input_image", "image_url": IMAGE}]}
                ]
            },
            "input[0].content[0].type",
            "input_image",
        ),
        (
            {
                "input": [
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "image_url": IMAGE}],
                    },
                ]
            },
            "input[1].output[0].type",
            "input_image",
        ),
        ({"background": True}, "background", "Background"),
        ({"conversation": "conv_1"}, "conversation", "previous_response_id"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "prompt"),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options", "stream"),
        ({"input": None}, "input", "no input"),
        ({"input": [], "instructions": "Be brief."}, "input", "no input"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input", "no input"),
    ],
)
def test_what_chat_cannot_carry_is_a_400(fields: dict[str, Any], param: str, words: str) -> None:
    body: dict[str, Any] = {"input": "hi", **fields}
    if body["input"] is None:
        del body["input"]
    with pytest.raises(InvalidRequest) as caught:
        chat(**body)
    assert caught.value.param == param
    assert words in caught.value.message
    assert caught.value.status == 400


def test_background_false_is_accepted() -> None:
    assert chat(input="hi", background=False)["messages"] == [{"role": "user", "content": "hi"}]


# --- history ----------------------------------------------------------------------------------

HISTORY: list[Message] = [
    UserMessage(content="Weather in Oslo?"),
    AssistantMessage(
        tool_calls=[
            FunctionToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments="{}"))
        ]
    ),
]


@pytest.mark.parametrize("as_dicts", [False, True], ids=["structs", "dicts"])
def test_history_comes_after_instructions_and_before_input(as_dicts: bool) -> None:
    history: Any = msgspec.to_builtins(HISTORY) if as_dicts else HISTORY
    parsed = request(
        instructions="New rules.",
        previous_response_id="resp_1",
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
    )
    body = to_chat(parsed, history)
    assert body["messages"] == [
        {"role": "system", "content": "New rules."},
        *msgspec.to_builtins(HISTORY),
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize(
    ("history", "items"),
    [
        (HISTORY, [{"role": "user", "content": "And in Rome?"}]),
        ([], [{"type": "function_call", "call_id": "c9", "name": "f", "arguments": "{}"}]),
        (
            [],
            [
                {"type": "function_call", "call_id": "c8", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c9", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c8", "output": "ok"},
            ],
        ),
    ],
    ids=["history-ends-in-a-call", "input-ends-in-a-call", "one-of-two-answered"],
)
def test_a_function_call_without_its_output_is_a_400(
    history: list[Message], items: list[Any]
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat(request(input=items), history)
    assert caught.value.param == "input"
    assert "function_call_output" in caught.value.message


def test_a_history_that_is_not_chat_messages_fails_loudly() -> None:
    with pytest.raises(msgspec.ValidationError):
        to_chat(request(input="hi"), [{"role": "robot", "content": "x"}])
