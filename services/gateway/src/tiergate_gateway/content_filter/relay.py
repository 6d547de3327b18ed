"""The output filter over a chat stream's chunks: each choice's content through a
`ChoiceFilter`, the chunk rebuilt with what may be released (`upstream/sse.py` encodes it).

Only `delta.content` is filtered; every other field of a delta (role, reasoning, tool calls,
refusal) and of a choice (logprobs) is kept as the engine sent it. A choice whose delta is
left with nothing is dropped from the chunk, and a chunk left with no choice (and no usage)
is not sent. At a choice's `finish_reason` its held-back text is released first (checked).
"""

from __future__ import annotations

import msgspec

from tiergate_gateway.content_filter.stream import ChoiceFilter
from tiergate_gateway.content_filter.words import WordFilter
from tiergate_proto.openai import ChatCompletionChunk, ChunkChoice, Delta

__all__ = ["FILTER_FIELD", "ChunkFilter"]

FILTER_FIELD = b',"tiergate_filter":"profanity"'
"""Added to the last chunk of a stream (or to an answer) the content filter ended."""


def _empty(choice: ChunkChoice) -> bool:
    delta = choice.delta
    return (
        choice.finish_reason is None
        and choice.logprobs is None
        and not delta.content
        and delta.role is None
        and delta.reasoning_content is None
        and delta.refusal is None
        and delta.tool_calls is None
        and delta.function_call is None
        and delta.audio is None
    )


class ChunkFilter:
    """One stream's filter: `apply(chunk)`; `hit` once a choice held a flagged word."""

    __slots__ = ("_batch", "_choices", "_words", "finished", "hit")

    def __init__(self, words: WordFilter, batch: int = 0) -> None:
        self._words = words
        self._batch = batch
        self._choices: dict[int, ChoiceFilter] = {}
        self.finished: set[int] = set()
        self.hit = False

    def open_choices(self) -> list[int]:
        """The indices of choices seen and not finished (those a cut ends)."""
        return sorted(set(self._choices) - self.finished)

    def apply(self, chunk: ChatCompletionChunk) -> ChatCompletionChunk | None:
        """`chunk` with the content that may go out now; None: nothing to send.

        After a hit, the chunk returned holds what came before the flagged word and no
        finish: the caller ends the stream (`finish_reason: "content_filter"`)."""
        choices: list[ChunkChoice] = []
        for choice in chunk.choices:
            if self.hit:
                break
            choices.append(self._choice(choice))
        kept = [choice for choice in choices if not _empty(choice)]
        if not kept and chunk.usage is None:
            return None
        return msgspec.structs.replace(chunk, choices=kept)

    def choice(self, index: int) -> ChoiceFilter:
        """The filter of choice `index` (made at its first chunk)."""
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = ChoiceFilter(self._words, self._batch)
        return state

    def _choice(self, choice: ChunkChoice) -> ChunkChoice:
        state = self.choice(choice.index)
        content = choice.delta.content
        released = state.feed(content) if content else ""
        finish = choice.finish_reason
        if finish is not None and not state.hit:
            released += state.flush()
        if state.hit:
            self.hit = True
            finish = None  # the cut's last chunk says content_filter
        elif finish is not None:
            self.finished.add(choice.index)
        if released == (content or "") and finish == choice.finish_reason:
            return choice
        delta = msgspec.structs.replace(
            choice.delta, content=released if released or content == "" else None
        )
        return msgspec.structs.replace(choice, delta=delta, finish_reason=finish)

    def flush(self) -> list[ChunkChoice]:
        """At the stream's end (`[DONE]` before a finish): the held-back text of the open
        choices, checked, as choices to send; after a hit, the text before it."""
        out = []
        for index in self.open_choices():
            state = self._choices[index]
            text = state.flush()
            if state.hit:
                self.hit = True
            if text:
                out.append(ChunkChoice(index=index, delta=Delta(content=text)))
            if self.hit:
                break
        return out
