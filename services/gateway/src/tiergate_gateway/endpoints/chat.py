"""`POST /v1/chat/completions`: chat requests as the pipeline reads them, answers as relayed."""

from __future__ import annotations

from typing import Any

from litestar import Request

from tiergate_gateway.chat_request import parse_chat_request
from tiergate_gateway.content_filter import WordFilter
from tiergate_gateway.endpoints.base import Endpoint
from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.pipeline.exchange import Exchange, Parsed, StreamRelay
from tiergate_gateway.upstream.conform import conform_filtered
from tiergate_gateway.upstream.sse import SseTransformer

__all__ = ["ChatEndpoint", "chat_parsed", "output_words"]

_CAP_FIELDS = ("max_tokens", "max_completion_tokens")


def chat_parsed(raw: dict[str, Any], size: int, **fields: Any) -> Parsed:
    """A Parsed for a validated chat body (also what a translated Responses request is)."""
    stream = bool(raw.get("stream"))
    options = raw.get("stream_options")
    return Parsed(
        model=raw["model"],
        raw=raw,
        size=size,
        stream=stream,
        wants_usage=stream and isinstance(options, dict) and bool(options.get("include_usage")),
        cap_fields=_CAP_FIELDS,
        tools=bool(raw.get("tools") or raw.get("functions")),
        chat=True,
        **fields,
    )


def output_words(exchange: Exchange) -> WordFilter | None:
    """The tier's filter words when it filters answers (None: it does not)."""
    content_filter = exchange.policy.content_filter
    return content_filter.words if content_filter is not None and content_filter.output else None


class ChatEndpoint(Endpoint):
    """Chat Completions."""

    path = "/v1/chat/completions"
    api = "chat"
    public_api = "chat"
    upstream = "chat"
    span_name = "chat.completions"

    async def read(
        self, request: Request[Any, Any, Any], limit: int, principal: Principal
    ) -> Parsed:
        del principal
        parsed = await parse_chat_request(request, limit)
        return chat_parsed(parsed.raw, parsed.size, needs=parsed.needs)

    async def answer(
        self, exchange: Exchange, content: bytes, alias: str, keep_extras: frozenset[str]
    ) -> tuple[bytes, tuple[int, int] | None]:
        body, usage, trip, filtered = conform_filtered(
            content, alias, keep_extras, exchange.policy.guard, output_words(exchange)
        )
        if filtered:
            exchange.filtered = True
            exchange.record.set_header("x-tiergate-filter", "profanity")
        if trip is not None:
            exchange.guard_trip = trip
            exchange.record.set_header("x-tiergate-guard", "repetition")
        grounding = exchange.grounding
        if grounding is not None and grounding.sources_field:
            body = body[:-1] + grounding.sources_field + b"}"  # an encoded object ends with }
        tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else None
        return body, tokens

    def relay(self, exchange: Exchange, alias: str, keep_extras: frozenset[str]) -> StreamRelay:
        return SseTransformer(
            alias,
            client_wants_usage=exchange.parsed.wants_usage,
            keep_extras=keep_extras,
            guard=exchange.policy.guard,
            prompt_estimate=exchange.prompt_estimate,
            content_filter=exchange.policy.content_filter,
        )
