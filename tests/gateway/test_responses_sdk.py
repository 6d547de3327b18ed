"""The official `openai` SDK reads what the Responses translators produce (no network).

A `httpx.MockTransport` plays the gateway's `/v1/responses` route with the pure pieces the
route will use: `parse_response_request` → `to_chat` (with the stored conversation for
`previous_response_id`) → a canned engine answer (a `ChatCompletion`, or llama.cpp-like
chunks) → `from_chat` or `ResponseStreamTranslator`, then the conversation is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import openai
import pytest
from openai.types.responses import FunctionToolParam

from tiergate_gateway.responses import (
    ResponseStreamTranslator,
    conversation_after,
    extra_fields,
    from_chat,
    new_response_id,
    parse_response_request,
    to_chat,
)
from tiergate_proto.openai import ChatCompletion, ChatCompletionChunk, Response, StoredResponse
from tiergate_runtime.errors import InvalidRequest

if TYPE_CHECKING:
    from tests.gateway.conftest import ResponsesSchema

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
USAGE = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}


def completion(message: dict[str, Any], finish_reason: str) -> ChatCompletion:
    return msgspec.convert(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "tiergate-small",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", **message},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": USAGE,
        },
        ChatCompletion,
    )


def chunks(*deltas: tuple[dict[str, Any], str | None]) -> list[ChatCompletionChunk]:
    """A llama.cpp-like stream: a role chunk, the deltas, then the usage-only chunk."""
    bodies = [({"role": "assistant", "content": None}, None), *deltas]
    out = [
        {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "tiergate-small",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        for delta, finish in bodies
    ]
    out.append({**out[0], "choices": [], "usage": USAGE})
    return [msgspec.convert(body, ChatCompletionChunk) for body in out]


TEXT_ANSWER = completion({"content": "Hello there."}, "stop")
TEXT_STREAM = chunks(({"content": "Hello"}, None), ({"content": " there."}, None), ({}, "stop"))
CALL = {
    "id": "call_42",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
}
CALL_ANSWER = completion({"content": None, "tool_calls": [CALL]}, "tool_calls")
CALL_STREAM = chunks(
    ({"content": "Let me check."}, None),
    (
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_42",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        None,
    ),
    ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
    ({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}, None),
    ({}, "tool_calls"),
)


@dataclass
class Route:
    """A stand-in for the `/v1/responses` route; answers each request with the next answer."""

    schema: ResponsesSchema
    answers: list[ChatCompletion | list[ChatCompletionChunk]]
    break_after: int | None = None
    stored: dict[str, StoredResponse] = field(default_factory=dict)
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/responses"
        raw = json.loads(request.content)
        try:
            return self._answer(raw)
        except InvalidRequest as exc:
            return httpx.Response(exc.status, content=exc.envelope())

    def _answer(self, raw: dict[str, Any]) -> httpx.Response:
        parsed = parse_response_request(raw)
        previous = parsed.previous_response_id
        history = self.stored[previous].messages if previous else []
        self.chat_bodies.append(to_chat(parsed, history, extras=extra_fields(raw)))
        answer = self.answers.pop(0)
        response_id = new_response_id()
        response: Response | None
        if isinstance(answer, list):
            translator = ResponseStreamTranslator(parsed, response_id=response_id, created_at=10)
            fed = answer if self.break_after is None else answer[: self.break_after]
            data = b"".join(translator.feed(chunk) for chunk in fed)
            data += translator.finish() if self.break_after is None else translator.fail("Lost.")
            response = translator.response
            for event in data.split(b"\n\n")[:-1]:
                self.schema.validate_event(event.split(b"\ndata: ", 1)[1])
            headers = {"content-type": "text/event-stream"}
        else:
            assert not parsed.stream
            response = from_chat(answer, parsed, response_id, 10, completed_at=11)
            data = msgspec.json.encode(response)
            self.schema.validate("Response", data)
            headers = {"content-type": "application/json"}
        assert response is not None
        if parsed.store:
            messages = conversation_after(parsed, history, response)
            self.stored[response_id] = StoredResponse(
                subject="test", messages=messages, response=response
            )
        self.bodies.append(data)
        return httpx.Response(200, content=data, headers=headers)


@pytest.fixture
def route(responses_schema: ResponsesSchema) -> Route:
    return Route(schema=responses_schema, answers=[])


@pytest.fixture
def client(route: Route) -> Iterator[openai.OpenAI]:
    http = httpx.Client(transport=httpx.MockTransport(route))
    # The SDK takes a legacy httpx client as well as an httpx2 one; it is typed for httpx2.
    with openai.OpenAI(
        base_url="http://gateway.test/v1",
        api_key="k",
        http_client=http,  # type: ignore[arg-type]
        max_retries=0,
    ) as sdk:
        yield sdk


def async_client(route: Route) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.MockTransport(route))
    return openai.AsyncOpenAI(
        base_url="http://gateway.test/v1",
        api_key="k",
        http_client=http,  # type: ignore[arg-type]
        max_retries=0,
    )


# --- sync -------------------------------------------------------------------------------------


def test_create_reads_output_text(route: Route, client: openai.OpenAI) -> None:
    route.answers = [TEXT_ANSWER]
    response = client.responses.create(model="tiergate-small", instructions="Be kind.", input="Hi!")
    assert response.output_text == "Hello there."
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 7)
    assert route.chat_bodies[0]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi!"},
    ]


def test_a_tool_round_trip_with_previous_response_id(route: Route, client: openai.OpenAI) -> None:
    route.answers = [CALL_ANSWER, completion({"content": "It is 21 °C in Oslo."}, "stop")]
    first = client.responses.create(
        model="tiergate-small",
        input="Weather in Oslo?",
        tools=[WEATHER],
    )
    (item,) = first.output
    assert item.type == "function_call"
    assert (item.call_id, item.name, json.loads(item.arguments)) == (
        "call_42",
        "get_weather",
        {"city": "Oslo"},
    )
    assert route.chat_bodies[0]["tools"][0]["function"]["name"] == "get_weather"

    second = client.responses.create(
        model="tiergate-small",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": item.call_id, "output": '{"temp": 21}'}],
        tools=[WEATHER],
    )
    assert second.output_text == "It is 21 °C in Oslo."
    assert second.previous_response_id == first.id
    assert route.chat_bodies[1]["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_42"},
    ]


def test_the_stream_helper_collects_deltas_and_the_final_response(
    route: Route, client: openai.OpenAI
) -> None:
    route.answers = [CALL_STREAM]
    with client.responses.stream(
        model="tiergate-small", input="Weather in Oslo?", tools=[WEATHER]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    text = [e.delta for e in events if e.type == "response.output_text.delta"]
    arguments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert text == ["Let me check."]
    assert arguments == ['{"city":', '"Oslo"}']
    snapshots = [e.snapshot for e in events if e.type == "response.function_call_arguments.delta"]
    assert snapshots == ['{"city":', '{"city":"Oslo"}']
    assert final.output_text == "Let me check."
    message, call = final.output
    assert message.type == "message"
    assert call.type == "function_call"
    assert call.parsed_arguments == {"city": "Oslo"}  # strict tool: the SDK parses it
    assert final.usage is not None
    assert final.usage.total_tokens == 27
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_raw_stream_events(route: Route, client: openai.OpenAI) -> None:
    route.answers = [TEXT_STREAM]
    stream = client.responses.create(model="tiergate-small", input="Hi!", stream=True)
    types = [event.type for event in stream]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 2


def test_a_broken_stream_is_a_failed_response(route: Route, client: openai.OpenAI) -> None:
    route.answers = [TEXT_STREAM]
    route.break_after = 2
    with client.responses.stream(model="tiergate-small", input="Hi!") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.error is not None
    assert failed.response.error.message == "Lost."
    assert failed.response.output_text == "Hello"


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "web_search"}, "tools[0].type"),
        (
            {
                "type": "mcp",
                "server_label": "x",
                "server_url": "https://x.test/mcp",
                "require_approval": "never",
            },
            "tools[0].type",
        ),
        ({"type": "code_interpreter", "container": {"type": "auto"}}, "tools[0].type"),
    ],
)
def test_builtin_tools_are_bad_requests(
    route: Route, client: openai.OpenAI, tool: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="tiergate-small", input="Hi!", tools=[tool])  # type: ignore[list-item]
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert tool["type"] in caught.value.message


# --- async ------------------------------------------------------------------------------------


async def test_async_create_and_stream(route: Route) -> None:
    route.answers = [TEXT_ANSWER, TEXT_STREAM]
    async with async_client(route) as sdk:
        response = await sdk.responses.create(model="tiergate-small", input="Hi!")
        assert response.output_text == "Hello there."
        async with sdk.responses.stream(
            model="tiergate-small", input="Hi!", previous_response_id=response.id
        ) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
    assert deltas == ["Hello", " there."]
    assert final.output_text == "Hello there."
    assert final.previous_response_id == response.id
    assert route.chat_bodies[1]["messages"] == [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "Hi!"},
    ]
    assert route.chat_bodies[1]["stream_options"] == {"include_usage": True}
