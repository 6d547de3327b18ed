"""Chat chunks → Responses stream events (`responses/stream.py`): pure table tests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from tiergate_gateway.responses import (
    ResponseStreamTranslator,
    conversation_after,
    from_chat,
    parse_response_request,
)
from tiergate_proto.openai import ChatCompletion, ChatCompletionChunk, ResponseCreateRequest, Usage

if TYPE_CHECKING:
    from tests.gateway.conftest import ResponsesSchema

TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object"},
    "strict": False,
}


def request(**fields: Any) -> ResponseCreateRequest:
    return parse_response_request({"model": "m", "input": "hi", "stream": True, **fields})


def chunk(
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    *,
    index: int = 0,
    usage: dict[str, Any] | None = None,
) -> ChatCompletionChunk:
    choices = (
        [] if delta is None else [{"index": index, "delta": delta, "finish_reason": finish_reason}]
    )
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return msgspec.convert(body, ChatCompletionChunk)


def call(
    index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> dict[str, Any]:
    function = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    delta: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        delta |= {"id": id, "type": "function"}
    return delta


USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    """The events of a Responses stream, checking OpenAI's framing of each."""
    assert data.endswith(b"\n\n")
    events = []
    for block in data.decode().split("\n\n")[:-1]:
        first, second = block.split("\n")
        assert first.startswith("event: ")
        assert second.startswith("data: ")
        event = json.loads(second.removeprefix("data: "))
        assert event["type"] == first.removeprefix("event: ")
        events.append(event)
    return events


def run(
    schema: ResponsesSchema,
    chunks: list[ChatCompletionChunk],
    fields: dict[str, Any] | None = None,
    usage: Usage | None = None,
) -> tuple[ResponseStreamTranslator, list[dict[str, Any]]]:
    translator = ResponseStreamTranslator(
        request(**(fields or {})), response_id="resp_1", created_at=5
    )
    data = b"".join(translator.feed(c) for c in chunks) + translator.finish(usage, completed_at=6)
    events = parse_sse(data)
    check_stream(schema, events)
    return translator, events


def check_stream(schema: ResponsesSchema, events: list[dict[str, Any]]) -> None:
    """Every event valid, sequence numbers 0, 1, 2, ..., deltas consistent with done events."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        schema.validate_event(event)
    assert events[0]["type"] == "response.created"
    assert events[1]["type"] == "response.in_progress"
    texts: dict[tuple[str, int], str] = {}
    args: dict[str, str] = {}
    added: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert event["output_index"] not in added
            added[event["output_index"]] = event["item"]["id"]
        if kind.endswith(".delta") and "item_id" in event:
            assert added[event["output_index"]] == event["item_id"]
        if kind in (
            "response.output_text.delta",
            "response.refusal.delta",
            "response.reasoning_text.delta",
        ):
            key = (event["item_id"], event["content_index"])
            texts[key] = texts.get(key, "") + event["delta"]
        if kind in ("response.output_text.done", "response.reasoning_text.done"):
            assert texts.get((event["item_id"], event["content_index"]), "") == event["text"]
        if kind == "response.refusal.done":
            assert texts[(event["item_id"], event["content_index"])] == event["refusal"]
        if kind == "response.function_call_arguments.delta":
            args[event["item_id"]] = args.get(event["item_id"], "") + event["delta"]
        if kind == "response.function_call_arguments.done":
            assert args.get(event["item_id"], "") == event["arguments"]
    assert sorted(added) == list(range(len(added)))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


def final(events: list[dict[str, Any]]) -> dict[str, Any]:
    response: dict[str, Any] = events[-1]["response"]
    return response


# --- event sequences --------------------------------------------------------------------------


def test_a_text_answer(responses_schema: ResponsesSchema) -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo."}),
        chunk({}, "stop"),
        chunk(usage=USAGE),
    ]
    translator, events = run(responses_schema, chunks)
    assert kinds(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    created = events[0]["response"]
    assert (created["id"], created["status"], created["output"]) == ("resp_1", "in_progress", [])
    assert "usage" not in created
    assert events[2]["item"]["content"] == []
    assert events[2]["item"]["status"] == "in_progress"
    assert events[6]["text"] == "Hello."
    response = final(events)
    assert response["status"] == "completed"
    assert response["completed_at"] == 6
    assert response["usage"]["input_tokens"] == 9
    assert response["usage"]["total_tokens"] == 13
    (message,) = response["output"]
    assert message["content"][0]["text"] == "Hello."
    assert message["id"] == events[2]["item"]["id"]
    assert translator.response is not None
    assert translator.response.id == "resp_1"


def test_text_then_a_tool_call(responses_schema: ResponsesSchema) -> None:
    chunks = [
        chunk({"content": "Checking."}),
        chunk({"tool_calls": [call(0, id="call_1", name="get_weather", arguments="")]}),
        chunk({"tool_calls": [call(0, arguments='{"city":')]}),
        chunk({"tool_calls": [call(0, arguments='"Oslo"}')]}),
        chunk({}, "tool_calls"),
    ]
    _, events = run(
        responses_schema,
        chunks,
        {"tools": [TOOL]},
        usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
    )
    assert kinds(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    assert events[8]["output_index"] == 1
    assert events[8]["item"] | {"id": None} == {
        "type": "function_call",
        "id": None,
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    done = events[11]
    assert (done["name"], done["arguments"]) == ("get_weather", '{"city":"Oslo"}')
    response = final(events)
    assert [item["type"] for item in response["output"]] == ["message", "function_call"]
    assert response["output"][1]["arguments"] == '{"city":"Oslo"}'
    assert response["usage"]["output_tokens"] == 2
    assert response["tools"] == [TOOL]


def test_parallel_calls_with_interleaved_deltas(responses_schema: ResponsesSchema) -> None:
    chunks = [
        chunk({"tool_calls": [call(0, id="call_a", name="get_weather", arguments='{"city":')]}),
        chunk({"tool_calls": [call(1, id="call_b", name="get_weather", arguments='{"city":')]}),
        chunk({"tool_calls": [call(0, arguments='"Oslo"}'), call(1, arguments='"Rome"}')]}),
        chunk({}, "tool_calls"),
    ]
    _, events = run(responses_schema, chunks, {"tools": [TOOL]})
    response = final(events)
    assert [(i["call_id"], i["arguments"], i["status"]) for i in response["output"]] == [
        ("call_a", '{"city":"Oslo"}', "completed"),
        ("call_b", '{"city":"Rome"}', "completed"),
    ]


def test_a_call_without_id_or_with_a_late_name(responses_schema: ResponsesSchema) -> None:
    chunks = [
        chunk({"tool_calls": [call(0, arguments="")]}),
        chunk({"tool_calls": [call(0, name="get_weather", arguments="{}")]}),
        chunk({}, "tool_calls"),
    ]
    _, events = run(responses_schema, chunks, {"tools": [TOOL]})
    (item,) = final(events)["output"]
    assert item["call_id"].startswith("call_")
    assert (item["name"], item["arguments"]) == ("get_weather", "{}")


def test_reasoning_then_text(responses_schema: ResponsesSchema) -> None:
    chunks = [
        chunk({"reasoning_content": "Two and "}),
        chunk({"reasoning_content": "two."}),
        chunk({"content": "4"}),
        chunk({}, "stop"),
    ]
    _, events = run(responses_schema, chunks)
    assert kinds(events)[2:10] == [
        "output_item.added",
        "content_part.added",
        "reasoning_text.delta",
        "reasoning_text.delta",
        "reasoning_text.done",
        "content_part.done",
        "output_item.done",
        "output_item.added",
    ]
    reasoning, message = final(events)["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["id"].startswith("rs_")
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Two and two."}]
    assert reasoning["summary"] == []
    assert message["content"][0]["text"] == "4"


def test_a_refusal_after_text_is_a_second_part(responses_schema: ResponsesSchema) -> None:
    chunks = [chunk({"content": "Well"}), chunk({"refusal": "I can't help."}), chunk({}, "stop")]
    _, events = run(responses_schema, chunks)
    assert "refusal.delta" in kinds(events)
    assert "refusal.done" in kinds(events)
    (message,) = final(events)["output"]
    assert message["content"] == [
        {"type": "output_text", "text": "Well", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "I can't help."},
    ]


@pytest.mark.parametrize(
    ("finish_reason", "last", "status", "details"),
    [
        ("stop", "completed", "completed", None),
        ("tool_calls", "completed", "completed", None),
        (None, "completed", "completed", None),
        ("length", "incomplete", "incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "incomplete", "incomplete", {"reason": "content_filter"}),
    ],
)
def test_finish_reason_decides_the_last_event(
    responses_schema: ResponsesSchema,
    finish_reason: str | None,
    last: str,
    status: str,
    details: Any,
) -> None:
    chunks = [chunk({"content": "abc"}), chunk({}, finish_reason)]
    _, events = run(responses_schema, chunks, {"max_output_tokens": 3})
    assert events[-1]["type"] == f"response.{last}"
    response = final(events)
    assert response["status"] == status
    assert response["incomplete_details"] == details
    assert response["max_output_tokens"] == 3
    item_status = "completed" if status == "completed" else "incomplete"
    assert response["output"][0]["status"] == item_status
    assert ("completed_at" in response) == (status == "completed")


def test_nothing_generated_still_gives_one_message(responses_schema: ResponsesSchema) -> None:
    translator, events = run(responses_schema, [chunk({"role": "assistant"}), chunk({}, "stop")])
    assert translator.first_token_at is None
    assert kinds(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    assert final(events)["output"][0]["content"][0]["text"] == ""


def test_other_choices_are_ignored(responses_schema: ResponsesSchema) -> None:
    _, events = run(
        responses_schema,
        [chunk({"content": "x"}, index=1), chunk({"content": "y"}), chunk({}, "stop")],
    )
    assert final(events)["output"][0]["content"][0]["text"] == "y"


def test_usage_comes_from_the_chunks_unless_given(responses_schema: ResponsesSchema) -> None:
    chunks = [chunk({"content": "x"}, "stop"), chunk(usage=USAGE)]
    translator, events = run(responses_schema, chunks)
    assert final(events)["usage"]["output_tokens"] == 4
    assert translator.usage is not None
    assert translator.usage.total_tokens == 13
    given = Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
    _, events = run(responses_schema, chunks, usage=given)
    assert final(events)["usage"]["total_tokens"] == 2


# --- failure, lifecycle -----------------------------------------------------------------------


def test_a_broken_stream_ends_with_error_and_failed(responses_schema: ResponsesSchema) -> None:
    translator = ResponseStreamTranslator(request(tools=[TOOL]), response_id="resp_1", created_at=5)
    data = translator.feed(chunk({"content": "Partial"}))
    data += translator.feed(
        chunk({"tool_calls": [call(0, id="call_1", name="get_weather", arguments='{"ci')]})
    )
    data += translator.fail("The backend stopped answering.")
    events = parse_sse(data)
    check_stream(responses_schema, events)
    assert kinds(events)[-2:] == ["error", "failed"]
    error = events[-2]
    assert (error["code"], error["message"], error["param"]) == (
        "server_error",
        "The backend stopped answering.",
        None,
    )
    response = final(events)
    assert response["status"] == "failed"
    assert response["error"] == {
        "code": "server_error",
        "message": "The backend stopped answering.",
    }
    message, function_call = response["output"]
    assert message["content"][0]["text"] == "Partial"
    assert message["status"] == "completed"
    assert function_call["arguments"] == '{"ci'
    assert function_call["status"] == "incomplete"
    assert translator.response is not None
    assert translator.response.status == "failed"
    with pytest.raises(RuntimeError):
        translator.finish()


def test_a_failure_before_any_chunk_still_starts_the_stream(
    responses_schema: ResponsesSchema,
) -> None:
    translator = ResponseStreamTranslator(request(), response_id="resp_1", created_at=5)
    events = parse_sse(translator.fail("Overloaded.", code="rate_limit_exceeded"))
    check_stream(responses_schema, events)
    assert kinds(events) == ["created", "in_progress", "error", "failed"]
    assert final(events)["output"] == []
    assert final(events)["error"]["code"] == "rate_limit_exceeded"


def test_start_is_sent_once() -> None:
    translator = ResponseStreamTranslator(request(), response_id="resp_1", created_at=5)
    assert kinds(parse_sse(translator.start())) == ["created", "in_progress"]
    assert translator.start() == b""
    assert kinds(parse_sse(translator.feed(chunk({"content": "x"}))))[0] == "output_item.added"
    assert translator.first_token_at is not None
    translator.finish()
    with pytest.raises(RuntimeError):
        translator.feed(chunk({"content": "late"}))
    with pytest.raises(RuntimeError):
        translator.fail("late")


def test_a_role_only_chunk_is_not_a_first_token() -> None:
    translator = ResponseStreamTranslator(request(), response_id="resp_1", created_at=5)
    translator.feed(chunk({"role": "assistant", "content": ""}))
    assert translator.first_token_at is None
    translator.feed(chunk({"tool_calls": [call(0, id="c", name="f")]}))
    assert translator.first_token_at is not None


# --- the same answer, streamed or not ---------------------------------------------------------


def _without_ids(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "output": [{**item, "id": None} for item in response["output"]]}


@pytest.mark.parametrize("finish_reason", ["tool_calls", "length"])
def test_streamed_and_whole_answers_agree(
    responses_schema: ResponsesSchema, finish_reason: str
) -> None:
    parsed = request(tools=[TOOL], instructions="Be brief.")
    chunks = [
        chunk({"reasoning_content": "Weather needs a call."}),
        chunk({"content": "Let me check."}),
        chunk(
            {"tool_calls": [call(0, id="call_1", name="get_weather", arguments='{"city":"Oslo"}')]}
        ),
        chunk({}, finish_reason),
        chunk(usage=USAGE),
    ]
    translator = ResponseStreamTranslator(parsed, response_id="resp_1", created_at=5)
    b"".join(translator.feed(c) for c in chunks) + translator.finish(completed_at=6)
    whole = msgspec.convert(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "message": {
                        "role": "assistant",
                        "content": "Let me check.",
                        "reasoning_content": "Weather needs a call.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                            }
                        ],
                    },
                }
            ],
            "usage": USAGE,
        },
        ChatCompletion,
    )
    streamed = translator.response
    assert streamed is not None
    answered = from_chat(whole, parsed, "resp_1", 5, completed_at=6)
    as_streamed = json.loads(msgspec.json.encode(streamed))
    as_answered = json.loads(msgspec.json.encode(answered))
    if finish_reason == "length":
        # Items closed before a cut-off stream ends stay completed (their done events said so).
        for item in as_streamed["output"][:2]:
            assert item["status"] == "completed"
            item["status"] = "incomplete"
    assert _without_ids(as_streamed) == _without_ids(as_answered)
    responses_schema.validate("Response", as_streamed)
    assert conversation_after(parsed, [], streamed) == conversation_after(parsed, [], answered)
