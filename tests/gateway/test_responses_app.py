"""`POST /v1/responses` through the pipeline, in process, with the official `openai` client
in front of the fake engine: multi-turn with `previous_response_id`, streaming assembled by
the SDK's `responses.stream()` helper, a function-tool round trip, another subject's id
refused, `store: false` honoured, and the refusals that need no engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
import openai
import pytest
from openai.types.responses import FunctionToolParam, Response

from tiergate_gateway.settings import TierPolicy
from tiergate_proto.identity import Window
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.openai_schema import validate_error

from .conftest import ALIAS, Gateway, gateway_settings, last_chat, running

if TYPE_CHECKING:
    from .conftest import ResponsesSchema

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": False,
}


@contextlib.asynccontextmanager
async def gateway_for(engine: FakeEngine) -> AsyncIterator[Gateway]:
    settings = msgspec.structs.replace(
        gateway_settings(engine.base_url),
        # Two visitors behind one proxy: X-Forwarded-For tells them apart.
        trusted_proxies=["127.0.0.1/32"],
        tiers={"anonymous": TierPolicy(max_tokens=64, requests=Window(limit=1000, window_s=60))},
    )
    async with running(settings, engine) as gateway:
        yield gateway


def sdk(gateway: Gateway, visitor: str = "10.0.0.1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1",
        api_key="anonymous",
        max_retries=0,
        default_headers={"x-forwarded-for": visitor},
    )


def sent_messages(engine: FakeEngine) -> list[dict[str, Any]]:
    body = last_chat(engine).body
    assert isinstance(body, dict)
    messages: list[dict[str, Any]] = body["messages"]
    return messages


async def test_two_turns_with_previous_response_id(
    engine: FakeEngine, responses_schema: ResponsesSchema
) -> None:
    async with gateway_for(engine) as gateway, sdk(gateway) as client:
        raw = await client.responses.with_raw_response.create(
            model=ALIAS, input="My name is Ada.", instructions="Be brief."
        )
        responses_schema.validate("Response", raw.http_response.content)
        assert raw.headers["x-tiergate-tier"] == "anonymous"
        assert "x-ratelimit-remaining-requests" in raw.headers
        first = raw.parse()
        assert first.id.startswith("resp_")
        assert first.status == "completed"
        assert first.model == ALIAS
        assert first.output_text
        assert first.usage is not None
        assert first.usage.output_tokens > 0
        assert sent_messages(engine)[0] == {"role": "system", "content": "Be brief."}
        second = await client.responses.create(
            model=ALIAS, input="What is my name?", previous_response_id=first.id
        )
        assert second.previous_response_id == first.id
        messages = sent_messages(engine)
        # The first turn (without its instructions, as OpenAI does) and its answer, then this.
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[0]["content"] == "My name is Ada."
        assert messages[1]["content"] == first.output_text
        assert messages[2]["content"] == "What is my name?"


async def test_another_subjects_response_is_not_found(engine: FakeEngine) -> None:
    async with gateway_for(engine) as gateway:
        async with sdk(gateway, "10.0.0.1") as ada:
            mine = await ada.responses.create(model=ALIAS, input="hello")
        before = len([r for r in engine.requests if r.method == "POST"])
        async with sdk(gateway, "10.0.0.2") as eve:
            with pytest.raises(openai.NotFoundError) as caught:
                await eve.responses.create(model=ALIAS, input="go on", previous_response_id=mine.id)
        assert caught.value.status_code == 404
        body = caught.value.response.content
        assert validate_error(body)["error"]["param"] == "previous_response_id"
        # Refused before any engine saw it (its health probes, every 0.2 s, do not count).
        assert len([r for r in engine.requests if r.method == "POST"]) == before


async def test_store_false_is_not_kept(engine: FakeEngine) -> None:
    async with gateway_for(engine) as gateway, sdk(gateway) as client:
        raw = await client.responses.with_raw_response.create(
            model=ALIAS, input="hello", store=False
        )
        assert raw.http_response.json()["store"] is False  # echoed, as OpenAI does
        unstored = raw.parse()
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(
                model=ALIAS, input="again", previous_response_id=unstored.id
            )


async def test_streamed_response_assembled_by_the_sdk_helper(
    engine: FakeEngine, responses_schema: ResponsesSchema
) -> None:
    async with gateway_for(engine) as gateway, sdk(gateway) as client:
        deltas: list[str] = []
        kinds: list[str] = []
        async with client.responses.stream(model=ALIAS, input="Tell me a story.") as stream:
            async for event in stream:
                kinds.append(event.type)
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = await stream.get_final_response()
        assert kinds[0] == "response.created"
        assert kinds[-1] == "response.completed"
        assert final.status == "completed"
        assert final.output_text == "".join(deltas)
        assert final.usage is not None
        assert final.usage.output_tokens > 0
        # The streamed turn was stored: it can be continued.
        follow = await client.responses.create(
            model=ALIAS, input="And then?", previous_response_id=final.id
        )
        assert follow.status == "completed"
        assert [m["role"] for m in sent_messages(engine)] == ["user", "assistant", "user"]
        # Every event on the wire is OpenAI's schema for its type.
        raw = await gateway.client.post(
            "/v1/responses",
            json={"model": ALIAS, "input": "Once more.", "stream": True},
            headers={"x-forwarded-for": "10.0.0.1"},
        )
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in raw.text.split("\n") if line.startswith("data: ")]
        assert len(events) > 4
        numbers = [responses_schema.validate_event(e)["sequence_number"] for e in events]
        assert numbers == sorted(numbers)
        assert "[DONE]" not in raw.text


@pytest.mark.parametrize("stream", [False, True])
async def test_function_tool_round_trip(engine: FakeEngine, stream: bool) -> None:
    async with gateway_for(engine) as gateway, sdk(gateway) as client:
        extra = {"fake": {"tool_call": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}}
        first: Response
        if stream:
            async with client.responses.stream(
                model=ALIAS, input="Weather in Paris?", tools=[WEATHER], extra_body=extra
            ) as events:
                first = await events.get_final_response()
        else:
            first = await client.responses.create(
                model=ALIAS, input="Weather in Paris?", tools=[WEATHER], extra_body=extra
            )
        body = last_chat(engine).body
        assert isinstance(body, dict)
        assert body["tools"][0]["function"]["name"] == "get_weather"
        [call] = [item for item in first.output if item.type == "function_call"]
        assert call.name == "get_weather"
        assert call.arguments == '{"city":"Paris"}'
        second = await client.responses.create(
            model=ALIAS,
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=[WEATHER],
        )
        assert second.status == "completed"
        messages = sent_messages(engine)
        assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
        assert messages[1]["tool_calls"][0]["id"] == call.call_id
        assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": ALIAS, "input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
        ({"model": ALIAS, "input": "x", "tools": [{"type": "file_search"}]}, 400, "tools[0].type"),
        ({"model": ALIAS, "input": "x", "previous_response_id": "resp_nope"}, 404, None),
        ({"model": "nope", "input": "x"}, 404, "model"),
        ({"model": ALIAS}, 400, None),
        ({"model": ALIAS, "input": 3}, 400, "input"),
    ],
)
async def test_refusals_reach_no_engine(
    engine: FakeEngine, body: dict[str, Any], status: int, param: str | None
) -> None:
    async with gateway_for(engine) as gateway:
        before = len([r for r in engine.requests if r.path.startswith("/v1/chat")])
        response = await gateway.client.post("/v1/responses", json=body)
        assert response.status_code == status, response.text
        error = validate_error(response.content)["error"]
        if param is not None:
            assert error["param"] == param
        if body.get("tools"):
            assert body["tools"][0]["type"] in error["message"]
        assert len([r for r in engine.requests if r.path.startswith("/v1/chat")]) == before


async def test_retrieve_and_delete_only_ones_own(engine: FakeEngine) -> None:
    async with gateway_for(engine) as gateway:
        async with sdk(gateway, "10.0.0.1") as ada:
            mine = await ada.responses.create(model=ALIAS, input="hello")
            again = await ada.responses.retrieve(mine.id)
            assert again.id == mine.id
            assert again.output_text == mine.output_text
        async with sdk(gateway, "10.0.0.2") as eve:
            with pytest.raises(openai.NotFoundError):
                await eve.responses.retrieve(mine.id)
            with pytest.raises(openai.NotFoundError):
                await eve.responses.delete(mine.id)
        async with sdk(gateway, "10.0.0.1") as ada:
            await ada.responses.delete(mine.id)
            with pytest.raises(openai.NotFoundError):
                await ada.responses.retrieve(mine.id)
            with pytest.raises(openai.NotFoundError):
                await ada.responses.create(model=ALIAS, input="go on", previous_response_id=mine.id)
