"""Legacy ``POST /v1/completions``: ``CompletionRequest`` and its answer, ``TextCompletion``."""

from typing import Annotated

import msgspec
from msgspec import Meta

from tiergate_proto.openai.base import WireStruct
from tiergate_proto.openai.chat import (
    ChoiceCount,
    LogitBias,
    NonEmptyStr,
    Penalty,
    StopSequences,
    StreamOptions,
    Temperature,
    TopP,
)
from tiergate_proto.openai.completion import Usage, _null
from tiergate_proto.openai.embeddings import TokenId, TokenIds, check_one_kind

# The four prompt shapes OpenAI lists (a string, strings, token ids, token id arrays) as one
# msgspec union (one array type per union); `CompletionRequest` rejects a mixed array. Unlike
# embeddings, OpenAI allows an empty string and an empty array of strings here.
PromptItem = str | TokenId | TokenIds
Prompt = str | list[PromptItem]
"""A string, or strings, token ids or token id arrays (all of one kind)."""

TEXT_FINISH_REASONS: frozenset[str] = frozenset(("stop", "length", "content_filter"))
"""The ``finish_reason`` values OpenAI's schema allows in a text completion."""


class CompletionRequest(WireStruct, kw_only=True, frozen=True):
    """The body of legacy ``POST /v1/completions``.

    Validate with ``msgspec.convert(raw_dict, CompletionRequest)``; a
    ``msgspec.ValidationError`` names the offending path. Unknown fields (``top_k``,
    ``min_p``, ...) are ignored, as for chat: forward the raw dict when the engine should see
    them. ``prompt`` is required, as OpenAI's schema says, but may be ``null`` (the engine
    then starts a new document). Every other optional field defaults to ``None`` (``stream``
    to ``False``), so encoding reproduces what the client sent, less explicit defaults.
    """

    model: NonEmptyStr
    prompt: Prompt | None

    # streaming
    stream: bool = False
    stream_options: StreamOptions | None = None

    # length and sampling
    max_tokens: Annotated[int, Meta(ge=0)] | None = None
    """OpenAI's default is 16; ``0`` is allowed (with ``echo``, score the prompt only)."""
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: ChoiceCount | None = None
    best_of: Annotated[int, Meta(ge=0, le=20)] | None = None
    stop: str | StopSequences | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    """Token id (as a string) to bias in [-100, 100]."""
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    """Return the log probabilities of this many most likely tokens at each position."""

    # output shape
    echo: bool | None = None
    suffix: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        check_one_kind(self.prompt, "prompt")


class TextCompletionLogprobs(WireStruct, kw_only=True, frozen=True):
    """Log probabilities in the legacy shape: parallel lists, one entry per token.

    ``top_logprobs[i]`` maps each likely token at position ``i`` to its log probability.
    With ``echo`` OpenAI (and vLLM) send ``null`` for the first prompt token, which has no
    probability, so list items may be ``null``.
    """

    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] | None = None


class TextCompletionChoice(WireStruct, kw_only=True, frozen=True):
    """One completion of one prompt; ``logprobs`` and ``finish_reason`` are always encoded.

    ``finish_reason`` is ``stop``, ``length`` or ``content_filter`` in a whole answer and
    ``null`` in a stream chunk until the last. It is a free string when decoding: engines
    report values OpenAI does not (vLLM's ``abort``); the gateway maps those onto
    ``TEXT_FINISH_REASONS`` before answering.
    """

    text: str
    index: int
    logprobs: TextCompletionLogprobs | None = msgspec.field(default_factory=_null)
    finish_reason: str | None = msgspec.field(default_factory=_null)


class TextCompletion(
    WireStruct, kw_only=True, frozen=True, tag_field="object", tag="text_completion"
):
    """A whole answer or one stream chunk: OpenAI streams this same object type.

    ``"object": "text_completion"`` is always encoded. With
    ``stream_options.include_usage`` the last chunk has ``choices == []`` and the ``usage``
    of the whole stream. Engine extras (llama.cpp's ``timings``, vLLM's ``stop_reason`` and
    ``prompt_logprobs``) are ignored when decoding.
    """

    id: str
    created: int
    """Unix seconds."""
    model: str
    choices: list[TextCompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
