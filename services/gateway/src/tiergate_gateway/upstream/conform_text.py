"""Engine answers to legacy `/v1/completions` made OpenAI's `text_completion`, whole or streamed.

A whole answer (`conform_text_completion`) and every stream chunk (`TextSseTransformer`) is
decoded into the proto `TextCompletion` and encoded again: `model` is the public alias, every
key OpenAI requires is there (`choices[].logprobs` and `finish_reason`, `null` when absent),
and what engines add (llama.cpp's `timings`, vLLM's `stop_reason`, `prompt_logprobs`,
`"usage": null`, `"system_fingerprint": null`) is dropped, except the top-level fields a
backend keeps (`keep_extras`). `finish_reason` is one of OpenAI's three (`stop`, `length`,
`content_filter`): an engine's own value (vLLM's `abort`) becomes `stop`, and a whole answer
without one says `stop`; in a stream chunk `null` means "not finished yet" and stays.

llama.cpp answers `/v1/completions` logprobs in the chat shape (`{"content": [{"token",
"logprob", "top_logprobs": [...]}]}`), which legacy clients cannot read: they are rewritten to
the legacy parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as token → logprob).
`text_offset` is left out: it counts from the start of the prompt, which an answer does not
carry. A logprobs object in neither shape becomes `null`.

Streams reuse `SseTransformer` (`upstream/sse.py`) for everything but the chunk itself: SSE
framing and re-framing, `[DONE]`, engine error events as OpenAI's envelope, the
`MAX_PENDING_BYTES` bound, usage capture and the usage-only chunk dropped when the client did
not ask for it. An event that is not a text completion chunk raises `SseMalformed`.
"""

from __future__ import annotations

import time

import msgspec

from tiergate_gateway.content_filter import WordFilter, cut_text
from tiergate_gateway.content_filter.relay import FILTER_FIELD
from tiergate_gateway.upstream.conform import with_extras
from tiergate_gateway.upstream.sse import DONE_EVENT, SseMalformed, SseTransformer, model_field
from tiergate_proto.openai import (
    TextCompletion,
    TextCompletionChoice,
    TextCompletionLogprobs,
    Usage,
)
from tiergate_proto.openai.completion import TokenLogprob
from tiergate_proto.openai.text_completion import TEXT_FINISH_REASONS

__all__ = [
    "TextSseTransformer",
    "conform_text_checked",
    "conform_text_chunk",
    "conform_text_completion",
]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(TextCompletion)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_NO_LEGACY_KEYS = TextCompletionLogprobs()


# --- llama.cpp's chat-shaped logprobs, read from the same body ---------------------------------


class _ChatLogprobs(msgspec.Struct, gc=False):
    content: list[TokenLogprob] | None = None


class _ChoiceLogprobs(msgspec.Struct, gc=False):
    logprobs: _ChatLogprobs | None = None


class _LogprobsView(msgspec.Struct, gc=False):
    choices: list[_ChoiceLogprobs] = []


_view_decoder = msgspec.json.Decoder(_LogprobsView)


def _legacy(tokens: list[TokenLogprob]) -> TextCompletionLogprobs:
    return TextCompletionLogprobs(
        tokens=[token.token for token in tokens],
        token_logprobs=[token.logprob for token in tokens],
        top_logprobs=[{top.token: top.logprob for top in token.top_logprobs} for token in tokens],
    )


def _with_legacy_logprobs(
    choices: list[TextCompletionChoice], source: bytes
) -> list[TextCompletionChoice]:
    """`choices` whose logprobs had no legacy key, rewritten from the chat shape in `source`."""
    try:
        view = _view_decoder.decode(source).choices
    except msgspec.DecodeError:
        view = []
    fixed = []
    for position, choice in enumerate(choices):
        if choice.logprobs != _NO_LEGACY_KEYS:
            fixed.append(choice)
            continue
        seen = view[position].logprobs if position < len(view) else None
        content = seen.content if seen is not None else None
        logprobs = _legacy(content) if content is not None else None
        fixed.append(msgspec.structs.replace(choice, logprobs=logprobs))
    return fixed


# --- one answer or chunk ----------------------------------------------------------------------


def _conform(
    completion: TextCompletion, alias: str, source: bytes, *, whole: bool
) -> TextCompletion:
    choices = completion.choices
    if any(choice.logprobs == _NO_LEGACY_KEYS for choice in choices):
        choices = _with_legacy_logprobs(choices, source)
    return msgspec.structs.replace(
        completion, model=alias, choices=[_finish(choice, whole=whole) for choice in choices]
    )


def _finish(choice: TextCompletionChoice, *, whole: bool) -> TextCompletionChoice:
    reason = choice.finish_reason
    if reason in TEXT_FINISH_REASONS or (reason is None and not whole):
        return choice
    # An engine's own value (vLLM's `abort`), or a whole answer that names none: strict
    # clients reject anything outside OpenAI's list, and the answer did stop.
    return msgspec.structs.replace(choice, finish_reason="stop")


def _encode(completion: TextCompletion, source: bytes, keep_extras: frozenset[str]) -> bytes:
    body = _encoder.encode(completion)
    return with_extras(body, source, keep_extras) if keep_extras else body


def conform_text_completion(
    body: bytes, alias: str, keep_extras: frozenset[str] = frozenset()
) -> tuple[bytes, Usage | None]:
    """The engine's whole `text_completion` as we send it, and its usage.

    Raises msgspec.DecodeError when `body` is not a text completion (not JSON, a required
    field missing or of the wrong type, another `object`): it cannot be relayed.
    """
    out, usage, _ = conform_text_checked(body, alias, keep_extras)
    return out, usage


def conform_text_checked(
    body: bytes,
    alias: str,
    keep_extras: frozenset[str] = frozenset(),
    words: WordFilter | None = None,
) -> tuple[bytes, Usage | None, bool]:
    """`conform_text_completion` with the content filter (`words`) over each choice's
    `text`: cut before a flagged word, `finish_reason: "content_filter"`, the answer marked
    `"tiergate_filter": "profanity"`. The last value says whether a choice was cut."""
    completion = _conform(_decoder.decode(body), alias, body, whole=True)
    filtered = False
    if words is not None:
        choices = []
        for choice in completion.choices:
            cut = cut_text(words, choice.text) if choice.text else None
            if cut is None:
                choices.append(choice)
                continue
            filtered = True
            choices.append(
                msgspec.structs.replace(choice, text=cut, finish_reason="content_filter")
            )
        completion = msgspec.structs.replace(completion, choices=choices)
    out = _encode(completion, body, keep_extras)
    if filtered:
        out = out[:-1] + FILTER_FIELD + b"}"
    return out, completion.usage, filtered


def conform_text_chunk(
    payload: bytes, alias: str, keep_extras: frozenset[str] = frozenset()
) -> tuple[TextCompletion, bytes]:
    """One stream chunk's `data` as we send it: the conformed chunk and its encoding.

    Raises msgspec.DecodeError when `payload` is not a text completion chunk.
    """
    chunk = _conform(_decoder.decode(payload), alias, payload, whole=False)
    return chunk, _encode(chunk, payload, keep_extras)


# --- streams ----------------------------------------------------------------------------------


def _is_error_event(payload: bytes) -> bool:
    try:
        return "error" in _fields_decoder.decode(payload)
    except msgspec.DecodeError:
        return False


class TextSseTransformer(SseTransformer):
    """`SseTransformer` for a `/v1/completions` stream; the same interface and attributes.

    `feed(chunk) -> bytes`, `pending()`, `usage`, `first_token_at` (the first non-empty
    `text`), `saw_done`, `saw_finish`, `saw_error`, and `SseMalformed`/`SseOverflow` with the
    events before the fault in `head`, all behave as they do for chat. Only the chunk
    differs: every chunk is conformed and encoded again (see the module docstring); none is
    relayed as the engine wrote it.
    """

    __slots__ = ("_last_text",)
    _last_text: TextCompletion
    """The last chunk filtered (the id and time of the chunks the filter adds)."""

    def _data(self, payload: bytes, prefix: bytes) -> bytes:
        if payload == b"[DONE]":
            return super()._data(payload, prefix)
        try:
            chunk, body = conform_text_chunk(payload, self._alias, self._keep_extras)
        except msgspec.DecodeError as exc:
            if _is_error_event(payload):  # the chat transformer renders OpenAI's envelope
                return super()._data(payload, prefix)
            raise SseMalformed(f"not a text completion chunk: {exc}") from exc
        if chunk.usage is not None:
            self.usage = chunk.usage
            if not chunk.choices and not self._client_wants_usage:
                return b""
        for choice in chunk.choices:
            if self.first_token_at is None and choice.text:
                self.first_token_at = time.perf_counter()
            if choice.finish_reason is not None:
                self.saw_finish = True
        if self._filter is not None and chunk.choices:
            return prefix + self._filter_text(chunk, payload)
        return prefix + b"data: " + body + b"\n\n"

    def _filter_text(self, chunk: TextCompletion, payload: bytes) -> bytes:
        """A chunk's `text`s through the content filter (as `SseTransformer._filtered`)."""
        content_filter = self._filter
        assert content_filter is not None
        self._last_text = chunk
        choices = []
        self._deltas += sum(1 for choice in chunk.choices if choice.text)
        for choice in chunk.choices:
            state = content_filter.choice(choice.index)
            released = state.feed(choice.text) if choice.text else ""
            finish = choice.finish_reason
            if finish is not None and not state.hit:
                released += state.flush()
            if state.hit:
                content_filter.hit = True
                choices.append(msgspec.structs.replace(choice, text=released, finish_reason=None))
                break
            if finish is not None:
                content_filter.finished.add(choice.index)
            choices.append(msgspec.structs.replace(choice, text=released))
        out = msgspec.structs.replace(chunk, choices=choices)
        event = b"data: " + _encode(out, payload, self._keep_extras) + b"\n\n"
        return event + self._text_tail(chunk) if content_filter.hit else event

    def _flush_filter(self) -> bytes:
        """`[DONE]` came while the filter held text back: that text (checked), then the end."""
        content_filter = self._filter
        assert content_filter is not None
        last: TextCompletion = self._last_text
        choices = [
            TextCompletionChoice(text=choice.delta.content or "", index=choice.index)
            for choice in content_filter.flush()
        ]
        out = msgspec.structs.replace(last, choices=choices, usage=None)
        event = b"data: " + _encoder.encode(out) + b"\n\n" if choices else b""
        if content_filter.hit:
            return event + self._text_tail(last)
        self.saw_done = True
        return event + DONE_EVENT

    def _text_tail(self, chunk: TextCompletion) -> bytes:
        """The events that end a stream the filter cut (as `SseTransformer._cut_tail`)."""
        content_filter = self._filter
        assert content_filter is not None
        self.filtered = self.saw_finish = self.saw_done = True
        head = (
            b'{"id":' + msgspec.json.encode(chunk.id) + b',"object":"text_completion"'
            b',"created":' + str(chunk.created).encode() + b"," + model_field(self._alias)
        )
        finishes = b",".join(
            b'{"text":"","index":%d,"logprobs":null,"finish_reason":"content_filter"}' % index
            for index in content_filter.open_choices()
        )
        last = head + b',"choices":[' + finishes + b"]" + FILTER_FIELD + b"}"
        events = [_frame_text(last)]
        if self.usage is None:  # the engine's count never comes: ours, as for a guard cut
            prompt, completion = self._prompt_estimate, self._deltas
            self.usage = Usage(
                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
            )
        if self._client_wants_usage:
            usage = msgspec.json.encode(self.usage)
            events.append(_frame_text(head + b',"choices":[],"usage":' + usage + b"}"))
        events.append(DONE_EVENT)
        return b"".join(events)


def _frame_text(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"
