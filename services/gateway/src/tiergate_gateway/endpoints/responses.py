"""`POST /v1/responses` (OpenAI's Responses API) on the pipeline, translated to chat.

Read: the request is validated (`responses/request.py`), the conversation of its
`previous_response_id` loaded — only its owner's (same tier and subject), else 404 — and the
whole turn translated to one chat body (`responses/translate.py`), which every later stage
treats as a chat request: workload, route table, capabilities, grounding, limits, fallbacks.
Answer: the engine's chat completion, conformed, becomes a `Response`; a stream's chat chunks
become Responses events (`responses/stream.py`). With `store` (OpenAI's default) the turn is
kept for `responses.ttl_s` **before** the client sees `response.completed` (or the JSON), so
a follow-up sent at once finds it; a store that fails then turns the answer into a 503 (or a
`response.failed` event) rather than a conversation that cannot be continued.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request

from tiergate_gateway.capabilities import needs_of
from tiergate_gateway.endpoints.base import Endpoint
from tiergate_gateway.endpoints.chat import chat_parsed, output_words
from tiergate_gateway.guard import Trip
from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.pipeline.exchange import Exchange, Parsed, StreamRelay
from tiergate_gateway.responses.ids import new_response_id
from tiergate_gateway.responses.request import extra_fields, parse_response_request
from tiergate_gateway.responses.store import ResponseStore
from tiergate_gateway.responses.stream import ResponseStreamTranslator
from tiergate_gateway.responses.translate import conversation_after, from_chat, to_chat
from tiergate_gateway.upstream.conform import conform_filtered
from tiergate_gateway.upstream.sse import SseTransformer
from tiergate_proto.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Message,
    ResponseCreateRequest,
    StoredResponse,
)
from tiergate_runtime.body import read_sized_json_object, validation_error
from tiergate_runtime.errors import ServiceUnavailable

__all__ = ["ResponsesEndpoint"]

_encode = msgspec.json.Encoder().encode
_completion = msgspec.json.Decoder(ChatCompletion).decode
_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode
_envelope = msgspec.json.Decoder(dict[str, Any]).decode


class _Turn(msgspec.Struct, kw_only=True):
    """One Responses request in flight: what its answer and storage need."""

    request: ResponseCreateRequest
    history: list[Message]
    response_id: str
    created_at: int
    owner: str


class ResponsesRelay:
    """Chat chunks from the engine → Responses events for the client."""

    def __init__(self, turn: _Turn, alias: str, exchange: Exchange) -> None:
        self._chat = SseTransformer(
            alias,
            client_wants_usage=True,
            guard=exchange.policy.guard,
            prompt_estimate=exchange.prompt_estimate,
            content_filter=exchange.policy.content_filter,
        )
        self.turn = turn
        self.translator = ResponseStreamTranslator(
            turn.request, response_id=turn.response_id, created_at=turn.created_at, model=alias
        )
        self._started = False

    @property
    def first_token_at(self) -> float | None:
        return self._chat.first_token_at

    @property
    def saw_done(self) -> bool:
        return self._chat.saw_done

    @property
    def saw_finish(self) -> bool:
        return self._chat.saw_finish

    @property
    def saw_error(self) -> bool:
        return self._chat.saw_error

    @property
    def cut(self) -> Trip | None:
        return self._chat.cut

    @property
    def filtered(self) -> bool:
        return self._chat.filtered

    def feed(self, chunk: bytes) -> bytes:
        out = [] if self._started else [self.translator.start()]
        self._started = True
        for line in self._chat.feed(chunk).split(b"\n"):
            if not line.startswith(b"data: "):
                continue
            payload = line[6:]
            if payload == b"[DONE]":
                continue
            if self._chat.saw_error and payload.startswith(b'{"error"'):
                message = _envelope(payload).get("error", {}).get("message", "upstream error")
                out.append(self.translator.fail(str(message)))
                continue
            out.append(self.translator.feed(_chunk(payload)))
        return b"".join(out)

    def tokens(self) -> tuple[int, int] | None:
        return self._chat.tokens()

    def error(self, message: str, code: str) -> bytes:
        del code  # ours (`upstream_stream_error`); a Response error has OpenAI's codes only
        head = b"" if self._started else self.translator.start()
        self._started = True
        return head + self.translator.fail(message)

    def done(self) -> bytes:
        return b""  # Responses streams end with response.completed, no [DONE]


class ResponsesEndpoint(Endpoint):
    """The Responses API, on chat upstream."""

    path = "/v1/responses"
    api = "chat"
    public_api = "responses"
    upstream = "chat"
    span_name = "responses"

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def read(
        self, request: Request[Any, Any, Any], limit: int, principal: Principal
    ) -> Parsed:
        raw, size = await read_sized_json_object(request, limit)
        parsed = parse_response_request(raw)
        owner = principal.bucket
        history: list[Message] = []
        if parsed.previous_response_id is not None:
            stored = await self.store.load(
                owner, parsed.previous_response_id, "previous_response_id"
            )
            history = stored.messages
        chat = to_chat(parsed, history, extras=extra_fields(raw))
        try:
            typed = msgspec.convert(chat, ChatCompletionRequest)
        except msgspec.ValidationError as exc:  # pragma: no cover - to_chat builds valid chat
            raise validation_error(exc) from None
        turn = _Turn(
            request=parsed,
            history=history,
            response_id=new_response_id(),
            created_at=int(time.time()),
            owner=owner,
        )
        return chat_parsed(chat, size, needs=needs_of(typed), state=turn)

    async def answer(
        self, exchange: Exchange, content: bytes, alias: str, keep_extras: frozenset[str]
    ) -> tuple[bytes, tuple[int, int] | None]:
        del keep_extras  # a Response has no room for engine fields
        body, usage, trip, filtered = conform_filtered(
            content, alias, guard=exchange.policy.guard, words=output_words(exchange)
        )
        if filtered:
            exchange.filtered = True
            exchange.record.set_header("x-tiergate-filter", "profanity")
        if trip is not None:
            exchange.guard_trip = trip
            exchange.record.set_header("x-tiergate-guard", "repetition")
        turn: _Turn = exchange.parsed.state
        response = from_chat(
            _completion(body), turn.request, turn.response_id, turn.created_at, model=alias
        )
        if turn.request.store is not False:
            await self._save(turn, response)
        tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else None
        return _encode(response), tokens

    def relay(self, exchange: Exchange, alias: str, keep_extras: frozenset[str]) -> StreamRelay:
        del keep_extras
        return ResponsesRelay(exchange.parsed.state, alias, exchange)

    async def end_stream(self, exchange: Exchange, relay: StreamRelay) -> bytes:
        assert isinstance(relay, ResponsesRelay)
        translator = relay.translator
        turn = relay.turn
        tail = translator.finish(translator.usage)
        if turn.request.store is not False:
            try:
                await self._save(turn, translator.response)
            except ServiceUnavailable as exc:
                # Known before response.completed went out: an error event instead.
                return translator.withdraw(exc.message)
        return tail

    async def _save(self, turn: _Turn, response: Any) -> None:
        await self.store.save(
            StoredResponse(
                subject=turn.owner,
                messages=conversation_after(turn.request, turn.history, response),
                response=response,
            )
        )
