"""Chat completion chunks → Responses stream events, as OpenAI frames them (`event:` + `data:`).

`ResponseStreamTranslator` is fed the engine's chunks (already conformed) one at a time and
returns the bytes to send now. The events, each with a `sequence_number` one above the last:

    response.created, response.in_progress                       start() (or the first feed)
    reasoning:  output_item.added · content_part.added · reasoning_text.delta …
    text:       output_item.added · content_part.added · output_text.delta …   (refusal.delta
                for a refusal part)
    a call:     output_item.added · function_call_arguments.delta …
    closing an item: …text.done · content_part.done · output_item.done, or
                function_call_arguments.done · output_item.done
    response.completed | response.incomplete                     finish(usage)
    error, response.failed                                       fail(message): a broken stream

One message or reasoning item is open at a time (reasoning after text, or text after
reasoning, starts a new item); tool calls stay open until the end, so an engine that
interleaves the deltas of parallel calls is still followed. The final event carries the whole
`Response` with usage, the same object `translate.from_chat` builds for the same answer
(except that items closed before the end stay `completed` in an incomplete response).
Only choice 0 is followed (the Responses API has no `n`).
"""

from __future__ import annotations

import time

import msgspec

from tiergate_gateway.responses import ids
from tiergate_gateway.responses.drafts import (
    CallDraft,
    MessageDraft,
    PartKind,
    ReasoningDraft,
    content_part,
)
from tiergate_gateway.responses.output import (
    empty_message,
    failed,
    finished,
    item_status,
    response_shell,
    status_of,
)
from tiergate_proto.openai import (
    ChatCompletionChunk,
    Delta,
    FunctionCallItem,
    ItemStatus,
    OutputItem,
    OutputMessage,
    OutputTextPart,
    ReasoningItem,
    ReasoningTextPart,
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseCreateRequest,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ToolCallDelta,
    Usage,
)

__all__ = ["ResponseStreamTranslator", "frame_event"]

_encoder = msgspec.json.Encoder()


def frame_event(event: ResponseStreamEvent) -> bytes:
    """One SSE event as OpenAI sends it: `event: <type>`, `data: <json>`, a blank line."""
    kind = str(type(event).__struct_config__.tag)
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(event) + b"\n\n"


class ResponseStreamTranslator:
    """Stateful per-stream translator; see the module docstring.

    After `finish` or `fail`, `response` is the final `Response` (store it with
    `translate.conversation_after`); neither may be called twice, and `feed` not after them.
    `first_token_at` (`time.perf_counter()`) is set by the first chunk that generates
    something: text, reasoning, a refusal or a tool call.
    """

    def __init__(
        self,
        request: ResponseCreateRequest,
        *,
        response_id: str,
        created_at: int,
        model: str | None = None,
    ) -> None:
        self._shell = response_shell(
            request,
            response_id=response_id,
            created_at=created_at,
            model=model if model is not None else request.model,
        )
        self._sequence = 0
        self._started = False
        self._ended = False
        self._out: list[bytes] = []
        self._next_index = 0
        self._done: dict[int, OutputItem] = {}
        self._message: MessageDraft | None = None
        self._reasoning: ReasoningDraft | None = None
        self._calls: dict[int, CallDraft] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.first_token_at: float | None = None
        self.response: Response | None = None

    # --- public -------------------------------------------------------------------------------

    def start(self) -> bytes:
        """`response.created` and `response.in_progress`; b"" if already started."""
        self._begin()
        return self._flush()

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        """The events for one chunk (starting the stream if `start` was not called)."""
        self._check_open()
        self._begin()
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            self._delta(choice.delta)
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
        return self._flush()

    def finish(self, usage: Usage | None = None, *, completed_at: int | None = None) -> bytes:
        """Close every open item and end with `response.completed` (or `.incomplete`).

        `usage` overrides what the chunks carried; `completed_at` (Unix seconds) goes on a
        completed response.
        """
        self._check_open()
        self._begin()
        if usage is not None:
            self.usage = usage
        status, _ = status_of(self.finish_reason)
        done = item_status(status)
        self._close_current(done)
        for call in self._calls.values():
            self._close_call(call, done)
        self._calls.clear()
        if not any(
            isinstance(item, OutputMessage | FunctionCallItem) for item in self._done.values()
        ):
            self._empty_message(done)
        response = finished(
            self._shell,
            output=self._output(),
            finish_reason=self.finish_reason,
            usage=self.usage,
            completed_at=completed_at,
        )
        self._end(response)
        if response.status == "completed":
            self._emit(ResponseCompletedEvent(response=response, sequence_number=self._seq()))
        else:
            self._emit(ResponseIncompleteEvent(response=response, sequence_number=self._seq()))
        return self._flush()

    def fail(self, message: str, *, code: str = "server_error") -> bytes:
        """End a broken stream: an `error` event, then `response.failed` with the output so far.

        `message` is for the client (never an engine's internals); `code` is one of OpenAI's
        response error codes (`server_error`, `rate_limit_exceeded`, ...).
        """
        self._check_open()
        self._begin()
        items = dict(self._done)
        if self._reasoning is not None:
            items[self._reasoning.output_index] = self._reasoning.item("incomplete")
        if self._message is not None:
            items[self._message.output_index] = self._message.item("incomplete")
        for call in self._calls.values():
            items[call.output_index] = call.item("incomplete")
        output = [items[index] for index in sorted(items)]
        response = failed(self._shell, output=output, code=code, message=message)
        self._end(response)
        self._emit(ResponseErrorEvent(message=message, code=code, sequence_number=self._seq()))
        self._emit(ResponseFailedEvent(response=response, sequence_number=self._seq()))
        return self._flush()

    def withdraw(self, message: str, *, code: str = "server_error") -> bytes:
        """After `finish`, whose bytes were not sent: an `error` event instead (the finished
        response could not be stored, so it must not be announced as completed). Its
        `sequence_number` follows the withdrawn events'."""
        self._emit(ResponseErrorEvent(message=message, code=code, sequence_number=self._seq()))
        return self._flush()

    def _begin(self) -> None:
        """Queue the start events, unless they were sent, ahead of what this call returns."""
        if not self._started:
            self._started = True
            self._emit(ResponseCreatedEvent(response=self._shell, sequence_number=self._seq()))
            self._emit(ResponseInProgressEvent(response=self._shell, sequence_number=self._seq()))

    # --- deltas -------------------------------------------------------------------------------

    def _delta(self, delta: Delta) -> None:
        if self.first_token_at is None and (
            delta.content or delta.reasoning_content or delta.refusal or delta.tool_calls
        ):
            self.first_token_at = time.perf_counter()
        if delta.reasoning_content:
            self._reasoning_delta(delta.reasoning_content)
        if delta.content:
            self._text_delta("output_text", delta.content)
        if delta.refusal:
            self._text_delta("refusal", delta.refusal)
        for call in delta.tool_calls or ():
            self._call_delta(call)

    def _reasoning_delta(self, text: str) -> None:
        state = self._reasoning
        if state is None:
            self._close_current("completed")
            state = self._reasoning = ReasoningDraft(ids.new_reasoning_id(), self._claim())
            item = ReasoningItem(id=state.item_id, content=[], status="in_progress")
            self._added(state.output_index, item)
            self._emit(
                ResponseContentPartAddedEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=0,
                    part=ReasoningTextPart(text=""),
                    sequence_number=self._seq(),
                )
            )
        state.pieces.append(text)
        self._emit(
            ResponseReasoningTextDeltaEvent(
                item_id=state.item_id,
                output_index=state.output_index,
                content_index=0,
                delta=text,
                sequence_number=self._seq(),
            )
        )

    def _text_delta(self, kind: PartKind, text: str) -> None:
        state = self._message
        if state is None:
            self._close_current("completed")
            state = self._message = MessageDraft(ids.new_message_id(), self._claim())
            item = OutputMessage(
                id=state.item_id, role="assistant", status="in_progress", content=[]
            )
            self._added(state.output_index, item)
        if not state.parts or state.parts[-1][0] != kind:
            if state.parts:
                self._close_part(state, len(state.parts) - 1)
            state.parts.append((kind, []))
            self._emit(
                ResponseContentPartAddedEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=len(state.parts) - 1,
                    part=content_part(kind, ""),
                    sequence_number=self._seq(),
                )
            )
        state.parts[-1][1].append(text)
        index = len(state.parts) - 1
        if kind == "output_text":
            self._emit(
                ResponseTextDeltaEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=index,
                    delta=text,
                    sequence_number=self._seq(),
                )
            )
        else:
            self._emit(
                ResponseRefusalDeltaEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=index,
                    delta=text,
                    sequence_number=self._seq(),
                )
            )

    def _call_delta(self, delta: ToolCallDelta) -> None:
        function = delta.function
        state = self._calls.get(delta.index)
        if state is None:
            self._close_current("completed")
            state = CallDraft(
                item_id=ids.new_function_call_id(),
                output_index=self._claim(),
                call_id=delta.id or ids.new_call_id(),
                name=(function.name or "") if function is not None else "",
            )
            self._calls[delta.index] = state
            self._added(state.output_index, state.item("in_progress"))
        elif function is not None and function.name and not state.name:
            state.name = function.name  # an engine that sent the id before the name
        if function is not None and function.arguments:
            state.pieces.append(function.arguments)
            self._emit(
                ResponseFunctionCallArgumentsDeltaEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    delta=function.arguments,
                    sequence_number=self._seq(),
                )
            )

    # --- closing items ------------------------------------------------------------------------

    def _close_current(self, status: ItemStatus) -> None:
        """Close the open reasoning or message item (at most one is open)."""
        if self._reasoning is not None:
            state = self._reasoning
            self._reasoning = None
            text = state.text()
            self._emit(
                ResponseReasoningTextDoneEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=0,
                    text=text,
                    sequence_number=self._seq(),
                )
            )
            self._emit(
                ResponseContentPartDoneEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=0,
                    part=ReasoningTextPart(text=text),
                    sequence_number=self._seq(),
                )
            )
            self._item_done(state.output_index, state.item(status))
        if self._message is not None:
            message = self._message
            self._message = None
            self._close_part(message, len(message.parts) - 1)
            self._item_done(message.output_index, message.item(status))

    def _close_part(self, state: MessageDraft, index: int) -> None:
        kind = state.parts[index][0]
        text = state.part_text(index)
        if kind == "output_text":
            self._emit(
                ResponseTextDoneEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=index,
                    text=text,
                    sequence_number=self._seq(),
                )
            )
        else:
            self._emit(
                ResponseRefusalDoneEvent(
                    item_id=state.item_id,
                    output_index=state.output_index,
                    content_index=index,
                    refusal=text,
                    sequence_number=self._seq(),
                )
            )
        self._emit(
            ResponseContentPartDoneEvent(
                item_id=state.item_id,
                output_index=state.output_index,
                content_index=index,
                part=content_part(kind, text),
                sequence_number=self._seq(),
            )
        )

    def _close_call(self, state: CallDraft, status: ItemStatus) -> None:
        item = state.item(status)
        self._emit(
            ResponseFunctionCallArgumentsDoneEvent(
                item_id=state.item_id,
                output_index=state.output_index,
                name=item.name,
                arguments=item.arguments,
                sequence_number=self._seq(),
            )
        )
        self._item_done(state.output_index, item)

    def _empty_message(self, status: ItemStatus) -> None:
        state = MessageDraft(ids.new_message_id(), self._claim(), [("output_text", [])])
        item = OutputMessage(id=state.item_id, role="assistant", status="in_progress", content=[])
        self._added(state.output_index, item)
        self._emit(
            ResponseContentPartAddedEvent(
                item_id=state.item_id,
                output_index=state.output_index,
                content_index=0,
                part=OutputTextPart(text=""),
                sequence_number=self._seq(),
            )
        )
        self._close_part(state, 0)
        self._item_done(state.output_index, empty_message(state.item_id, status))

    def _output(self) -> list[OutputItem]:
        return [self._done[index] for index in sorted(self._done)]

    # --- plumbing -----------------------------------------------------------------------------

    def _added(self, output_index: int, item: OutputItem) -> None:
        self._emit(
            ResponseOutputItemAddedEvent(
                output_index=output_index, item=item, sequence_number=self._seq()
            )
        )

    def _item_done(self, output_index: int, item: OutputItem) -> None:
        self._done[output_index] = item
        self._emit(
            ResponseOutputItemDoneEvent(
                output_index=output_index, item=item, sequence_number=self._seq()
            )
        )

    def _claim(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _seq(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _emit(self, event: ResponseStreamEvent) -> None:
        self._out.append(frame_event(event))

    def _flush(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _check_open(self) -> None:
        if self._ended:
            raise RuntimeError("the response stream has already ended")

    def _end(self, response: Response) -> None:
        self._ended = True
        self.response = response
