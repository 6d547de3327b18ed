"""Reading a chat completion request: content type, size, JSON, validation — or a clear 4xx.

The body is decoded once into a plain dict (what we forward, so fields we do not know — engine
extras such as `top_k` — reach the engine unchanged) and validated against the proto Struct
(what we rely on). Errors name the field in `param`, as OpenAI does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request

from tiergate_proto.openai import ChatCompletionRequest
from tiergate_runtime.body import read_json_object, validation_error

__all__ = ["ParsedChat", "parse_chat_request"]


@dataclass(slots=True)
class ParsedChat:
    """A validated request and the raw object to forward."""

    request: ChatCompletionRequest
    raw: dict[str, Any]


async def parse_chat_request(request: Request[Any, Any, Any], limit: int) -> ParsedChat:
    """Read and validate the body; raise InvalidRequest (400), 413 or 415 on bad input."""
    raw = await read_json_object(request, limit)
    try:
        parsed = msgspec.convert(raw, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    return ParsedChat(request=parsed, raw=raw)
