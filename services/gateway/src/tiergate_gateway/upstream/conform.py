"""Engine answers made to match OpenAI's schema: bodies re-encoded, stream chunks checked.

A non-streaming answer is decoded into the proto `ChatCompletion` and encoded again
(`conform_completion`): every key OpenAI requires is there (`message.refusal` and
`choices[].logprobs` as `null` when the engine left them out), `finish_reason` is one of
OpenAI's values, `model` is the public alias, and what engines add (llama.cpp's `timings`,
vLLM's `prompt_logprobs`, `kv_transfer_params`, `stop_reason`, `"annotations": null`, ...) is
dropped, except the top-level fields a backend keeps (`keep_extras`). `reasoning_content` (in
a message or a delta) is kept: it is not OpenAI's, but reasoning clients read it there, and
OpenAI's schema allows additional properties.

A stream chunk is checked by one strict typed decode (`check_chunk`: OpenAI's chunk schema,
unknown fields forbidden, ~0.5 µs): a chunk that passes is relayed as the engine wrote it.
One that does not is decoded leniently and encoded again (`repair_chunk`); one that cannot be
decoded leniently either is malformed, and the relay ends the stream (issue 10).
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from tiergate_gateway.content_filter import WordFilter, cut_text
from tiergate_gateway.content_filter.relay import FILTER_FIELD
from tiergate_gateway.guard import GuardSettings, Trip, check_answer
from tiergate_proto.openai import ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Usage
from tiergate_proto.openai.completion import (
    FINISH_REASONS,
    SERVICE_TIERS,
    FinishReason,
    ServiceTier,
    TokenCount,
)

__all__ = [
    "ANSWER_FIELDS",
    "StrictChunk",
    "check_chunk",
    "conform_completion",
    "conform_filtered",
    "conform_guarded",
    "decode_chunk",
    "drop_null_fingerprint",
    "repair_chunk",
    "with_extras",
]

ANSWER_FIELDS = frozenset(
    {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
        "service_tier",
        "tiergate_sources",
        "tiergate_guard",
        "tiergate_filter",
    }
)
"""Top-level keys our answers may carry themselves; `keep_extras` never duplicates them."""

GUARD_FIELD = b',"tiergate_guard":"repetition"'
"""Added to an answer (or a stream's last chunk) the runaway guard cut."""

_encoder = msgspec.json.Encoder()
_completion_decoder = msgspec.json.Decoder(ChatCompletion)
_chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


# --- non-streaming ----------------------------------------------------------------------------


def conform_completion(
    content: bytes, alias: str, keep_extras: frozenset[str] = frozenset()
) -> tuple[bytes, Usage | None]:
    """The engine's `chat.completion` as we send it, and its usage.

    Raises msgspec.DecodeError when `content` is not a chat completion (not JSON, a required
    field missing or of the wrong type): the engine's answer cannot be relayed.
    """
    body, usage, _ = conform_guarded(content, alias, keep_extras)
    return body, usage


def conform_guarded(
    content: bytes,
    alias: str,
    keep_extras: frozenset[str] = frozenset(),
    guard: GuardSettings | None = None,
) -> tuple[bytes, Usage | None, Trip | None]:
    """`conform_completion`, with the runaway guard over each choice's text (`guard/`).

    A choice whose text degenerates is cut where the guard became certain, as a stream would
    have been, with `finish_reason: "length"`; the answer then carries
    `"tiergate_guard": "repetition"`. Returns the first choice's trip (None: not cut).
    """
    body, usage, trip, _ = conform_filtered(content, alias, keep_extras, guard)
    return body, usage, trip


def conform_filtered(
    content: bytes,
    alias: str,
    keep_extras: frozenset[str] = frozenset(),
    guard: GuardSettings | None = None,
    words: WordFilter | None = None,
) -> tuple[bytes, Usage | None, Trip | None, bool]:
    """`conform_guarded`, with the content filter (`words`) first over each choice's text.

    A choice whose text holds a flagged word is cut before it, with `finish_reason:
    "content_filter"` (the guard does not read it then); the answer carries
    `"tiergate_filter": "profanity"`. The last value says whether a choice was cut so.
    """
    completion = _completion_decoder.decode(content)
    tier = completion.service_tier
    choices = [_conform_choice(choice) for choice in completion.choices]
    trip = None
    filtered = False
    if words is not None:
        choices, filtered = _filtered(choices, words)
    if guard is not None and guard.enabled:
        choices, trip = _guarded(choices, guard)
    completion = msgspec.structs.replace(
        completion,
        model=alias,
        choices=choices,
        service_tier=tier if tier in SERVICE_TIERS else None,
    )
    body = _encoder.encode(completion)
    if keep_extras:
        body = with_extras(body, content, keep_extras)
    if trip is not None:
        body = body[:-1] + GUARD_FIELD + b"}"  # an encoded object ends with }
    if filtered:
        body = body[:-1] + FILTER_FIELD + b"}"
    return body, completion.usage, trip, filtered


def _filtered(choices: list[Choice], words: WordFilter) -> tuple[list[Choice], bool]:
    filtered = False
    out = []
    for choice in choices:
        text = choice.message.content
        cut = cut_text(words, text) if isinstance(text, str) and text else None
        if cut is None:
            out.append(choice)
            continue
        message = msgspec.structs.replace(choice.message, content=cut)
        out.append(msgspec.structs.replace(choice, message=message, finish_reason="content_filter"))
        filtered = True
    return out, filtered


def _guarded(choices: list[Choice], guard: GuardSettings) -> tuple[list[Choice], Trip | None]:
    first: Trip | None = None
    out = []
    for choice in choices:
        text = choice.message.content
        if choice.finish_reason == "content_filter":
            out.append(choice)  # the filter cut it first
            continue
        trip = check_answer(text, guard) if isinstance(text, str) and text else None
        if trip is None or not isinstance(text, str):
            out.append(choice)
            continue
        message = msgspec.structs.replace(choice.message, content=text[: trip.end])
        out.append(msgspec.structs.replace(choice, message=message, finish_reason="length"))
        first = first or trip
    return out, first


def _conform_choice(choice: Choice) -> Choice:
    if choice.finish_reason in FINISH_REASONS:
        return choice
    # Missing, or an engine's own value (vLLM's `abort`): strict clients reject anything
    # outside OpenAI's list. The answer is whole, so it stopped; say why if we can.
    message = choice.message
    reason: FinishReason = (
        "tool_calls" if message.tool_calls else "function_call" if message.function_call else "stop"
    )
    return msgspec.structs.replace(choice, finish_reason=reason)


def with_extras(body: bytes, source: bytes, keep: frozenset[str]) -> bytes:
    """`body` (an encoded JSON object) plus the top-level fields of `source` named in `keep`.

    The kept values are copied byte for byte; names our answers carry themselves are skipped.
    """
    fields = _fields_decoder.decode(source)
    parts = [
        b"," + _encoder.encode(name) + b":" + bytes(raw)
        for name, raw in fields.items()
        if name in keep and name not in ANSWER_FIELDS
    ]
    if not parts:
        return body
    return body[:-1] + b"".join(parts) + b"}"


# --- streaming: the strict check --------------------------------------------------------------
# OpenAI's CreateChatCompletionStreamResponse as msgspec types, every object closed (unknown
# fields forbidden) so that decoding succeeds exactly for chunks we may relay untouched.
# `reasoning_content` is admitted in a delta (see the module docstring). These types check;
# they are not a wire contract (that is `tiergate_proto.openai.ChatCompletionChunk`).

_Role = Literal["developer", "system", "user", "assistant", "tool"]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    pass


class _FunctionDelta(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class _ToolCallDelta(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: _FunctionDelta | UnsetType = UNSET


class _Delta(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    role: _Role | UnsetType = UNSET
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCallDelta] | UnsetType = UNSET
    function_call: _FunctionDelta | UnsetType = UNSET


class _TopLogprob(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    token: str
    logprob: float
    bytes: list[int] | None


class _TokenLogprob(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[_TopLogprob]


class _Logprobs(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    content: list[_TokenLogprob] | None
    refusal: list[_TokenLogprob] | None


class _Choice(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    index: int
    delta: _Delta
    finish_reason: FinishReason | None
    logprobs: _Logprobs | None = None


class _PromptDetails(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    audio_tokens: int | UnsetType = UNSET
    cached_tokens: int | UnsetType = UNSET
    text_tokens: int | UnsetType = UNSET
    image_tokens: int | UnsetType = UNSET
    cache_write_tokens: int | UnsetType = UNSET


class _CompletionDetails(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    accepted_prediction_tokens: int | UnsetType = UNSET
    audio_tokens: int | UnsetType = UNSET
    reasoning_tokens: int | UnsetType = UNSET
    text_tokens: int | UnsetType = UNSET
    rejected_prediction_tokens: int | UnsetType = UNSET


class _Usage(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    prompt_tokens_details: _PromptDetails | UnsetType = UNSET
    completion_tokens_details: _CompletionDetails | UnsetType = UNSET


class StrictChunk(_Strict, forbid_unknown_fields=True, kw_only=True, gc=False):
    """A chunk exactly as OpenAI's schema allows it (plus `reasoning_content` in deltas)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[_Choice]
    usage: _Usage | None = None
    system_fingerprint: str | UnsetType | None = UNSET
    """`null` is not OpenAI's, but OpenAI-style upstreams send it: see `drop_null_fingerprint`."""
    service_tier: ServiceTier | None = None
    obfuscation: str | UnsetType = UNSET

    def counted_usage(self) -> Usage | None:
        """`usage` as the proto type the accounting takes."""
        usage = self.usage
        if usage is None:
            return None
        return Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )


_strict_decoder = msgspec.json.Decoder(StrictChunk)


def check_chunk(payload: bytes) -> StrictChunk | None:
    """The chunk if it may be relayed as it is; None if it must go through `repair_chunk`."""
    try:
        return _strict_decoder.decode(payload)
    except msgspec.DecodeError:
        return None


_NULL_FINGERPRINT = b',"system_fingerprint":null'


def drop_null_fingerprint(payload: bytes) -> bytes | None:
    """A checked chunk's payload without its `"system_fingerprint":null`, or None.

    OpenAI's schema types `system_fingerprint` as a string (no null), yet OpenAI-style
    upstreams send `null` in every chunk; cutting the key out costs far less than
    `repair_chunk`. In a checked chunk the compact spelling can only be the top-level key
    (every nested object is closed); None when it is spelt otherwise (then repair).
    """
    fixed = payload.replace(_NULL_FINGERPRINT, b"", 1)
    return fixed if len(fixed) < len(payload) else None


def decode_chunk(payload: bytes) -> ChatCompletionChunk:
    """Decode a chunk leniently; raises msgspec.DecodeError when it is not a chunk at all."""
    return _chunk_decoder.decode(payload)


def repair_chunk(
    chunk: ChatCompletionChunk,
    alias: str,
    source: bytes = b"",
    keep_extras: frozenset[str] = frozenset(),
) -> bytes:
    """`chunk` encoded as OpenAI's schema wants it, under `alias`, with kept extras of `source`."""
    choices = [_conform_chunk_choice(choice) for choice in chunk.choices]
    tier = chunk.service_tier
    chunk = msgspec.structs.replace(
        chunk,
        model=alias,
        choices=choices,
        service_tier=tier if tier in SERVICE_TIERS else None,
    )
    body = _encoder.encode(chunk)
    if keep_extras and source:
        body = with_extras(body, source, keep_extras)
    return body


def _conform_chunk_choice(choice: ChunkChoice) -> ChunkChoice:
    reason = choice.finish_reason
    if reason is None or reason in FINISH_REASONS:
        return choice
    return msgspec.structs.replace(choice, finish_reason="stop")  # an engine's own value
