"""``POST /v1/embeddings``: the request ``EmbeddingRequest`` and the answer ``EmbeddingList``."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from tiergate_proto.openai.base import WireStruct
from tiergate_proto.openai.chat import NonEmptyStr
from tiergate_proto.openai.completion import TokenCount

# OpenAI's documented bounds on `input`: never an empty string, an array of 1 to 2048 items,
# a token array of at least one token id. msgspec allows one array type per union, so the
# four shapes OpenAI lists (a string, strings, token ids, token id arrays) are spelled as a
# string or an array of any of the three item kinds; `EmbeddingRequest` rejects a mixed array.
TokenId = Annotated[int, Meta(ge=0)]
TokenIds = Annotated[list[TokenId], Meta(min_length=1)]
InputItem = NonEmptyStr | TokenId | TokenIds
EmbeddingInput = NonEmptyStr | Annotated[list[InputItem], Meta(min_length=1, max_length=2048)]
"""A string, or 1 to 2048 strings, token ids or token id arrays (all of one kind)."""

EncodingFormat = Literal["float", "base64"]
"""``float``: a JSON array of numbers. ``base64``: the little-endian float32 bytes, base64."""


class EmbeddingRequest(WireStruct, kw_only=True, frozen=True):
    """The body of ``POST /v1/embeddings``.

    Validate with ``msgspec.convert(raw_dict, EmbeddingRequest)``; a
    ``msgspec.ValidationError`` names the offending path (``$.input[1]``). Unknown fields are
    ignored, as for chat: forward the raw dict when the engine should see them.

    ``encoding_format`` defaults to ``"float"`` (what OpenAI answers when it is absent), so
    an explicit ``"float"`` is left out when encoding. OpenAI's token limits (8192 per input,
    300,000 per request) need the model's tokenizer and are left to the engine.
    """

    input: EmbeddingInput
    model: NonEmptyStr
    encoding_format: EncodingFormat = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    """Shorten the vectors to this many dimensions (models that support it)."""
    user: str | None = None

    def __post_init__(self) -> None:
        check_one_kind(self.input, "input")


def check_one_kind(value: object, field: str) -> None:
    """Raise ValueError if `value` is an array mixing strings, token ids and token arrays.

    Called from ``__post_init__``: msgspec raises the ValueError as a ValidationError with
    its message (OpenAI's four shapes are one kind each; see ``EmbeddingInput``).
    """
    if isinstance(value, list) and len({type(item) for item in value}) > 1:
        raise ValueError(f"`{field}` mixes strings, token ids and token arrays")


class EmbeddingUsage(WireStruct, kw_only=True, frozen=True):
    """Tokens read; an embedding generates none, so there is no ``completion_tokens``."""

    prompt_tokens: TokenCount
    total_tokens: TokenCount


def _no_usage() -> EmbeddingUsage:
    """Default of ``usage``: absent → zeros, always encoded (OpenAI requires the key)."""
    return EmbeddingUsage(prompt_tokens=0, total_tokens=0)


class Embedding(WireStruct, kw_only=True, frozen=True, tag_field="object", tag="embedding"):
    """One vector, for ``input`` item ``index``; ``"object": "embedding"`` is always encoded.

    ``embedding`` is a list of floats, or a base64 string of little-endian float32 values when
    the request said ``encoding_format: "base64"``. Engines add keys (llama.cpp:
    ``encoding_format``); they are ignored when decoding.
    """

    index: int
    embedding: list[float] | str


class EmbeddingList(WireStruct, kw_only=True, frozen=True, tag_field="object", tag="list"):
    """The answer of ``POST /v1/embeddings``; ``"object": "list"`` is always encoded.

    ``usage`` is always encoded, as OpenAI's schema requires; an engine that leaves it out
    decodes as zero tokens (see ``_no_usage``). Engine extras (vLLM's ``id`` and
    ``created``) are ignored when decoding.
    """

    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = msgspec.field(default_factory=_no_usage)
