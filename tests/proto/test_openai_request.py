"""ChatCompletionRequest: documented requests round-trip and unknown fields are tolerated."""

import json
from typing import Any

import msgspec
import pytest

from tiergate_proto.openai import (
    AssistantMessage,
    ChatCompletionRequest,
    FunctionToolCall,
    ImageUrlPart,
    JsonSchemaResponseFormat,
    TextPart,
    ToolMessage,
    UserMessage,
)

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}

# Requests as the OpenAI API reference and guides show them. None of them spells out a
# default (`"stream": false`, `null`), which the round trip would drop.
DOCUMENTED: dict[str, dict[str, Any]] = {
    "plain chat": {
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ],
    },
    "system, name, sampling knobs": {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Hi", "name": "alice"},
        ],
        "temperature": 0.2,
        "top_p": 1,
        "n": 2,
        "max_completion_tokens": 64,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "frequency_penalty": -0.5,
        "presence_penalty": 2,
        "logit_bias": {"50256": -100, "15339": 5},
        "logprobs": True,
        "top_logprobs": 2,
        "user": "user-1234",
    },
    "multi-part with image_url": {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's in this image?"},
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://upload.wikimedia.org/boardwalk.jpg",
                            "detail": "high",
                        },
                    },
                ],
            }
        ],
        "max_tokens": 300,
    },
    "input_audio and file parts": {
        "model": "gpt-4o-audio-preview",
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:..."}},
                    {"type": "file", "file": {"file_id": "file-abc123"}},
                ],
            }
        ],
    },
    "tools + tool_choice auto": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    },
    "tools + named tool_choice": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_current_weather"}},
    },
    "assistant tool_calls then tool message": {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "What's the weather like in Boston today?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": '{"location": "Boston, MA"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp": 22}'},
        ],
        "tools": [WEATHER_TOOL],
    },
    "json_schema response_format": {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "Extract the event information."},
            {"role": "user", "content": "Alice and Bob are going to a science fair on Friday."},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "calendar_event",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "date": {"type": "string"},
                        "participants": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["name", "date", "participants"],
                    "additionalProperties": False,
                },
            },
        },
    },
    "json_object response_format": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Reply in JSON."}],
        "response_format": {"type": "json_object"},
    },
    "stream with stream_options": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hello!"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    "reasoning model options": {
        "model": "o3",
        "messages": [
            {"role": "developer", "content": "Think."},
            {"role": "user", "content": "2+2"},
        ],
        "reasoning_effort": "high",
        "verbosity": "low",
        "service_tier": "flex",
        "store": True,
        "metadata": {"team": "search"},
        "prompt_cache_key": "k1",
        "safety_identifier": "hash-1",
    },
    "custom tools, allowed_tools, custom tool call": {
        "model": "gpt-5",
        "messages": [
            {"role": "user", "content": "Run it"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "ok"}, {"type": "refusal", "refusal": "no"}],
                "tool_calls": [
                    {"id": "c1", "type": "custom", "custom": {"name": "sh", "input": "ls"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a b"}]},
        ],
        "tools": [
            {
                "type": "custom",
                "custom": {
                    "name": "sh",
                    "format": {
                        "type": "grammar",
                        "grammar": {"syntax": "regex", "definition": "[a-z ]+"},
                    },
                },
            },
            {"type": "custom", "custom": {"name": "note", "format": {"type": "text"}}},
        ],
        "tool_choice": {
            "type": "allowed_tools",
            "allowed_tools": {"mode": "required", "tools": [{"type": "custom", "name": "sh"}]},
        },
    },
    "legacy functions and function messages": {
        "model": "gpt-3.5-turbo-0613",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "function_call": {"name": "get_current_weather", "arguments": "{}"},
            },
            {"role": "function", "name": "get_current_weather", "content": "sunny"},
            # Required but nullable, so an explicit null survives the round trip.
            {"role": "function", "name": "get_current_weather", "content": None},
        ],
        "functions": [WEATHER_TOOL["function"]],
        "function_call": {"name": "get_current_weather"},
    },
    "prediction and web search": {
        "model": "gpt-4o-search-preview",
        "messages": [{"role": "user", "content": "Refactor"}],
        "prediction": {"type": "content", "content": "class User {}"},
        "web_search_options": {
            "search_context_size": "low",
            "user_location": {"type": "approximate", "approximate": {"country": "GB"}},
        },
    },
}


def _round_trip(raw: dict[str, Any]) -> Any:
    request = msgspec.convert(raw, ChatCompletionRequest)
    return json.loads(msgspec.json.encode(request))


@pytest.mark.parametrize("raw", DOCUMENTED.values(), ids=DOCUMENTED.keys())
def test_documented_request_round_trips(raw: dict[str, Any]) -> None:
    assert _round_trip(raw) == raw


def test_decoded_request_is_typed() -> None:
    tool_turn = msgspec.convert(
        DOCUMENTED["assistant tool_calls then tool message"], ChatCompletionRequest
    )
    assistant, tool = tool_turn.messages[1], tool_turn.messages[2]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.content is None
    assert assistant.tool_calls is not None
    call = assistant.tool_calls[0]
    assert isinstance(call, FunctionToolCall)
    assert call.function.arguments == '{"location": "Boston, MA"}'
    assert isinstance(tool, ToolMessage)
    assert tool.tool_call_id == "call_abc123"

    image = msgspec.convert(DOCUMENTED["multi-part with image_url"], ChatCompletionRequest)
    user = image.messages[0]
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    text, picture = user.content
    assert isinstance(text, TextPart)
    assert isinstance(picture, ImageUrlPart)
    assert picture.image_url.detail == "high"

    structured = msgspec.convert(DOCUMENTED["json_schema response_format"], ChatCompletionRequest)
    assert isinstance(structured.response_format, JsonSchemaResponseFormat)
    assert structured.response_format.json_schema.schema is not None


def test_defaults_are_none_except_stream() -> None:
    request = msgspec.convert(DOCUMENTED["plain chat"], ChatCompletionRequest)
    assert request.stream is False
    assert request.stream_options is None
    assert request.max_tokens is None
    assert request.temperature is None
    assert request.tools is None


def test_explicit_defaults_are_dropped_on_re_encoding() -> None:
    # omit_defaults cannot tell "sent the default" from "did not send": this is why the
    # gateway forwards the raw dict rather than a re-encoding.
    raw = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "refusal": None},
        ],
        "stream": False,
        "temperature": None,
        "stream_options": {"include_usage": False},
        "tools": [],
    }
    # `tools: []` is not the default (None is), so it survives; llama.cpp and vLLM accept it.
    assert _round_trip(raw) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}],
        "stream_options": {},
        "tools": [],
    }


def test_unknown_fields_are_tolerated() -> None:
    raw = {
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "s", "cache_control": {"type": "ephemeral"}},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi", "prompt_cache_breakpoint": {"mode": "explicit"}},
                    {"type": "image_url", "image_url": {"url": "data:,", "uuid": "x"}},
                ],
                "x_trace": [1, 2],
            },
        ],
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "chat_template_kwargs": {"enable_thinking": False},
        "tools": [{"type": "function", "function": {"name": "f", "x-extra": True}, "extra": 1}],
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    request = msgspec.convert(raw, ChatCompletionRequest)
    assert request.model == "smollm2"
    assert request.stream_options is not None
    assert request.stream_options.include_usage is True
    # Unknown keys are not kept: forward the raw dict to keep them.
    assert "top_k" not in json.loads(msgspec.json.encode(request))
