"""Sending one answer with its request's `fake` options: faults, delays, pacing, cut bodies.

Every generating endpoint (chat, legacy completions, embeddings) answers through here, so a
fault means the same on each: `answer` applies the ones that come before any body
(`header_delay_s`, `drop_before_headers`, `status`), `send_body` those of a whole JSON body
(`malformed`, `extra_fields`, `stall_after`/`drop_after` half-way), and `Stream` sends a
planned `Answer` whole or as events in the wire shape of one API (`Shape`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol

from tiergate_testkit.fake_engine import responses
from tiergate_testkit.fake_engine.behaviour import Behaviour
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest
from tiergate_testkit.fake_engine.request import Answer, FinishReason, Plannable, plan_answer
from tiergate_testkit.fake_engine.server import ClientGone, Exchange, Header

__all__ = ["Ids", "Shape", "Stream", "StreamRequest", "answer", "send_body"]

_JSON: Header = ("Content-Type", "application/json")
_SSE_HEADERS: tuple[Header, ...] = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
)

Send = Callable[[list[Header]], Awaitable[Outcome]]


async def answer(
    exchange: Exchange, record: RecordedRequest, options: Behaviour, send: Send
) -> Outcome:
    """Apply the faults that come before a body, else `send(extra_headers)`; the outcome.

    Raises ClientGone when the client goes away first; `record.chunks_sent` then says how
    far the answer got.
    """
    extra = list(options.headers.items())
    await exchange.pause(options.header_delay_s)
    if options.drop_before_headers:
        await exchange.drop()
        return "drop_before_headers"
    if options.status is not None:
        if options.error_body is None:
            message = f"fake engine: injected status {options.status}"
            body, content_type = responses.error_envelope(options.status, message), _JSON
        else:
            body, content_type = options.error_body.encode(), _guess_type(options.error_body)
        record.status = options.status
        await exchange.respond(options.status, _merge([content_type], extra), body)
        return "status"
    return await send(extra)


def _merge(defaults: Sequence[Header], extra: Sequence[Header]) -> list[Header]:
    """`extra` (from `fake.headers`) replaces same-named defaults, case-insensitively."""
    overridden = {name.lower() for name, _ in extra}
    return [h for h in defaults if h[0].lower() not in overridden] + list(extra)


def _guess_type(body: str) -> Header:
    # Raw error bodies are usually an HTML page from a proxy; `headers` may override.
    kind = "text/html" if body.lstrip().startswith("<") else "text/plain"
    return ("Content-Type", f"{kind}; charset=utf-8")


async def send_body(
    exchange: Exchange,
    record: RecordedRequest,
    options: Behaviour,
    body: bytes,
    extra: list[Header],
) -> Outcome:
    """A whole 200 JSON `body`, or the body fault `options` ask for.

    `malformed`: a non-JSON body instead. `extra_fields` are added. `stall_after` or
    `drop_after`: the headers promise the full Content-Length, half the body goes out, then
    the connection stalls or is closed.
    """
    record.status = 200
    if options.malformed:
        await exchange.respond(200, _merge([_JSON], extra), responses.MALFORMED_BODY)
        return "malformed"
    body = responses.with_fields(body, options.extra_fields)
    if options.stall_after is None and options.drop_after is None:
        await exchange.respond(200, _merge([_JSON], extra), body)
        return "completed"
    headers = [*_merge([_JSON], extra), ("Content-Length", str(len(body)))]
    await exchange.start(200, headers)
    await exchange.write(body[: len(body) // 2])
    return await _cut(exchange, options)


async def _cut(exchange: Exchange, options: Behaviour) -> Outcome:
    """Apply `stall_after` or `drop_after` at the current point of the body."""
    if options.drop_after is not None:
        await exchange.drop()
        return "drop_after"
    await exchange.wait_client_gone()
    raise ClientGone


class Ids(NamedTuple):
    """What every chunk of one answer repeats."""

    id: str
    model: str
    created: int


class Shape(Protocol):
    """How one API spells an answer, whole and as stream events (built by `responses`)."""

    @property
    def id_prefix(self) -> str:
        """The answer id is this plus the request's record id (`chatcmpl-fake-`, ...)."""
        ...

    def whole(self, ids: Ids, answer: Answer, usage: responses.Usage) -> bytes:
        """The non-streaming body."""
        ...

    def opening(self, ids: Ids, answer: Answer) -> list[bytes]:
        """Events before the first piece; the first goes out before a `malformed` event."""
        ...

    def piece(self, ids: Ids, answer: Answer, text: str) -> bytes:
        """The event carrying one chunk of the answer (one "token")."""
        ...

    def final(self, ids: Ids, finish_reason: FinishReason) -> bytes:
        """The event that says why the answer stopped."""
        ...

    def usage(self, ids: Ids, usage: responses.Usage) -> bytes:
        """The usage-only event (`stream_options.include_usage`)."""
        ...


class StreamRequest(Plannable, Protocol):
    """What `Stream` reads of a request, beyond what `plan_answer` does."""

    @property
    def model(self) -> str | None: ...
    @property
    def stream(self) -> bool: ...
    @property
    def include_usage(self) -> bool: ...


class Stream:
    """The answer for one request, sent as events or as one body, in `shape`."""

    def __init__(
        self,
        exchange: Exchange,
        record: RecordedRequest,
        request: StreamRequest,
        shape: Shape,
        default_model: str,
    ) -> None:
        self._exchange = exchange
        self._record = record
        self._request = request
        self._shape = shape
        self._options = request.fake
        self._answer: Answer = plan_answer(request)
        model = request.model or default_model
        self._ids = Ids(shape.id_prefix + str(record.id), model, int(time.time()))
        stall, drop = self._options.stall_after, self._options.drop_after
        self._cut_at = stall if stall is not None else drop
        rate = self._options.tokens_per_s
        self._interval = 0.0 if rate is None else 1.0 / rate

    async def send(self, extra: list[Header]) -> Outcome:
        """Events if the request streams, else one body."""
        if self._request.stream:
            return await self.send_events(extra)
        return await self.send_whole(extra)

    @property
    def _usage(self) -> responses.Usage:
        return responses.Usage.of(self._answer.prompt_tokens, self._record.chunks_sent)

    async def send_whole(self, extra: list[Header]) -> Outcome:
        """Non-streaming: wait out the "generation", then one body."""
        chunks = self._answer.chunks
        await self._exchange.pause(self._options.first_token_delay_s + self._interval * len(chunks))
        self._record.chunks_sent = len(chunks)
        body = self._shape.whole(self._ids, self._answer, self._usage)
        return await send_body(self._exchange, self._record, self._options, body, extra)

    async def send_events(self, extra: list[Header]) -> Outcome:
        """Streaming: the shape's opening events, pieces, final event, usage event, `[DONE]`."""
        self._record.status = 200
        await self._exchange.start(200, _merge(_SSE_HEADERS, extra))
        await self._exchange.pause(self._options.first_token_delay_s)
        opening = self._shape.opening(self._ids, self._answer)
        if self._options.malformed:
            if opening:
                await self._event(opening[0])
            await self._exchange.write(responses.MALFORMED_EVENT)
            await self._exchange.write(responses.SSE_DONE)
            await self._exchange.end()
            return "malformed"
        for event in opening:
            await self._event(event)
        for index, text in enumerate(self._answer.chunks):
            if index == self._cut_at:
                return await _cut(self._exchange, self._options)
            await self._exchange.pause(self._interval)
            await self._event(self._shape.piece(self._ids, self._answer, text))
            self._record.chunks_sent = index + 1
        if self._cut_at is not None:  # N >= the answer's length: cut before the final event
            return await _cut(self._exchange, self._options)
        await self._event(self._shape.final(self._ids, self._answer.finish_reason))
        if self._request.include_usage:
            await self._event(self._shape.usage(self._ids, self._usage))
        await self._exchange.write(responses.SSE_DONE)
        await self._exchange.end()
        return "completed"

    async def _event(self, payload: bytes) -> None:
        payload = responses.with_fields(payload, self._options.extra_fields)
        await self._exchange.write(responses.sse_event(payload))
