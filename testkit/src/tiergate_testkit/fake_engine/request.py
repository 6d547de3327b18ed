"""The chat completion request as the fake reads it, and the answer it plans for any request."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, Protocol

import msgspec

from tiergate_testkit.fake_engine.behaviour import Behaviour, ToolCall

__all__ = [
    "Answer",
    "ChatRequest",
    "FinishReason",
    "Plannable",
    "count_tokens",
    "plan_answer",
    "prompt_tokens",
]

# Deterministic default answer; chunk i is word i of this sentence, cycling.
_SENTENCE = "The quick brown fox jumps over the lazy dog."
_WORDS = _SENTENCE.split()
_DEFAULT_CHUNKS = 5

_TokenCap = Annotated[int, msgspec.Meta(ge=0)]


class _ContentPart(msgspec.Struct):
    """One part of a multi-part message content; only text parts count."""

    type: str = ""
    text: str | None = None


class _Message(msgspec.Struct):
    role: str = ""
    content: str | list[_ContentPart] | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct, kw_only=True):
    """The fields of `POST /v1/chat/completions` the fake acts on.

    Like a real engine it tolerates every other OpenAI field; only the nested
    `fake` options reject unknown fields (see `Behaviour`).
    """

    model: str | None = None
    messages: list[_Message] = []
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: _TokenCap | None = None
    max_completion_tokens: _TokenCap | None = None
    fake: Behaviour = msgspec.field(default_factory=Behaviour)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_cap(self) -> int | None:
        """The tighter of `max_tokens` and `max_completion_tokens`, if either is set."""
        caps = [c for c in (self.max_tokens, self.max_completion_tokens) if c is not None]
        return min(caps) if caps else None

    @property
    def prompt_token_count(self) -> int:
        return prompt_tokens(self)


class Plannable(Protocol):
    """What `plan_answer` reads of a request (chat or legacy completion)."""

    @property
    def fake(self) -> Behaviour: ...
    @property
    def token_cap(self) -> int | None: ...
    @property
    def prompt_token_count(self) -> int:
        """A stable stand-in for the prompt's token count."""
        ...


FinishReason = Literal["stop", "length", "tool_calls"]


class Answer(msgspec.Struct, frozen=True):
    """What the fake will say: chunks whose concatenation is the text.

    With `tool_call` the chunks are pieces of the call's arguments, and the text is the
    arguments as sent (cut short by a token cap).
    """

    chunks: tuple[str, ...]
    finish_reason: FinishReason
    prompt_tokens: int
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def prompt_tokens(request: ChatRequest) -> int:
    """Word count of all message text: a stable stand-in for a tokenizer."""
    count = 0
    for message in request.messages:
        if isinstance(message.content, str):
            count += len(message.content.split())
        elif message.content is not None:
            count += sum(len((p.text or "").split()) for p in message.content)
    return count


def count_tokens(item: str | int | list[int]) -> int:
    """Words of a string, 1 for a token id, the length of a token array: a stand-in
    tokenizer for legacy prompts and embedding inputs."""
    if isinstance(item, str):
        return len(item.split())
    return 1 if isinstance(item, int) else len(item)


def _split(content: str) -> tuple[str, ...]:
    # Each chunk keeps the whitespace before its word, so "".join(chunks) is the
    # content (less trailing whitespace), as real token streams concatenate.
    return tuple(re.findall(r"\s*\S+", content))


def _default_chunks(count: int) -> tuple[str, ...]:
    words = (_WORDS[i % len(_WORDS)] for i in range(count))
    return tuple(word if i == 0 else f" {word}" for i, word in enumerate(words))


def _pieces(text: str, count: int) -> tuple[str, ...]:
    """`text` in at most `count` consecutive pieces of near-equal length (one if empty)."""
    if not text:
        return ("",)
    size = math.ceil(len(text) / count)
    return tuple(text[i : i + size] for i in range(0, len(text), size))


def plan_answer(request: Plannable) -> Answer:
    """The answer for `request`: its `fake` shaping, capped by the token limits."""
    options = request.fake
    finish_reason: FinishReason = "stop"
    if options.tool_call is not None:
        chunks = _pieces(options.tool_call.arguments, options.tool_call.pieces)
        finish_reason = "tool_calls"
    elif options.content is not None:
        chunks = _split(options.content)
    elif options.pieces is not None:
        chunks = tuple(options.pieces)
    else:
        count = _DEFAULT_CHUNKS if options.chunks is None else options.chunks
        chunks = _default_chunks(count)
    cap = request.token_cap
    if cap is not None and len(chunks) > cap:
        chunks = chunks[:cap]
        finish_reason = "length"
    return Answer(
        chunks=chunks,
        finish_reason=finish_reason,
        prompt_tokens=request.prompt_token_count,
        tool_call=options.tool_call,
    )
