"""`AnswerTap`: the answer's id and (with consent) its text, from what the client is sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from litestar.types import Message

from tiergate_gateway.records.tap import AnswerTap

pytestmark = pytest.mark.asyncio

SSE = [(b"content-type", b"text/event-stream")]
JSON = [(b"content-type", b"application/json")]


class Sink:
    """The ASGI send the tap wraps: what went out, and what the ledger held at each message."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.remembered: list[str] = []
        self.remembered_when: list[int] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def remember(self, answer_id: str) -> object:
        await asyncio.sleep(0.01)  # a store round trip: the tap must wait for it
        self.remembered.append(answer_id)
        self.remembered_when.append(len(self.sent))
        return True


def chunk(answer_id: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": answer_id,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def play(tap: AnswerTap, headers: list[tuple[bytes, bytes]], parts: list[bytes]) -> None:
    await tap({"type": "http.response.start", "status": 200, "headers": headers})
    for part in parts:
        await tap({"type": "http.response.body", "body": part, "more_body": True})
    await tap({"type": "http.response.body", "body": b"", "more_body": False})


def stream_parts() -> list[bytes]:
    events = (
        b": waking\n\n"
        + chunk("chatcmpl-abc", {"role": "assistant", "content": ""})
        + chunk("chatcmpl-abc", {"content": "Hel"})
        + chunk("chatcmpl-abc", {"content": "lo, "})
        + chunk(
            "chatcmpl-abc",
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "function": {"name": "get", "arguments": '{"a"'}}
                ]
            },
        )
        + chunk("chatcmpl-abc", {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]})
        + chunk("chatcmpl-abc", {"content": "world"}, finish="tool_calls")
        + b"data: [DONE]\n\n"
    )
    return [events[i : i + 7] for i in range(0, len(events), 7)]  # split anywhere


@pytest.mark.parametrize("assemble", [False, True])
async def test_a_stream_answer_id_is_remembered_before_its_end_goes_out(assemble: bool) -> None:
    sink = Sink()
    tap = AnswerTap(sink.send, "chat", sink.remember, assemble=assemble)
    parts = stream_parts()
    await play(tap, SSE, parts)
    assert sink.remembered == ["chatcmpl-abc"]
    done_at = next(i for i, m in enumerate(sink.sent) if b"[DONE]" in m.get("body", b""))  # type: ignore[operator]
    assert sink.remembered_when[0] <= done_at  # in the ledger before [DONE] went out
    assert b"".join(m.get("body", b"") for m in sink.sent[1:]) == b"".join(parts)  # type: ignore[misc]
    if assemble:
        assert tap.answer is not None
        assert tap.answer.message() == {
            "role": "assistant",
            "content": "Hello, world",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get", "arguments": '{"a": 1}'},
                }
            ],
        }
        assert tap.answer.finish_reason == "tool_calls"
    else:
        assert tap.answer is None


async def test_a_whole_answer_is_remembered_before_the_body_goes_out() -> None:
    sink = Sink()
    tap = AnswerTap(sink.send, "chat", sink.remember, assemble=True)
    body = {
        "id": "chatcmpl-xyz",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi."},
                "finish_reason": "stop",
            }
        ],
    }
    await tap({"type": "http.response.start", "status": 200, "headers": JSON})
    await tap({"type": "http.response.body", "body": json.dumps(body).encode(), "more_body": False})
    assert sink.remembered == ["chatcmpl-xyz"]
    assert sink.remembered_when == [1]  # only the head had gone out
    assert tap.answer is not None
    assert tap.answer.message() == {
        "role": "assistant",
        "content": "Hi.",
    }
    assert tap.answer.finish_reason == "stop"


async def test_text_completions_and_responses_are_assembled() -> None:
    sink = Sink()
    tap = AnswerTap(sink.send, "completions", sink.remember, assemble=True)
    events = b"".join(
        b"data: "
        + json.dumps(
            {"id": "cmpl-1", "choices": [{"index": 0, "text": t, "finish_reason": f}]}
        ).encode()
        + b"\n\n"
        for t, f in (("Once", None), (" upon", "length"))
    )
    await play(tap, SSE, [events, b"data: [DONE]\n\n"])
    assert tap.answer_id == "cmpl-1"
    assert tap.answer is not None
    assert tap.answer.message()["content"] == "Once upon"
    assert tap.answer.finish_reason == "length"

    sink = Sink()
    tap = AnswerTap(sink.send, "responses", sink.remember, assemble=True)
    created: dict[str, Any] = {
        "type": "response.created",
        "response": {"id": "resp_1", "status": "in_progress"},
    }
    deltas: list[dict[str, Any]] = [
        {"type": "response.output_text.delta", "delta": d} for d in ("Bon", "jour")
    ]
    completed: dict[str, Any] = {
        "type": "response.completed",
        "response": {"id": "resp_1", "status": "completed", "output": []},
    }
    await play(
        tap,
        SSE,
        [
            b"".join(
                b"event: "
                + str(e["type"]).encode()
                + b"\ndata: "
                + json.dumps(e).encode()
                + b"\n\n"
                for e in (created, *deltas, completed)
            )
        ],
    )
    assert sink.remembered == ["resp_1"]
    assert tap.answer is not None
    assert tap.answer.message()["content"] == "Bonjour"
    assert tap.answer.finish_reason == "stop"


async def test_errors_and_bodies_without_an_id_are_not_remembered() -> None:
    sink = Sink()
    tap = AnswerTap(sink.send, "chat", sink.remember, assemble=True)
    await tap({"type": "http.response.start", "status": 400, "headers": JSON})
    error = b'{"error": {"message": "no", "id": "x"}}'
    await tap({"type": "http.response.body", "body": error, "more_body": False})
    assert sink.remembered == []
    assert tap.answer_id is None

    sink = Sink()
    tap = AnswerTap(sink.send, "chat", sink.remember, assemble=False)
    await play(tap, SSE, [b"data: not json\n\n", b'data: {"object": "x"}\n\n', b"data: [DONE]\n\n"])
    assert sink.remembered == []
    assert tap.answer_id is None
    assert len(sink.sent) == 5  # everything still went out
