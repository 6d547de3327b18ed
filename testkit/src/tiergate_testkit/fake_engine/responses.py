"""Response bodies in OpenAI's wire shapes: completions, chunks, embeddings, models, errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "MALFORMED_BODY",
    "MALFORMED_EVENT",
    "SSE_DONE",
    "Usage",
    "completion",
    "content_chunk",
    "embedding_list",
    "error_envelope",
    "final_chunk",
    "json_body",
    "models_list",
    "role_chunk",
    "sse_event",
    "text_chunk",
    "text_completion",
    "text_final_chunk",
    "text_usage_chunk",
    "tool_arguments_chunk",
    "tool_call_start_chunk",
    "usage_chunk",
    "with_fields",
]

FinishReason = Literal["stop", "length", "tool_calls"]

SSE_DONE = b"data: [DONE]\n\n"
# Deliberately not JSON: a client (or our gateway) must fail cleanly on these.
MALFORMED_BODY = b'<html>not json {"choices": [</html>'
MALFORMED_EVENT = b'data: {"id": "chatcmpl-fake", "choices": [{"delta": <garbage>\n\n'

_CHUNK: Literal["chat.completion.chunk"] = "chat.completion.chunk"

_encoder = msgspec.json.Encoder()


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


class _Function(msgspec.Struct):
    name: str
    arguments: str


class _ToolCall(msgspec.Struct):
    id: str
    function: _Function
    type: str = "function"


class _Message(msgspec.Struct):
    role: str
    content: str | None
    refusal: None = None
    tool_calls: list[_ToolCall] | UnsetType = UNSET  # UNSET: left out


class _Choice(msgspec.Struct):
    index: int
    message: _Message
    finish_reason: FinishReason
    logprobs: None = None


class _ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[_Choice]
    usage: Usage
    system_fingerprint: None = None


class _FunctionDelta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct, omit_defaults=True):
    index: int
    function: _FunctionDelta
    id: str | None = None
    type: str | None = None


class _Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _ChunkChoice(msgspec.Struct):
    index: int
    delta: _Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class _ChatCompletionChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    object: Literal["chat.completion.chunk"]  # no default: omit_defaults would drop it
    created: int
    model: str
    choices: list[_ChunkChoice]
    # Only the usage-only chunk carries usage; omitted elsewhere.
    usage: Usage | None = None


class _TextChoice(msgspec.Struct):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: FinishReason | None = None


class _TextCompletion(msgspec.Struct, kw_only=True, omit_defaults=True):
    # OpenAI streams the same object as it answers whole (legacy completions).
    id: str
    object: Literal["text_completion"]  # no default: omit_defaults would drop it
    created: int
    model: str
    choices: list[_TextChoice]
    usage: Usage | None = None


class _Embedding(msgspec.Struct):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class _EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[_Embedding]
    model: str
    usage: _EmbeddingUsage


class _Model(msgspec.Struct, kw_only=True):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "fake"


class _ModelList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[_Model]


class _ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail


def json_body(value: object) -> bytes:
    """Encode any msgspec-encodable value as JSON."""
    return _encoder.encode(value)


def with_fields(body: bytes, fields: dict[str, object]) -> bytes:
    """An encoded JSON object with `fields` added at its end (none: `body` itself)."""
    if not fields:
        return body
    return body[:-1] + b"," + json_body(fields)[1:]


def sse_event(payload: bytes) -> bytes:
    """Frame one server-sent event the way OpenAI does: `data: <json>\\n\\n`."""
    return b"data: " + payload + b"\n\n"


def error_envelope(status: int, message: str, code: str | None = None) -> bytes:
    """OpenAI's error envelope; `type` follows OpenAI's split of client and server errors."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json_body(_ErrorEnvelope(_ErrorDetail(message=message, type=kind, code=code)))


def models_list(models: Sequence[str], created: int) -> bytes:
    """`GET /v1/models`: the configured model ids in OpenAI's list shape."""
    return json_body(_ModelList(data=[_Model(id=m, created=created) for m in models]))


def completion(
    *,
    id: str,
    model: str,
    created: int,
    text: str,
    finish_reason: FinishReason,
    usage: Usage,
    tool_call: tuple[str, str] | None = None,
) -> bytes:
    """A non-streaming `chat.completion` with one assistant choice.

    `tool_call` (id, function name): the message calls that function with `text` as its
    arguments and has no content.
    """
    if tool_call is None:
        message = _Message("assistant", text)
    else:
        call = _ToolCall(id=tool_call[0], function=_Function(name=tool_call[1], arguments=text))
        message = _Message("assistant", None, tool_calls=[call])
    choice = _Choice(0, message, finish_reason)
    body = _ChatCompletion(id=id, created=created, model=model, choices=[choice], usage=usage)
    return json_body(body)


def _chunk(id: str, model: str, created: int, choice: _ChunkChoice) -> bytes:
    return json_body(
        _ChatCompletionChunk(id=id, object=_CHUNK, created=created, model=model, choices=[choice])
    )


def role_chunk(id: str, model: str, created: int) -> bytes:
    """The first stream chunk: `delta.role = "assistant"` and empty content."""
    return _chunk(id, model, created, _ChunkChoice(0, _Delta(role="assistant", content="")))


def content_chunk(id: str, model: str, created: int, text: str) -> bytes:
    """One content chunk (one "token")."""
    return _chunk(id, model, created, _ChunkChoice(0, _Delta(content=text)))


def tool_call_start_chunk(id: str, model: str, created: int, call_id: str, name: str) -> bytes:
    """The first delta of a function call: index 0, its id, type, name and empty arguments."""
    call = _ToolCallDelta(
        index=0, id=call_id, type="function", function=_FunctionDelta(name=name, arguments="")
    )
    return _chunk(id, model, created, _ChunkChoice(0, _Delta(tool_calls=[call])))


def tool_arguments_chunk(id: str, model: str, created: int, piece: str) -> bytes:
    """A later delta of call 0: the next piece of its arguments."""
    call = _ToolCallDelta(index=0, function=_FunctionDelta(arguments=piece))
    return _chunk(id, model, created, _ChunkChoice(0, _Delta(tool_calls=[call])))


def final_chunk(id: str, model: str, created: int, finish_reason: FinishReason) -> bytes:
    """The chunk that closes the choice: empty delta and a `finish_reason`."""
    return _chunk(id, model, created, _ChunkChoice(0, _Delta(), finish_reason))


def usage_chunk(id: str, model: str, created: int, usage: Usage) -> bytes:
    """The usage-only chunk sent when `stream_options.include_usage`: `choices` is empty."""
    body = _ChatCompletionChunk(
        id=id, object=_CHUNK, created=created, model=model, choices=[], usage=usage
    )
    return json_body(body)


def _text(
    id: str, model: str, created: int, choices: list[_TextChoice], usage: Usage | None = None
) -> bytes:
    body = _TextCompletion(
        id=id, object="text_completion", created=created, model=model, choices=choices, usage=usage
    )
    return json_body(body)


def text_completion(
    *, id: str, model: str, created: int, text: str, finish_reason: FinishReason, usage: Usage
) -> bytes:
    """A non-streaming legacy `text_completion` with one choice."""
    return _text(id, model, created, [_TextChoice(text, finish_reason=finish_reason)], usage)


def text_chunk(id: str, model: str, created: int, text: str) -> bytes:
    """One legacy stream chunk (one "token"); `finish_reason` null."""
    return _text(id, model, created, [_TextChoice(text)])


def text_final_chunk(id: str, model: str, created: int, finish_reason: FinishReason) -> bytes:
    """The legacy chunk that closes the choice: empty text and a `finish_reason`."""
    return _text(id, model, created, [_TextChoice("", finish_reason=finish_reason)])


def text_usage_chunk(id: str, model: str, created: int, usage: Usage) -> bytes:
    """The legacy usage-only chunk (`stream_options.include_usage`): `choices` is empty."""
    return _text(id, model, created, [], usage)


def embedding_list(model: str, vectors: Sequence[list[float] | str], prompt_tokens: int) -> bytes:
    """`POST /v1/embeddings`: one embedding per input, in order (a base64 string or floats)."""
    data = [_Embedding(index, vector) for index, vector in enumerate(vectors)]
    usage = _EmbeddingUsage(prompt_tokens, prompt_tokens)
    return json_body(_EmbeddingList(data=data, model=model, usage=usage))
