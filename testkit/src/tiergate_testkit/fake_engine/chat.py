"""Answering one chat completion: normal, streamed, paced, or with the requested fault."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tiergate_testkit.fake_engine import responses
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest
from tiergate_testkit.fake_engine.request import Answer, ChatRequest, plan_answer
from tiergate_testkit.fake_engine.server import ClientGone, Exchange, Header

__all__ = ["answer_chat"]

_JSON: Header = ("Content-Type", "application/json")
_SSE_HEADERS: tuple[Header, ...] = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
)


async def answer_chat(
    exchange: Exchange, record: RecordedRequest, request: ChatRequest, default_model: str
) -> Outcome:
    """Answer `request` as its `fake` options say; return the outcome to record.

    Raises ClientGone when the client goes away first; `record.chunks_sent` then
    says how far the answer got.
    """
    options = request.fake
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
    stream = _Stream(exchange, record, request, request.model or default_model)
    if request.stream:
        return await stream.send_events(extra)
    return await stream.send_completion(extra)


def _merge(defaults: Sequence[Header], extra: Sequence[Header]) -> list[Header]:
    """`extra` (from `fake.headers`) replaces same-named defaults, case-insensitively."""
    overridden = {name.lower() for name, _ in extra}
    return [h for h in defaults if h[0].lower() not in overridden] + list(extra)


def _guess_type(body: str) -> Header:
    # Raw error bodies are usually an HTML page from a proxy; `headers` may override.
    kind = "text/html" if body.lstrip().startswith("<") else "text/plain"
    return ("Content-Type", f"{kind}; charset=utf-8")


class _Stream:
    """The answer for one request, sent as events or as one completion body."""

    def __init__(
        self, exchange: Exchange, record: RecordedRequest, request: ChatRequest, model: str
    ) -> None:
        self._exchange = exchange
        self._record = record
        self._request = request
        self._options = request.fake
        self._answer: Answer = plan_answer(request)
        self._id = f"chatcmpl-fake-{record.id}"
        self._model = model
        self._created = int(time.time())
        stall, drop = self._options.stall_after, self._options.drop_after
        self._cut_at = stall if stall is not None else drop
        rate = self._options.tokens_per_s
        self._interval = 0.0 if rate is None else 1.0 / rate

    @property
    def _usage(self) -> responses.Usage:
        return responses.Usage.of(self._answer.prompt_tokens, self._record.chunks_sent)

    async def send_completion(self, extra: list[Header]) -> Outcome:
        """Non-streaming: wait out the "generation", then one `chat.completion` body."""
        chunks = self._answer.chunks
        await self._exchange.pause(self._options.first_token_delay_s + self._interval * len(chunks))
        self._record.chunks_sent = len(chunks)
        if self._options.malformed:
            return await self._respond(responses.MALFORMED_BODY, extra, "malformed")
        call = self._answer.tool_call
        body = responses.completion(
            id=self._id,
            model=self._model,
            created=self._created,
            text=self._answer.text,
            finish_reason=self._answer.finish_reason,
            usage=self._usage,
            tool_call=None if call is None else (call.id, call.name),
        )
        body = responses.with_fields(body, self._options.extra_fields)
        if self._cut_at is None:
            return await self._respond(body, extra, "completed")
        # A body cut half-way: the headers promise the full Content-Length.
        self._record.status = 200
        headers = [*_merge([_JSON], extra), ("Content-Length", str(len(body)))]
        await self._exchange.start(200, headers)
        await self._exchange.write(body[: len(body) // 2])
        return await self._cut()

    async def _respond(self, body: bytes, extra: list[Header], outcome: Outcome) -> Outcome:
        self._record.status = 200
        await self._exchange.respond(200, _merge([_JSON], extra), body)
        return outcome

    async def send_events(self, extra: list[Header]) -> Outcome:
        """Streaming: role chunk, content chunks, final chunk, usage chunk, `[DONE]`.

        With `tool_call`: after the role chunk the call's first delta (id, type, name), then
        its arguments in pieces instead of content chunks.
        """
        self._record.status = 200
        await self._exchange.start(200, _merge(_SSE_HEADERS, extra))
        await self._exchange.pause(self._options.first_token_delay_s)
        await self._event(responses.role_chunk(self._id, self._model, self._created))
        if self._options.malformed:
            await self._exchange.write(responses.MALFORMED_EVENT)
            await self._exchange.write(responses.SSE_DONE)
            await self._exchange.end()
            return "malformed"
        call = self._answer.tool_call
        if call is not None:
            await self._event(
                responses.tool_call_start_chunk(
                    self._id, self._model, self._created, call.id, call.name
                )
            )
        piece = responses.content_chunk if call is None else responses.tool_arguments_chunk
        for index, text in enumerate(self._answer.chunks):
            if index == self._cut_at:
                return await self._cut()
            await self._exchange.pause(self._interval)
            await self._event(piece(self._id, self._model, self._created, text))
            self._record.chunks_sent = index + 1
        if self._cut_at is not None:  # N >= the answer's length: cut before the final chunk
            return await self._cut()
        await self._event(
            responses.final_chunk(self._id, self._model, self._created, self._answer.finish_reason)
        )
        if self._request.include_usage:
            await self._event(
                responses.usage_chunk(self._id, self._model, self._created, self._usage)
            )
        await self._exchange.write(responses.SSE_DONE)
        await self._exchange.end()
        return "completed"

    async def _event(self, payload: bytes) -> None:
        payload = responses.with_fields(payload, self._options.extra_fields)
        await self._exchange.write(responses.sse_event(payload))

    async def _cut(self) -> Outcome:
        """Apply `stall_after` or `drop_after` at the current point of the body."""
        if self._options.drop_after is not None:
            await self._exchange.drop()
            return "drop_after"
        await self._exchange.wait_client_gone()
        raise ClientGone
