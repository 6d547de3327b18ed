"""Reading a chat completion request: content type, size, JSON, validation — or a clear 4xx.

The body is decoded once into a plain dict (what we forward, so fields we do not know — engine
extras such as `top_k` — reach the engine unchanged) and validated against the proto Struct
(what we rely on). Errors name the field in `param`, as OpenAI does.

Beyond the Struct, the rules OpenAI applies across fields are checked here, so that a request
that can never succeed gets a 400 instead of reaching an engine that fails on it with a 5xx
(retried, and counted against the backend's breaker: issue 10):

- a message carries only its own role's fields (`tool_call_id` belongs to `tool` messages,
  `tool_calls` to `assistant` ones): llama.cpp reads them on any role and fails on `null`;
- an assistant message has `content`, `tool_calls` or `function_call`;
- `stream_options` only with `stream: true`.

The forwarded messages lose their `null`-valued optional fields (`"name": null`): OpenAI treats
them as absent, engines do not all do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request

from tiergate_gateway.capabilities import Needs, needs_of
from tiergate_proto.openai import ChatCompletionRequest
from tiergate_proto.openai.messages import (
    AssistantMessage,
    DeveloperMessage,
    FunctionMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from tiergate_runtime.body import read_sized_json_object, validation_error
from tiergate_runtime.errors import InvalidRequest

__all__ = ["ParsedChat", "check_request", "parse_chat_request"]

_ROLE_FIELDS: dict[str, frozenset[str]] = {
    tp.__struct_config__.tag: frozenset(tp.__struct_fields__)  # type: ignore[misc]
    for tp in (
        SystemMessage,
        DeveloperMessage,
        UserMessage,
        AssistantMessage,
        ToolMessage,
        FunctionMessage,
    )
}
_MESSAGE_FIELDS = frozenset().union(*_ROLE_FIELDS.values())
"""Every field some role has: on another role it is a mistake, not an engine extra."""


@dataclass(slots=True)
class ParsedChat:
    """A validated request, the raw object to forward, and what it needs from a model."""

    request: ChatCompletionRequest
    raw: dict[str, Any]
    needs: Needs
    size: int = 0
    """Bytes of the body."""


def _check_message(index: int, message: dict[str, Any]) -> None:
    role = message["role"]
    allowed = _ROLE_FIELDS[role]
    for field in message:
        if field in _MESSAGE_FIELDS and field not in allowed:
            raise InvalidRequest(
                f"Unexpected parameter '{field}' in a '{role}' message "
                f"(messages[{index}]): only {role} messages' own fields are allowed.",
                param=f"messages[{index}].{field}",
                code="unknown_parameter",
            )
    for field in [f for f, value in message.items() if value is None and f != "content"]:
        del message[field]


def check_request(request: ChatCompletionRequest, raw: dict[str, Any]) -> None:
    """The cross-field rules of the module docstring; strips `null` message fields in `raw`.

    `raw` must be the dict `request` was converted from (its messages are dicts with a role).
    """
    for index, message in enumerate(request.messages):
        _check_message(index, raw["messages"][index])
        if (
            isinstance(message, AssistantMessage)
            and message.content is None
            and not message.tool_calls
            and message.function_call is None
            and message.audio is None
        ):
            raise InvalidRequest(
                f"An assistant message needs 'content' or 'tool_calls' (messages[{index}]).",
                param=f"messages[{index}].content",
                code="missing_required_parameter",
            )
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )


async def parse_chat_request(request: Request[Any, Any, Any], limit: int) -> ParsedChat:
    """Read and validate the body; raise InvalidRequest (400), 413 or 415 on bad input."""
    raw, size = await read_sized_json_object(request, limit)
    try:
        parsed = msgspec.convert(raw, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    check_request(parsed, raw)
    return ParsedChat(request=parsed, raw=raw, needs=needs_of(parsed), size=size)
