"""Answering one legacy `/v1/completions` request, with the same `fake` options as chat."""

from __future__ import annotations

from typing import Annotated

import msgspec

from tiergate_testkit.fake_engine import responses
from tiergate_testkit.fake_engine.answer import Ids, Stream, answer
from tiergate_testkit.fake_engine.behaviour import Behaviour
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest
from tiergate_testkit.fake_engine.request import Answer, FinishReason, count_tokens
from tiergate_testkit.fake_engine.server import Exchange

__all__ = ["TEXT", "TextRequest", "answer_text"]

_TokenCap = Annotated[int, msgspec.Meta(ge=0)]


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class TextRequest(msgspec.Struct, kw_only=True):
    """The fields of `POST /v1/completions` the fake acts on; like an engine, it tolerates
    every other field.

    The answer is one choice (index 0) however many prompts there are; `prompt_tokens`
    counts the words of every prompt string and every token id. `fake.tool_call` is
    rejected: a text completion cannot call a function.
    """

    model: str | None = None
    prompt: str | list[str | int | list[int]] | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: _TokenCap | None = None
    fake: Behaviour = msgspec.field(default_factory=Behaviour)

    def __post_init__(self) -> None:
        if self.fake.tool_call is not None:
            raise ValueError("`fake.tool_call` is for chat completions")

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_cap(self) -> int | None:
        return self.max_tokens

    @property
    def prompt_token_count(self) -> int:
        prompt = self.prompt
        items = [prompt] if isinstance(prompt, str) else prompt or []
        return sum(count_tokens(item) for item in items)


class _TextShape:
    """`text_completion`, whole and streamed (the same object): text chunks, no role chunk."""

    id_prefix = "cmpl-fake-"

    def whole(self, ids: Ids, answer: Answer, usage: responses.Usage) -> bytes:
        return responses.text_completion(
            id=ids.id,
            model=ids.model,
            created=ids.created,
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=usage,
        )

    def opening(self, ids: Ids, answer: Answer) -> list[bytes]:
        return []

    def piece(self, ids: Ids, answer: Answer, text: str) -> bytes:
        return responses.text_chunk(*ids, text)

    def final(self, ids: Ids, finish_reason: FinishReason) -> bytes:
        return responses.text_final_chunk(*ids, finish_reason)

    def usage(self, ids: Ids, usage: responses.Usage) -> bytes:
        return responses.text_usage_chunk(*ids, usage)


TEXT = _TextShape()
"""The legacy text completion `Shape`."""


async def answer_text(
    exchange: Exchange, record: RecordedRequest, request: TextRequest, default_model: str
) -> Outcome:
    """Answer `request` as its `fake` options say (see `answer_chat`); the outcome."""
    stream = Stream(exchange, record, request, TEXT, default_model)
    return await answer(exchange, record, request.fake, stream.send)
