"""ChatCompletionRequest validation: each bad request fails with the path of the mistake."""

from typing import Any

import msgspec
import pytest

from tiergate_proto.openai import ChatCompletionRequest

MESSAGE = {"role": "user", "content": "hi"}

# (id, body, text the ValidationError must contain)
HOSTILE: list[tuple[str, Any, str]] = [
    ("missing model", {"messages": [MESSAGE]}, "missing required field `model`"),
    ("empty model", {"model": "", "messages": [MESSAGE]}, "`$.model`"),
    ("model not str", {"model": 7, "messages": [MESSAGE]}, "`$.model`"),
    ("missing messages", {"model": "m"}, "missing required field `messages`"),
    ("messages not a list", {"model": "m", "messages": "hi"}, "`$.messages`"),
    ("messages empty", {"model": "m", "messages": []}, "length >= 1 - at `$.messages`"),
    ("message not an object", {"model": "m", "messages": ["hi"]}, "`$.messages[0]`"),
    ("unknown role", {"model": "m", "messages": [{"role": "bot"}]}, "`$.messages[0].role`"),
    ("missing role", {"model": "m", "messages": [{"content": "x"}]}, "`$.messages[0]`"),
    (
        "user content missing",
        {"model": "m", "messages": [MESSAGE, {"role": "user"}]},
        "`content` - at `$.messages[1]`",
    ),
    (
        "user content null",
        {"model": "m", "messages": [{"role": "user", "content": None}]},
        "`$.messages[0].content`",
    ),
    (
        "content part with unknown type",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
        "`$.messages[0].content[0].type`",
    ),
    (
        "image in a system message",
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
            ],
        },
        "`$.messages[0].content[0].type`",
    ),
    (
        "image_url as a bare string",
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}],
        },
        "`$.messages[0].content[0].image_url`",
    ),
    (
        "tool message without tool_call_id",
        {"model": "m", "messages": [{"role": "tool", "content": "r"}]},
        "`tool_call_id` - at `$.messages[0]`",
    ),
    (
        "tool call arguments as an object",
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}
                    ],
                }
            ],
        },
        "`$.messages[0].tool_calls[0].function.arguments`",
    ),
    (
        "temperature a string",
        {"model": "m", "messages": [MESSAGE], "temperature": "hot"},
        "`$.temperature`",
    ),
    (
        "temperature above 2",
        {"model": "m", "messages": [MESSAGE], "temperature": 2.5},
        "`$.temperature`",
    ),
    ("top_p above 1", {"model": "m", "messages": [MESSAGE], "top_p": 1.01}, "`$.top_p`"),
    ("max_tokens -1", {"model": "m", "messages": [MESSAGE], "max_tokens": -1}, "`$.max_tokens`"),
    (
        "max_tokens float",
        {"model": "m", "messages": [MESSAGE], "max_tokens": 1.5},
        "`$.max_tokens`",
    ),
    (
        "max_tokens bool",
        {"model": "m", "messages": [MESSAGE], "max_tokens": True},
        "`$.max_tokens`",
    ),
    (
        "max_completion_tokens 0",
        {"model": "m", "messages": [MESSAGE], "max_completion_tokens": 0},
        "`$.max_completion_tokens`",
    ),
    ("n 0", {"model": "m", "messages": [MESSAGE], "n": 0}, "`$.n`"),
    ("n 129", {"model": "m", "messages": [MESSAGE], "n": 129}, "`$.n`"),
    ("stream a string", {"model": "m", "messages": [MESSAGE], "stream": "yes"}, "`$.stream`"),
    ("five stops", {"model": "m", "messages": [MESSAGE], "stop": list("abcde")}, "`$.stop`"),
    (
        "presence_penalty -3",
        {"model": "m", "messages": [MESSAGE], "presence_penalty": -3},
        "`$.presence_penalty`",
    ),
    (
        "logit_bias out of range",
        {"model": "m", "messages": [MESSAGE], "logit_bias": {"1": 101}},
        "`$.logit_bias[...]`",
    ),
    (
        "top_logprobs 21",
        {"model": "m", "messages": [MESSAGE], "top_logprobs": 21},
        "`$.top_logprobs`",
    ),
    (
        "unknown tool_choice mode",
        {"model": "m", "messages": [MESSAGE], "tool_choice": "sometimes"},
        "`$.tool_choice`",
    ),
    (
        "tool_choice object without function",
        {"model": "m", "messages": [MESSAGE], "tool_choice": {"type": "function"}},
        "`$.tool_choice`",
    ),
    (
        "tool of unknown type",
        {"model": "m", "messages": [MESSAGE], "tools": [{"type": "code_interpreter"}]},
        "`$.tools[0].type`",
    ),
    (
        "tool without function",
        {"model": "m", "messages": [MESSAGE], "tools": [{"type": "function"}]},
        "`$.tools[0]`",
    ),
    (
        "response_format of unknown type",
        {"model": "m", "messages": [MESSAGE], "response_format": {"type": "xml"}},
        "`$.response_format.type`",
    ),
    (
        "json_schema without name",
        {
            "model": "m",
            "messages": [MESSAGE],
            "response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
        },
        "`$.response_format.json_schema`",
    ),
    (
        "metadata value too long",
        {"model": "m", "messages": [MESSAGE], "metadata": {"k": "v" * 513}},
        "`$.metadata[...]`",
    ),
    (
        "unknown modality",
        {"model": "m", "messages": [MESSAGE], "modalities": ["video"]},
        "`$.modalities[0]`",
    ),
    (
        "stream_options not an object",
        {"model": "m", "messages": [MESSAGE], "stream_options": True},
        "`$.stream_options`",
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(r, e) for _, r, e in HOSTILE], ids=[i for i, _, _ in HOSTILE]
)
def test_hostile_request_fails_with_path(raw: Any, expected: str) -> None:
    with pytest.raises(msgspec.ValidationError) as excinfo:
        msgspec.convert(raw, ChatCompletionRequest)
    assert expected in str(excinfo.value)


def test_body_not_an_object() -> None:
    with pytest.raises(msgspec.ValidationError, match="Expected `object`, got `array`"):
        msgspec.convert([], ChatCompletionRequest)
