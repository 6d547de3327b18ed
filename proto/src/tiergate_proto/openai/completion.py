"""Chat completion responses: ``ChatCompletion``, stream chunks ``ChatCompletionChunk``, usage."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from tiergate_proto.openai.base import WireStruct
from tiergate_proto.openai.messages import FunctionCall, ToolCall

# Both response shapes are built by the gateway and decoded from engines (llama.cpp,
# vLLM, SGLang), which add their own fields (``timings``, ``id`` in logprobs, ...);
# unknown fields are ignored. Required fields are the ones every engine sends and
# clients index directly, so they are always encoded, ``null`` included.
#
# OpenAI's schema also requires keys that engines leave out (``message.refusal``,
# ``choices[].logprobs``, issue 10): those fields default through ``_null`` (or
# ``_no_tokens``). msgspec's ``omit_defaults`` leaves out a value identical to a field's
# default, or an empty container made by the ``list``/``dict``/``set`` factories, but never
# the value of another factory: such a field decodes as ``null`` (``[]``) when absent and is
# always encoded. Optional fields OpenAI does not allow to be ``null`` (``tool_calls``,
# ``annotations``, ``usage``, ``system_fingerprint``) default to ``None`` and are left out,
# so an engine's ``"annotations": null`` is dropped on re-encoding.


def _null() -> None:
    """Default of a key OpenAI requires but allows to be null: absent → None, always encoded."""


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
"""The ``finish_reason`` values OpenAI's schema allows."""

FINISH_REASONS: frozenset[str] = frozenset(
    ("stop", "length", "tool_calls", "content_filter", "function_call")
)

ServiceTier = Literal["auto", "default", "flex", "scale", "priority", "fast"]
"""The ``service_tier`` values OpenAI's schema allows."""

SERVICE_TIERS: frozenset[str] = frozenset(("auto", "default", "flex", "scale", "priority", "fast"))

# --- usage ------------------------------------------------------------------------------------


class PromptTokensDetails(WireStruct, kw_only=True, frozen=True):
    """Breakdown of ``prompt_tokens``; engines fill what they know (llama.cpp: cached only)."""

    cached_tokens: int | None = None
    audio_tokens: int | None = None
    text_tokens: int | None = None
    image_tokens: int | None = None
    cache_write_tokens: int | None = None


class CompletionTokensDetails(WireStruct, kw_only=True, frozen=True):
    """Breakdown of ``completion_tokens``."""

    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None
    text_tokens: int | None = None


TokenCount = Annotated[int, Meta(ge=0)]
"""A token count; an engine reporting a negative one is sending garbage."""


class Usage(WireStruct, kw_only=True, frozen=True):
    """Token accounting for a whole completion (all choices)."""

    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


# --- logprobs ---------------------------------------------------------------------------------


class TopLogprob(WireStruct, kw_only=True, frozen=True):
    """One alternative token at a position; ``bytes`` is its UTF-8 encoding, always encoded."""

    token: str
    logprob: float
    bytes: list[int] | None = msgspec.field(default_factory=_null)


def _no_tokens() -> list[TopLogprob]:
    """Default of ``top_logprobs``: absent → ``[]``, always encoded."""
    return []


class TokenLogprob(WireStruct, kw_only=True, frozen=True):
    """A sampled token with its log probability and the ``top_logprobs`` alternatives.

    ``top_logprobs`` is always encoded (``[]`` when none were asked for or the engine left it
    out): the OpenAI SDKs declare it without a default and fail on access when it is missing.
    """

    token: str
    logprob: float
    top_logprobs: list[TopLogprob] = msgspec.field(default_factory=_no_tokens)
    bytes: list[int] | None = msgspec.field(default_factory=_null)


class ChoiceLogprobs(WireStruct, kw_only=True, frozen=True):
    """Log probabilities of a choice's content tokens (and refusal tokens); both always encoded."""

    content: list[TokenLogprob] | None = msgspec.field(default_factory=_null)
    refusal: list[TokenLogprob] | None = msgspec.field(default_factory=_null)


# --- non-streaming response -------------------------------------------------------------------


class UrlCitation(WireStruct, kw_only=True, frozen=True):
    """A web source cited by ``content[start_index:end_index]``."""

    url: str
    title: str
    start_index: int
    end_index: int


class UrlCitationAnnotation(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="url_citation"
):
    """``{"type": "url_citation", "url_citation": {...}}``, from search-enabled models."""

    url_citation: UrlCitation


class AudioOutput(WireStruct, kw_only=True, frozen=True):
    """Audio the model produced: base64 ``data`` in the requested format, plus its transcript."""

    id: str
    data: str
    expires_at: int
    transcript: str


class ChatCompletionMessage(
    WireStruct, kw_only=True, frozen=True, tag_field="role", tag="assistant"
):
    """The generated assistant message; ``"role": "assistant"`` is always encoded.

    ``content`` is required and encoded as ``null`` when the model only called tools,
    as OpenAI and the engines do. ``refusal`` is always encoded (``null`` unless the model
    refused), as OpenAI's schema requires. ``reasoning_content`` is not OpenAI's: llama.cpp,
    vLLM and SGLang put a reasoning model's thinking there, and clients read it there; it is
    left out when absent.
    """

    content: str | None
    refusal: str | None = msgspec.field(default_factory=_null)
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    annotations: list[UrlCitationAnnotation] | None = None
    audio: AudioOutput | None = None


class Choice(WireStruct, kw_only=True, frozen=True):
    """One completion; ``finish_reason`` is ``stop``, ``length``, ``tool_calls``, ... or null.

    ``finish_reason`` is a free string: engines report values OpenAI does not (``abort``);
    the gateway maps those onto ``FinishReason`` before answering. ``finish_reason`` and
    ``logprobs`` are always encoded (``null`` when absent).
    """

    index: int
    message: ChatCompletionMessage
    finish_reason: str | None = msgspec.field(default_factory=_null)
    logprobs: ChoiceLogprobs | None = msgspec.field(default_factory=_null)


class ChatCompletion(
    WireStruct, kw_only=True, frozen=True, tag_field="object", tag="chat.completion"
):
    """A non-streaming response; ``"object": "chat.completion"`` is always encoded."""

    id: str
    created: int
    """Unix seconds."""
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


# --- streaming --------------------------------------------------------------------------------


class FunctionCallDelta(WireStruct, kw_only=True, frozen=True):
    """A fragment of a function call: ``name`` first, then ``arguments`` text in pieces."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(WireStruct, kw_only=True, frozen=True):
    """A fragment of tool call number ``index``: ``id`` and ``type`` arrive with the first."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class AudioDelta(WireStruct, kw_only=True, frozen=True):
    """A fragment of audio output."""

    id: str | None = None
    data: str | None = None
    expires_at: int | None = None
    transcript: str | None = None


class Delta(WireStruct, kw_only=True, frozen=True):
    """What a chunk adds to a choice; every key is optional and the final delta may be ``{}``."""

    role: Literal["developer", "system", "user", "assistant", "tool"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionCallDelta | None = None
    audio: AudioDelta | None = None


class ChunkChoice(WireStruct, kw_only=True, frozen=True):
    """One choice in a chunk; ``finish_reason`` is always encoded, ``null`` until the last."""

    index: int
    delta: Delta
    finish_reason: str | None = msgspec.field(default_factory=_null)
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(
    WireStruct, kw_only=True, frozen=True, tag_field="object", tag="chat.completion.chunk"
):
    """One ``data:`` event of a stream; ``"object": "chat.completion.chunk"`` is always encoded.

    With ``stream_options.include_usage`` the last chunk has ``choices == []`` and the
    ``usage`` of the whole stream.
    """

    id: str
    created: int
    """Unix seconds; the same in every chunk of a stream."""
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
