"""`needs_of` and `unmet` as tables: what a request needs, and the 400 of a model lacking it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tiergate_gateway.capabilities import TEXT_ONLY, Capabilities, Needs, needs_of, unmet
from tiergate_proto.openai import ChatCompletionRequest

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}}
FILE = {"type": "file", "file": {"file_id": "file-1"}}
TOOLS = [{"type": "function", "function": {"name": "f"}}]


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}


@pytest.mark.parametrize(
    ("fields", "needs"),
    [
        ({}, Needs()),
        ({"messages": [user()]}, Needs()),
        ({"messages": [user(IMAGE)]}, Needs(image="messages[0].content[1]")),
        (
            {"messages": [user(), user(AUDIO, IMAGE, IMAGE)]},
            Needs(image="messages[1].content[2]", audio="messages[1].content[1]"),
        ),
        ({"messages": [user(FILE)]}, Needs(file="messages[0].content[1]")),
        ({"tools": TOOLS, "tool_choice": "auto"}, Needs()),
        ({"tools": TOOLS, "tool_choice": "none"}, Needs()),
        ({"tools": TOOLS, "tool_choice": "required"}, Needs(tool_call="tool_choice")),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}},
            Needs(tool_call="tool_choice"),
        ),
        (
            {
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "auto", "tools": []},
                }
            },
            Needs(),
        ),
        (
            {
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "required", "tools": []},
                }
            },
            Needs(tool_call="tool_choice"),
        ),
        (
            {"functions": [{"name": "f"}], "function_call": {"name": "f"}},
            Needs(tool_call="function_call"),
        ),
        ({"functions": [{"name": "f"}], "function_call": "auto"}, Needs()),
    ],
)
def test_needs_of(fields: dict[str, Any], needs: Needs) -> None:
    assert needs_of(request(**fields)) == needs


@pytest.mark.parametrize(
    ("needs", "caps", "param", "code"),
    [
        (Needs(), TEXT_ONLY, None, None),
        (Needs(image="p"), TEXT_ONLY, "p", "unsupported_content"),
        (Needs(image="p"), Capabilities(vision=True), None, None),
        (Needs(audio="a"), Capabilities(vision=True), "a", "unsupported_content"),
        (Needs(audio="a"), Capabilities(audio=True), None, None),
        (Needs(file="f"), Capabilities(vision=True, audio=True), "f", "unsupported_content"),
        (Needs(tool_call="tool_choice"), TEXT_ONLY, None, None),
        (
            Needs(tool_call="tool_choice"),
            Capabilities(tools=False),
            "tool_choice",
            "unsupported_value",
        ),
        # The first unmet need names the error.
        (Needs(image="i", tool_call="t"), Capabilities(tools=False), "i", "unsupported_content"),
    ],
)
def test_unmet(needs: Needs, caps: Capabilities, param: str | None, code: str | None) -> None:
    error = unmet(needs, caps, "m")
    if param is None:
        assert error is None
    else:
        assert error is not None
        assert (error.status, error.param, error.code) == (400, param, code)
