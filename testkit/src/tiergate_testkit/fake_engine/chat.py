"""Answering one chat completion: normal, streamed, paced, or with the requested fault."""

from __future__ import annotations

from tiergate_testkit.fake_engine import responses
from tiergate_testkit.fake_engine.answer import Ids, Stream, answer
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest
from tiergate_testkit.fake_engine.request import Answer, ChatRequest, FinishReason
from tiergate_testkit.fake_engine.server import Exchange

__all__ = ["CHAT", "answer_chat"]


class _ChatShape:
    """`chat.completion` and its chunks: a role chunk first, text or a function call."""

    id_prefix = "chatcmpl-fake-"

    def whole(self, ids: Ids, answer: Answer, usage: responses.Usage) -> bytes:
        call = answer.tool_call
        return responses.completion(
            id=ids.id,
            model=ids.model,
            created=ids.created,
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=usage,
            tool_call=None if call is None else (call.id, call.name),
        )

    def opening(self, ids: Ids, answer: Answer) -> list[bytes]:
        # With `tool_call`: after the role chunk the call's first delta (id, type, name),
        # then its arguments in pieces instead of content chunks.
        events = [responses.role_chunk(*ids)]
        call = answer.tool_call
        if call is not None:
            events.append(responses.tool_call_start_chunk(*ids, call.id, call.name))
        return events

    def piece(self, ids: Ids, answer: Answer, text: str) -> bytes:
        if answer.tool_call is None:
            return responses.content_chunk(*ids, text)
        return responses.tool_arguments_chunk(*ids, text)

    def final(self, ids: Ids, finish_reason: FinishReason) -> bytes:
        return responses.final_chunk(*ids, finish_reason)

    def usage(self, ids: Ids, usage: responses.Usage) -> bytes:
        return responses.usage_chunk(*ids, usage)


CHAT = _ChatShape()
"""The chat completion `Shape`."""


async def answer_chat(
    exchange: Exchange, record: RecordedRequest, request: ChatRequest, default_model: str
) -> Outcome:
    """Answer `request` as its `fake` options say; return the outcome to record.

    Raises ClientGone when the client goes away first; `record.chunks_sent` then
    says how far the answer got.
    """
    stream = Stream(exchange, record, request, CHAT, default_model)
    return await answer(exchange, record, request.fake, stream.send)
