"""Reading a Responses request: untyped input items tagged, item types checked, validation → 400.

OpenAI lets an input message leave out `"type": "message"` (`{"role": "user", "content":
"hi"}`) and an item reference leave out `"type": "item_reference"`; the proto Structs are
tagged unions, so the reader adds the tag first, on a copy (the caller's dict is not
changed). An item of a type the gateway cannot run (`web_search_call`, `computer_call_output`,
`mcp_call`, ...) is refused here, naming the type and its place (`param: input[2].type`),
before msgspec would refuse it with a bare "Invalid value".

Fields the proto Struct does not know are left to `extra_fields`: engine extras a client sends
on purpose (`top_k`, `repeat_penalty`), which `to_chat` can pass on to the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from tiergate_proto.openai import ResponseCreateRequest
from tiergate_runtime.body import validation_error
from tiergate_runtime.errors import InvalidRequest

__all__ = ["SUPPORTED_ITEM_TYPES", "extra_fields", "parse_response_request"]

SUPPORTED_ITEM_TYPES: tuple[str, ...] = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
)
"""Input item types that parse; `item_reference` then gets a 400 of its own from `to_chat`."""

_KNOWN_FIELDS = frozenset(ResponseCreateRequest.__struct_fields__)

# Responses fields that have no meaning for an engine, whether we model them or not: never
# passed on as extras (a newer client may send Responses fields we do not know yet).
_NOT_EXTRAS = frozenset({"object", "moderation", "prompt_cache_options", "partial_images"})


def _tagged(index: int, item: Any) -> Any:
    """`item` with its `type` filled in where OpenAI allows it to be left out."""
    if not isinstance(item, dict):
        return item  # msgspec names the wrong type
    kind = item.get("type")
    if kind is None:
        if "role" in item:
            return {**item, "type": "message"}
        if "id" in item and set(item) <= {"id", "type"}:
            return {**item, "type": "item_reference"}
        return item  # msgspec: missing `type`
    if isinstance(kind, str) and kind not in SUPPORTED_ITEM_TYPES:
        raise InvalidRequest(
            f"Input item type '{kind}' (input[{index}]) is not supported: this gateway serves "
            "models through Chat Completions and accepts only "
            + ", ".join(f"'{name}'" for name in SUPPORTED_ITEM_TYPES)
            + " items.",
            param=f"input[{index}].type",
            code="unsupported_value",
        )
    return item


def parse_response_request(raw: Mapping[str, Any]) -> ResponseCreateRequest:
    """The validated request; InvalidRequest (400, `param` naming the field) otherwise.

    `raw` is the decoded JSON object (`tiergate_runtime.body.read_json_object`); it is not
    modified.
    """
    body = dict(raw)
    items = body.get("input")
    if isinstance(items, list):
        body["input"] = [_tagged(index, item) for index, item in enumerate(items)]
    try:
        return msgspec.convert(body, ResponseCreateRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def extra_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level fields of `raw` that `ResponseCreateRequest` does not model.

    These are what a client meant for the engine (`top_k`, `min_p`, ...); `to_chat(...,
    extras=...)` adds them to the chat body under the fields it sets itself.
    """
    return {
        name: value
        for name, value in raw.items()
        if name not in _KNOWN_FIELDS and name not in _NOT_EXTRAS
    }
