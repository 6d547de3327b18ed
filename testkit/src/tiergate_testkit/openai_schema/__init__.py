"""Check answers against OpenAI's published JSON Schemas: completions, chunks, embeddings, errors.

`openai.json` holds the response objects of OpenAI's API reference as JSON Schema (written
from OpenAI's OpenAPI document, see its `$comment`). Each `validate_*` takes a body (bytes,
str or an already parsed value), raises `SchemaViolation` naming every violation, and returns
the parsed value, so a test can go on asserting on it. `validate_sse` checks a whole event
stream: every `data:` event is a chunk (chat, or text with `chunk=validate_text_completion_chunk`)
or an error envelope, and the last one is `[DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator, ValidationError

__all__ = [
    "SCHEMA_PATH",
    "SchemaViolation",
    "sse_payloads",
    "validate",
    "validate_chat_completion",
    "validate_chat_completion_chunk",
    "validate_embeddings",
    "validate_error",
    "validate_model",
    "validate_model_list",
    "validate_sse",
    "validate_text_completion",
    "validate_text_completion_chunk",
]

SCHEMA_PATH = Path(__file__).with_name("openai.json")
"""The schema document; its `$defs` are named as in OpenAI's OpenAPI components."""

Body = bytes | str | Mapping[str, Any]


class SchemaViolation(AssertionError):
    """A body does not match OpenAI's schema; the message lists each violation and its path."""


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(document)
    return document


@cache
def _validator(name: str) -> Draft202012Validator:
    document = _document()
    if name not in document["$defs"]:
        raise KeyError(f"no schema named {name!r} in {SCHEMA_PATH.name}")
    return Draft202012Validator({**document, "$ref": f"#/$defs/{name}"})


def _parse(body: Body) -> Any:
    if isinstance(body, bytes | str):
        return json.loads(body)
    return body


def validate(name: str, body: Body) -> Any:
    """Check `body` against the schema `name` (e.g. `CreateChatCompletionResponse`)."""
    value = _parse(body)
    errors = sorted(_validator(name).iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [_describe(e) for e in errors]
        shown = json.dumps(value)[:2000]
        raise SchemaViolation(f"not a valid {name}:\n" + "\n".join(lines) + f"\nbody: {shown}")
    return value


def _describe(error: ValidationError) -> str:
    line = f"  at {error.json_path}: {error.message}"
    if error.context:  # anyOf/oneOf: why each alternative failed
        reasons = sorted({f"{inner.message} at {inner.json_path}" for inner in error.context})
        line += " (" + "; ".join(reasons) + ")"
    return line


def validate_chat_completion(body: Body) -> Any:
    """A non-streaming answer (`CreateChatCompletionResponse`)."""
    return validate("CreateChatCompletionResponse", body)


def validate_chat_completion_chunk(body: Body) -> Any:
    """One stream chunk (`CreateChatCompletionStreamResponse`)."""
    return validate("CreateChatCompletionStreamResponse", body)


def validate_text_completion(body: Body) -> Any:
    """A non-streaming legacy completion (`CreateCompletionResponse`)."""
    return validate("CreateCompletionResponse", body)


def validate_text_completion_chunk(body: Body) -> Any:
    """One event of a legacy completion stream (`CreateCompletionStreamResponse`).

    Not OpenAI's name: the reference's `CreateCompletionResponse` with `finish_reason` also
    `null`, as OpenAI streams it (see the def's `$comment`).
    """
    return validate("CreateCompletionStreamResponse", body)


def validate_embeddings(body: Body, encoding_format: Literal["float", "base64"] = "float") -> Any:
    """An embeddings answer (`CreateEmbeddingResponse`; its base64 variant for `"base64"`)."""
    suffix = "Base64" if encoding_format == "base64" else ""
    return validate(f"CreateEmbeddingResponse{suffix}", body)


def validate_model(body: Body) -> Any:
    """`GET /v1/models/{id}` (`Model`)."""
    return validate("Model", body)


def validate_model_list(body: Body) -> Any:
    """`GET /v1/models` (`ListModelsResponse`)."""
    return validate("ListModelsResponse", body)


def validate_error(body: Body) -> Any:
    """An error envelope (`ErrorResponse`), as a body or as a stream's error event."""
    return validate("ErrorResponse", body)


def sse_payloads(stream: bytes | str) -> list[str]:
    """The `data` of each event of an SSE body, as a spec-following client reassembles it.

    Events end at a blank line; their `data:` lines are joined with newlines; comments and
    other fields are skipped, as are events without data.
    """
    text = stream.decode() if isinstance(stream, bytes) else stream
    text = text.replace("\r\n", "\n")
    payloads = []
    for event in text.split("\n\n"):
        data = [
            line[5:].removeprefix(" ")
            for line in event.split("\n")
            if line.startswith("data:") or line == "data"
        ]
        if data:
            payloads.append("\n".join(data))
    return payloads


def validate_sse(
    stream: bytes | str, chunk: Callable[[Body], Any] = validate_chat_completion_chunk
) -> list[Any]:
    """Check a whole `text/event-stream` answer; return its parsed events (`[DONE]` left out).

    Every event must be JSON — a chunk (`chunk` checks it: chat by default), or an error
    envelope (`{"error": ...}`) — and the stream must end with `data: [DONE]` and have
    nothing after it.
    """
    payloads = sse_payloads(stream)
    if not payloads or payloads[-1] != "[DONE]":
        raise SchemaViolation(f"the stream does not end with [DONE]: {payloads[-3:]}")
    if "[DONE]" in payloads[:-1]:
        raise SchemaViolation("events after [DONE]")
    parsed = []
    for payload in payloads[:-1]:
        try:
            value = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise SchemaViolation(f"an event is not JSON ({exc}): {payload[:500]!r}") from None
        if isinstance(value, dict) and "error" in value:
            validate_error(value)
        else:
            chunk(value)
        parsed.append(value)
    return parsed
