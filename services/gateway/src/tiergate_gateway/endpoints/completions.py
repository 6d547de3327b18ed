"""`POST /v1/completions` (legacy text completions) and `POST /v1/embeddings` on the pipeline.

Both are relayed to the model's own backend (no route table: a workload class is a chat
notion) and share every stage with chat: identity, tier policy (the model must be allowed;
a completion's `max_tokens` is clamped like chat's), limits (an embedding's input counts
against the token window), fallbacks before the first byte, metrics, access log.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from tiergate_gateway.endpoints.base import Endpoint
from tiergate_gateway.endpoints.chat import output_words
from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.pipeline.exchange import Exchange, Parsed, StreamRelay
from tiergate_gateway.upstream.conform_embeddings import conform_embeddings
from tiergate_gateway.upstream.conform_text import TextSseTransformer, conform_text_checked
from tiergate_proto.openai import CompletionRequest, EmbeddingRequest
from tiergate_runtime.body import read_sized_json_object, validation_error
from tiergate_runtime.errors import InvalidRequest

__all__ = ["CompletionsEndpoint", "EmbeddingsEndpoint"]

T = TypeVar("T", CompletionRequest, EmbeddingRequest)


async def _read(
    request: Request[Any, Any, Any], limit: int, tp: type[T]
) -> tuple[T, dict[str, Any], int]:
    """The body validated as `tp`, the raw object (forwarded) and its size."""
    raw, size = await read_sized_json_object(request, limit)
    try:
        return msgspec.convert(raw, tp), raw, size
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def _stream_checked(request: CompletionRequest) -> None:
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )


class _Widths(msgspec.Struct):
    class _Item(msgspec.Struct):
        embedding: list[float] | str

    data: list[_Item]


def _base64_floats(text: str) -> int:
    return (len(text) * 3 // 4 - text[-2:].count("=")) // 4


def _check_width(body: bytes, dimensions: int, alias: str) -> None:
    """An engine that ignores `dimensions` (a plain llama.cpp server answers its model's full
    width) must not hand the client vectors of another size than it asked for: a 400."""
    for item in msgspec.json.decode(body, type=_Widths).data:
        vector = item.embedding
        width = len(vector) if isinstance(vector, list) else _base64_floats(vector)
        if width != dimensions:
            raise InvalidRequest(
                f"The model '{alias}' does not support 'dimensions' = {dimensions} "
                f"(its embeddings have {width}).",
                param="dimensions",
                code="unsupported_parameter",
            )


class CompletionsEndpoint(Endpoint):
    """Legacy text completions (stream and not)."""

    path = "/v1/completions"
    api = "completions"
    public_api = "completions"
    upstream = "completions"
    span_name = "completions"

    async def read(
        self, request: Request[Any, Any, Any], limit: int, principal: Principal
    ) -> Parsed:
        del principal
        parsed, raw, size = await _read(request, limit, CompletionRequest)
        _stream_checked(parsed)
        options = parsed.stream_options
        return Parsed(
            model=parsed.model,
            raw=raw,
            size=size,
            stream=parsed.stream,
            wants_usage=bool(options and options.include_usage),
            cap_fields=("max_tokens",),
        )

    async def answer(
        self, exchange: Exchange, content: bytes, alias: str, keep_extras: frozenset[str]
    ) -> tuple[bytes, tuple[int, int] | None]:
        body, usage, filtered = conform_text_checked(
            content, alias, keep_extras, output_words(exchange)
        )
        if filtered:
            exchange.filtered = True
            exchange.record.set_header("x-tiergate-filter", "profanity")
        return body, (usage.prompt_tokens, usage.completion_tokens) if usage else None

    def relay(self, exchange: Exchange, alias: str, keep_extras: frozenset[str]) -> StreamRelay:
        return TextSseTransformer(
            alias,
            client_wants_usage=exchange.parsed.wants_usage,
            keep_extras=keep_extras,
            prompt_estimate=exchange.prompt_estimate,
            content_filter=exchange.policy.content_filter,
        )


class EmbeddingsEndpoint(Endpoint):
    """Embeddings: strings or token arrays, float or base64."""

    path = "/v1/embeddings"
    api = "embeddings"
    public_api = "embeddings"
    upstream = "embeddings"
    span_name = "embeddings"

    async def read(
        self, request: Request[Any, Any, Any], limit: int, principal: Principal
    ) -> Parsed:
        del principal
        parsed, raw, size = await _read(request, limit, EmbeddingRequest)
        return Parsed(model=parsed.model, raw=raw, size=size, state=parsed)

    async def answer(
        self, exchange: Exchange, content: bytes, alias: str, keep_extras: frozenset[str]
    ) -> tuple[bytes, tuple[int, int] | None]:
        del keep_extras  # OpenAI's exact shape: nothing an engine adds is kept
        request: EmbeddingRequest = exchange.parsed.state
        body, usage = conform_embeddings(content, alias, encoding_format=request.encoding_format)
        if request.dimensions is not None:
            _check_width(body, request.dimensions, alias)
        return body, (usage.prompt_tokens, 0) if usage else None

    def relay(self, exchange: Exchange, alias: str, keep_extras: frozenset[str]) -> StreamRelay:
        raise AssertionError("embeddings are never streamed")  # Parsed.stream is False
