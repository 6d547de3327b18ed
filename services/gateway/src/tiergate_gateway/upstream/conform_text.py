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

from tiergate_gateway.upstream.conform import with_extras
from tiergate_gateway.upstream.sse import SseMalformed, SseTransformer
from tiergate_proto.openai import (
    TextCompletion,
    TextCompletionChoice,
    TextCompletionLogprobs,
    Usage,
)
from tiergate_proto.openai.completion import TokenLogprob
from tiergate_proto.openai.text_completion import TEXT_FINISH_REASONS

__all__ = ["TextSseTransformer", "conform_text_chunk", "conform_text_completion"]

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
    completion = _conform(_decoder.decode(body), alias, body, whole=True)
    return _encode(completion, body, keep_extras), completion.usage


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

    __slots__ = ()

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
        return prefix + b"data: " + body + b"\n\n"
