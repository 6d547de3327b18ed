"""The answer as it goes to the client: its id, and (with consent) the answer assembled.

`AnswerTap` wraps the ASGI `send` of one pipeline request, after identity is known. It reads
only what the client is sent — after every guard and filter — so the history holds exactly
what the user saw. For a 200:

- streaming (`text/event-stream`): the answer's id is the `id` of the first data event (chat,
  completions) or its `response.id` (Responses events). Before the message that carries the
  terminator (`[DONE]`, or the body's last message) goes out, the id is in the ledger: a
  client that rates the answer as soon as it ended finds it.
- whole answers (JSON): the id is the body's `id`, in the ledger before the body goes out.

With `assemble` (a user who consented to storing chats), every data event is decoded too and
the answer is rebuilt: content, refusal and tool calls of choice 0 (chat), `text`
(completions), `output_text` deltas (Responses). Everyone else costs one small decode of the
first event and a `find` per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar.types import Message, Send

if TYPE_CHECKING:
    from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent

__all__ = ["AnswerTap", "Assembled"]

_DONE = b"data: [DONE]"


class _Inner(msgspec.Struct):
    id: str | None = None


class _Ids(msgspec.Struct):
    id: str | None = None
    response: _Inner | None = None


_ids = msgspec.json.Decoder(_Ids).decode
_any = msgspec.json.Decoder().decode


def _id_of(payload: bytes) -> str | None:
    try:
        ids = _ids(payload)
    except msgspec.DecodeError:
        return None
    if ids.response is not None and ids.response.id:
        return ids.response.id[:128]
    return ids.id[:128] if ids.id else None


class Assembled:
    """The assistant message rebuilt from what the client received."""

    __slots__ = ("content", "finish_reason", "refusal", "tool_calls")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def message(self) -> dict[str, Any]:
        """OpenAI's assistant message: `role`, `content` and, when any, `tool_calls`."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return message

    def chat_delta(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._text(delta)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._call_delta(call)
        self._finish(choice)

    def chat_message(self, choice: dict[str, Any]) -> None:
        message = choice.get("message")
        if isinstance(message, dict):
            self._text(message)
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                for index, call in enumerate(calls):
                    if isinstance(call, dict):
                        self.tool_calls[index] = call
        self._finish(choice)

    def text_choice(self, choice: dict[str, Any]) -> None:
        text = choice.get("text")
        if isinstance(text, str):
            self.content.append(text)
        self._finish(choice)

    def responses_output(self, response: dict[str, Any]) -> None:
        """A whole Responses object: its message items' text, its function calls."""
        for item in response.get("output") or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                for part in item.get("content") or []:
                    if isinstance(part, dict) and part.get("type") == "output_text":
                        self.content.append(str(part.get("text", "")))
            elif item.get("type") == "function_call":
                self.tool_calls[len(self.tool_calls)] = {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments")},
                }
        details = response.get("incomplete_details")
        if isinstance(details, dict) and details.get("reason"):
            self.finish_reason = str(details["reason"])
        elif response.get("status") == "completed":
            self.finish_reason = "stop"

    def _text(self, part: dict[str, Any]) -> None:
        content = part.get("content")
        if isinstance(content, str):
            self.content.append(content)
        refusal = part.get("refusal")
        if isinstance(refusal, str):
            self.refusal.append(refusal)

    def _call_delta(self, call: dict[str, Any]) -> None:
        index = call.get("index", 0)
        index = index if isinstance(index, int) else 0
        known = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            known["id"] = call["id"]
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                known["function"]["name"] += str(function["name"])
            if function.get("arguments"):
                known["function"]["arguments"] += str(function["arguments"])

    def _finish(self, choice: dict[str, Any]) -> None:
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reason = reason


class AnswerTap:
    """One request's `send`, watched (see the module docstring)."""

    __slots__ = (
        "_assemble",
        "_body",
        "_on_id",
        "_pending",
        "_remembering",
        "_send",
        "_stream",
        "_tail",
        "answer",
        "answer_id",
        "api",
        "status",
    )

    def __init__(
        self,
        send: Send,
        api: str,
        on_id: Callable[[str], Awaitable[object]],
        *,
        assemble: bool,
    ) -> None:
        """`on_id(answer_id)` records the answer (awaited before its end goes out)."""
        self._send = send
        self.api = api
        self._on_id = on_id
        self._assemble = assemble
        self._stream = False
        self._body: list[bytes] = []
        self._pending = b""
        self._tail = b""
        self._remembering: asyncio.Task[object] | None = None
        self.status: int | None = None
        self.answer_id: str | None = None
        self.answer: Assembled | None = Assembled() if assemble else None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            start = cast("HTTPResponseStartEvent", message)
            self.status = start["status"]
            if self.status == 200:
                for name, value in start.get("headers", ()):
                    if bytes(name).lower() == b"content-type":
                        self._stream = bytes(value).startswith(b"text/event-stream")
        elif kind == "http.response.body" and self.status == 200:
            part = cast("HTTPResponseBodyEvent", message)
            body = part.get("body", b"")
            last = not part.get("more_body", False)
            if self._stream:
                if body and (self.answer_id is None or self._assemble):
                    self._events(body)
                seen, self._tail = self._tail + body, body[-len(_DONE) :]
                if last or _DONE in seen:  # the terminator, even split over two messages
                    await self.settled()
            else:
                self._body.append(body)
                if last:
                    self._whole(b"".join(self._body))
                    self._body.clear()
                    await self.settled()
        await self._send(message)

    async def settled(self) -> None:
        """Wait until the answer's id is in the ledger (if it had one)."""
        task, self._remembering = self._remembering, None
        if task is not None:
            await task

    def _found(self, answer_id: str) -> None:
        self.answer_id = answer_id
        self._remembering = asyncio.ensure_future(self._on_id(answer_id))

    def _events(self, body: bytes) -> None:
        data = self._pending + body
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data[-65536:] if self._assemble or len(data) < 65536 else b""
            return
        self._pending = data[end + 2 :]
        for event in data[:end].split(b"\n\n"):
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]" or not payload:
                    continue
                if self.answer_id is None:
                    found = _id_of(payload)
                    if found is not None:
                        self._found(found)
                if self.answer is not None:
                    self._delta(payload)
                elif self.answer_id is not None:
                    return

    def _delta(self, payload: bytes) -> None:
        answer = self.answer
        assert answer is not None
        try:
            event = _any(payload)
        except msgspec.DecodeError:
            return
        if not isinstance(event, dict):
            return
        if self.api == "responses":
            kind = event.get("type")
            if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
                answer.content.append(event["delta"])
            elif kind in {"response.completed", "response.incomplete"}:
                response = event.get("response")
                if isinstance(response, dict):
                    done = Assembled()
                    done.responses_output(response)
                    answer.tool_calls = done.tool_calls
                    answer.finish_reason = done.finish_reason
            return
        for choice in event.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                if self.api == "completions":
                    answer.text_choice(choice)
                else:
                    answer.chat_delta(choice)

    def _whole(self, body: bytes) -> None:
        found = _id_of(body)
        if found is not None:
            self._found(found)
        answer = self.answer
        if answer is None:
            return
        try:
            whole = _any(body)
        except msgspec.DecodeError:
            return
        if not isinstance(whole, dict):
            return
        if self.api == "responses":
            answer.responses_output(whole)
            return
        for choice in whole.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                if self.api == "completions":
                    answer.text_choice(choice)
                else:
                    answer.chat_message(choice)
