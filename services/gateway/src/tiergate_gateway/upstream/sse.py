"""Server-sent events from an engine, made ours: re-framed, checked, public model id, usage.

`SseTransformer.feed(chunk)` takes whatever bytes arrived from the upstream and returns the
bytes to send to the client now (possibly several events, possibly nothing if an event is
incomplete). It never waits for more than one event: relay stays unbuffered. Per event it
checks the chunk against OpenAI's schema with one strict typed decode (`conform.check_chunk`):
a conformant chunk is relayed as the engine wrote it, its `model` replaced by the public alias
in place; any other chunk is decoded leniently and encoded again (`conform.repair_chunk`:
required keys filled, engine extras dropped unless kept); an upstream error event is re-encoded
as OpenAI's envelope. An event that is not a chunk at all (not JSON, wrong shape) raises
`SseMalformed`: the relay ends the stream with our error event and `[DONE]` instead of passing
garbage that makes clients fail to parse (issue 10). Per event it also records `usage`, drops
the usage-only chunk when the client did not ask for usage (the gateway always asks the engine
for it, to count tokens), and notes `[DONE]`, `finish_reason` and the first token (content,
reasoning, refusal or a tool call).

With a `guard` (the tier's runaway guard, `guard/`), each choice's content deltas are fed
to an `AnswerGuard`. When one trips, the event that tripped it goes out (the text so far),
then a last chunk with `finish_reason: "length"` and `"tiergate_guard": "repetition"`, the
usage chunk if the client asked for one, and `[DONE]`; `cut` says why, the rest of the read
is dropped, and the relay closes the upstream, which stops the engine generating. The usage
of a cut stream is ours: completion tokens are the content deltas relayed (llama.cpp and
vLLM send one token per delta), prompt tokens the gateway's estimate.

With a `content_filter` (the tier's, `content_filter/`), each choice's content goes through
the output filter: the trailing partial word is held back, chunks are re-encoded with what
may go out (`content_filter/relay.py`), and a flagged word is never sent: the text before
it goes out, then a last chunk with `finish_reason: "content_filter"` and
`"tiergate_filter": "profanity"`, the usage chunk if asked for, `[DONE]`; `filtered` says
so and the relay closes the upstream as for a guard cut. With both on, the filter judges a
chunk first; whichever ends the stream first ends it, once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from tiergate_gateway.content_filter import ContentFilter
from tiergate_gateway.content_filter.relay import FILTER_FIELD, ChunkFilter
from tiergate_gateway.guard import AnswerGuard, GuardSettings, Trip
from tiergate_gateway.upstream.conform import (
    GUARD_FIELD,
    check_chunk,
    decode_chunk,
    drop_null_fingerprint,
    repair_chunk,
)
from tiergate_gateway.upstream.sse_events import (
    DONE_EVENT,
    ERROR_START,
    MAX_PENDING_BYTES,
    ChoiceLike,
    ChunkLike,
    SseMalformed,
    SseOverflow,
    SseProtocolError,
    error_event,
    field_value,
    frame,
    model_field,
    rewrite_model,
    upstream_error,
)
from tiergate_proto.openai import ChatCompletionChunk, Usage

__all__ = [
    "DONE_EVENT",
    "MAX_PENDING_BYTES",
    "SseMalformed",
    "SseOverflow",
    "SseProtocolError",
    "SseTransformer",
    "error_event",
    "model_field",
    "rewrite_model",
]


_encoder = msgspec.json.Encoder()


class SseTransformer:
    """Stateful per-stream transformer; see the module docstring.

    `keep_extras`: top-level fields of the engine's chunks to pass on (the backend's
    `keep_extras`); every other field OpenAI does not define is dropped.
    """

    __slots__ = (
        "_alias",
        "_buffer",
        "_client_wants_usage",
        "_deltas",
        "_engine_field",
        "_engine_model",
        "_filter",
        "_guard",
        "_guards",
        "_keep_extras",
        "_last_chunk",
        "_model_field",
        "_prompt_estimate",
        "_scanned",
        "cut",
        "filtered",
        "first_token_at",
        "saw_done",
        "saw_error",
        "saw_finish",
        "usage",
    )

    def __init__(
        self,
        alias: str,
        *,
        client_wants_usage: bool,
        keep_extras: frozenset[str] = frozenset(),
        guard: GuardSettings | None = None,
        prompt_estimate: int = 0,
        content_filter: ContentFilter | None = None,
    ) -> None:
        self._alias = alias
        self._model_field = model_field(alias)
        self._engine_model: str | None = None
        self._engine_field = b""
        self._client_wants_usage = client_wants_usage
        self._keep_extras = keep_extras
        self._buffer = bytearray()
        self._scanned = 0
        self.usage: Usage | None = None
        self.saw_done = False
        self.saw_finish = False
        self.saw_error = False
        self.first_token_at: float | None = None
        self._guard = guard if guard is not None and guard.enabled else None
        self._guards: dict[int, AnswerGuard] = {}
        self._deltas = 0
        self._prompt_estimate = prompt_estimate
        self.cut: Trip | None = None
        """Set when the runaway guard ended the stream (see the module docstring)."""
        self._filter = (
            ChunkFilter(content_filter.words, content_filter.batch)
            if content_filter is not None and content_filter.output
            else None
        )
        self._last_chunk: ChatCompletionChunk | None = None
        self.filtered = False
        """Set when the content filter ended the stream (see the module docstring)."""

    def tokens(self) -> tuple[int, int] | None:
        """(prompt, completion) tokens of the stream's usage chunk, if it had one."""
        usage = self.usage
        return None if usage is None else (usage.prompt_tokens, usage.completion_tokens)

    def error(self, message: str, code: str) -> bytes:
        """The error event that ends a broken stream."""
        return error_event(message, code=code)

    def done(self) -> bytes:
        """`data: [DONE]`."""
        return DONE_EVENT

    def feed(self, chunk: bytes) -> bytes:
        """Consume upstream bytes; return complete, transformed events to send now.

        Raises SseMalformed for an event that is not a chunk (or an error event), and
        SseOverflow when more than MAX_PENDING_BYTES arrive without ending an event (an
        upstream that never sends a blank line must not grow our memory without bound). Both
        carry the events of this read that came before the fault (`head`); the stream cannot
        go on after either.
        """
        if self.ended():
            return b""  # the guard or the filter ended it: nothing more of the engine's
        buffer = self._buffer
        if (
            not buffer
            and chunk.endswith(b"\n\n")
            and chunk.find(b"\n\n") == len(chunk) - 2
            and b"\r" not in chunk
        ):
            # The usual read: exactly one whole event, nothing held back.
            return self._event(chunk[:-2])
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        if buffer.endswith(b"\r") and chunk.startswith(b"\n"):
            del buffer[-1:]  # a CRLF split across two reads
        buffer += chunk
        out: list[bytes] = []
        start = 0
        # Resume where the last search stopped (one byte back for a split "\n\n").
        position = self._scanned
        while True:
            end = buffer.find(b"\n\n", position)
            if end < 0:
                break
            try:
                event = self._event(bytes(buffer[start:end]))
            except SseMalformed as exc:
                exc.head = b"".join(out)
                raise
            if event:
                out.append(event)
            if self.ended():  # the guard or the filter ended the answer: nothing after it
                buffer.clear()
                self._scanned = 0
                return b"".join(out)
            start = position = end + 2
        del buffer[:start]
        self._scanned = max(len(buffer) - 1, 0)
        if len(buffer) > MAX_PENDING_BYTES:
            raise SseOverflow(f"an event grew past {MAX_PENDING_BYTES} bytes", b"".join(out))
        return b"".join(out)

    def ended(self) -> bool:
        """Whether the guard or the content filter ended the stream."""
        return self.cut is not None or self.filtered

    def _done_event(self) -> bytes:
        """The engine's `[DONE]`: ours, after any text the filter still holds."""
        if self._filter is not None and self._filter.open_choices():
            return self._flush_filter()
        self.saw_done = True
        return DONE_EVENT

    def pending(self) -> bool:
        """True if an incomplete event is buffered (the upstream stopped mid-event)."""
        return bool(self._buffer.strip())

    def _event(self, raw: bytes) -> bytes:
        raw = raw.strip(b"\n")  # runs of blank lines between events
        if not raw:
            return b""
        if raw.startswith(b"data:") and b"\n" not in raw:  # the usual case: one data line
            return self._data(field_value(raw), b"")
        data: list[bytes] = []
        other: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:") or line == b"data":
                data.append(field_value(line))
            else:
                other.append(line)  # id:, event:, retry: and comments, relayed as they are
        if not data:
            return raw + b"\n\n"
        return self._data(b"\n".join(data), b"".join(line + b"\n" for line in other))

    def _data(self, payload: bytes, prefix: bytes) -> bytes:
        if payload == b"[DONE]":
            return prefix + self._done_event()
        chunk = check_chunk(payload)
        if chunk is None:
            return self._repair(payload, prefix)
        if chunk.system_fingerprint is None:
            fixed = drop_null_fingerprint(payload)
            if fixed is None:
                return self._repair(payload, prefix)
            payload = fixed
        # The hot path: a conformant chunk goes out as the engine wrote it.
        if chunk.usage is not None:
            self.usage = chunk.counted_usage()
            if not chunk.choices and not self._client_wants_usage:
                return b""
        if chunk.choices:
            self._note(chunk.choices)
            if self._filter is not None:
                return prefix + self._filtered(decode_chunk(payload), payload)
        if chunk.model != self._alias:
            payload = self._rename(payload, chunk.model)
        tripped = self._guard is not None and chunk.choices and self._watch(chunk.choices)
        return prefix + frame(payload) + (self._cut_tail(chunk) if tripped else b"")

    def _repair(self, payload: bytes, prefix: bytes) -> bytes:
        """A chunk that failed the strict check: re-encode it, or raise SseMalformed."""
        if ERROR_START.match(payload) is not None:
            self.saw_error = True
            return prefix + upstream_error(payload)
        try:
            chunk = decode_chunk(payload)
        except msgspec.DecodeError as exc:
            raise SseMalformed(f"not a chat completion chunk: {exc}") from exc
        if chunk.usage is not None:
            self.usage = chunk.usage
            if not chunk.choices and not self._client_wants_usage:
                return b""
        if chunk.choices:
            self._note(chunk.choices)
            if self._filter is not None:
                return prefix + self._filtered(chunk, payload)
        event = prefix + frame(repair_chunk(chunk, self._alias, payload, self._keep_extras))
        if self._guard is not None and chunk.choices and self._watch(chunk.choices):
            return event + self._cut_tail(chunk)
        return event

    def _note(self, choices: Sequence[ChoiceLike]) -> None:
        """Note the first token (any generated text, reasoning or call) and a finish."""
        for choice in choices:
            if self.first_token_at is None:
                delta = choice.delta
                if (
                    delta.content
                    or delta.reasoning_content
                    or delta.tool_calls
                    or delta.refusal
                    or delta.function_call
                ):
                    self.first_token_at = time.perf_counter()
            if choice.finish_reason is not None:
                self.saw_finish = True

    def _watch(self, choices: Sequence[ChoiceLike]) -> bool:
        """Feed the content deltas to the guards; True when one trips (the stream ends)."""
        settings = self._guard
        assert settings is not None
        for choice in choices:
            content = choice.delta.content
            if not content:
                continue
            if self._filter is None:  # else counted by _filtered
                self._deltas += 1
            guard = self._guards.get(choice.index)
            if guard is None:
                guard = self._guards[choice.index] = AnswerGuard(settings)
            trip = guard.feed(content)
            if trip is not None and choice.finish_reason is None:
                self.cut = trip
                return True
        return False

    def _filtered(self, chunk: ChatCompletionChunk, source: bytes) -> bytes:
        """A chunk through the content filter (then the guard): the events to send."""
        content_filter = self._filter
        assert content_filter is not None
        self._last_chunk = chunk
        self._deltas += sum(1 for choice in chunk.choices if choice.delta.content)
        out = content_filter.apply(chunk)
        event = (
            b"" if out is None else frame(repair_chunk(out, self._alias, source, self._keep_extras))
        )
        if content_filter.hit:
            self.filtered = True
            return event + self._cut_tail(
                chunk, b"content_filter", FILTER_FIELD, content_filter.open_choices()
            )
        if self._guard is not None and self._watch(chunk.choices):
            return event + self._cut_tail(chunk)
        return event

    def _flush_filter(self) -> bytes:
        """`[DONE]` came while the filter held text back: that text (checked), then the end."""
        content_filter = self._filter
        assert content_filter is not None
        last = self._last_chunk
        assert last is not None  # a choice is open: a chunk came
        choices = content_filter.flush()
        event = b""
        if choices:
            chunk = ChatCompletionChunk(
                id=last.id, created=last.created, model=self._alias, choices=choices
            )
            event = frame(repair_chunk(chunk, self._alias))
        if content_filter.hit:
            self.filtered = True
            return event + self._cut_tail(
                last, b"content_filter", FILTER_FIELD, content_filter.open_choices()
            )
        self.saw_done = True
        return event + DONE_EVENT

    def _cut_tail(
        self,
        chunk: ChunkLike,
        finish: bytes = b"length",
        field: bytes = GUARD_FIELD,
        indices: Sequence[int] | None = None,
    ) -> bytes:
        """The events that end a stream the guard (or the filter) cut: a `length` (or
        `content_filter`) finish for every open choice, the usage chunk if asked for,
        `[DONE]`."""
        head = (
            b'{"id":' + _encoder.encode(chunk.id) + b',"object":"chat.completion.chunk"'
            b',"created":' + str(chunk.created).encode() + b"," + self._model_field
        )
        finishes = b",".join(
            b'{"index":%d,"delta":{},"logprobs":null,"finish_reason":"%s"}' % (index, finish)
            for index in (sorted(self._guards) if indices is None else indices)
        )
        events = [frame(head + b',"choices":[' + finishes + b"]" + field + b"}")]
        completion = self._deltas
        prompt = self.usage.prompt_tokens if self.usage is not None else self._prompt_estimate
        self.usage = Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        if self._client_wants_usage:
            events.append(
                frame(head + b',"choices":[],"usage":' + _encoder.encode(self.usage) + b"}")
            )
        events.append(DONE_EVENT)
        self.saw_finish = self.saw_done = True
        return b"".join(events)

    def _rename(self, payload: bytes, engine_model: str) -> bytes:
        """`payload` with the public alias for `engine_model`.

        In a chunk that passed the strict check the only `"model":` key is the top-level one
        (every nested object is closed), so the compact spelling is replaced in place; other
        spellings (`"model": "x"`, escapes) go through the regular expression.
        """
        if engine_model != self._engine_model:
            self._engine_model = engine_model
            self._engine_field = model_field(engine_model)
        field = self._engine_field
        at = payload.find(field)
        if at < 0:
            return rewrite_model(payload, self._model_field)
        return payload[:at] + self._model_field + payload[at + len(field) :]
