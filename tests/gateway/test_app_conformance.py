"""Every answer the gateway sends is OpenAI's schema, whatever the engine sent (issue 10).

Against the fake engine, which (like some engines) sends `"system_fingerprint": null`, and
adds extras on request: non-streaming bodies, every stream chunk, tool-call streams, models,
error envelopes; a malformed engine event ends the stream with our error event and `[DONE]`,
or is a 502 when nothing reached the client yet.
"""

from __future__ import annotations

from typing import Any

import msgspec
import openai
import pytest

from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import BackendSettings, ModelAlias, TierPolicy
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.openai_schema import (
    validate_chat_completion,
    validate_error,
    validate_model,
    validate_model_list,
    validate_sse,
)

from .conftest import ALIAS, Gateway, chat_body, gateway_settings, last_chat, running

CHAT = "/v1/chat/completions"
EXTRAS = {"timings": {"predicted_n": 5, "predicted_ms": 12.5}, "kv_transfer_params": None}
CALL = {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 3}', "id": "call_7"}


def client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anonymous", max_retries=0)


async def test_non_stream_answer_is_openais_shape(gateway: Gateway) -> None:
    response = await gateway.client.post(CHAT, json=chat_body(fake={"extra_fields": EXTRAS}))
    answer = validate_chat_completion(response.content)
    assert answer["model"] == ALIAS
    (choice,) = answer["choices"]
    assert choice["logprobs"] is None
    assert choice["message"]["refusal"] is None
    assert "system_fingerprint" not in answer  # the fake's null
    assert not set(EXTRAS) & set(answer)


@pytest.mark.parametrize("include_usage", [False, True])
async def test_every_stream_chunk_is_openais_shape(gateway: Gateway, include_usage: bool) -> None:
    body = chat_body(
        stream=True,
        stream_options={"include_usage": include_usage},
        fake={"extra_fields": EXTRAS},
    )
    events = validate_sse((await gateway.client.post(CHAT, json=body)).content)
    assert {e["model"] for e in events} == {ALIAS}
    assert all(not set(EXTRAS) & set(e) for e in events)
    assert (events[-1]["choices"] == []) is include_usage


async def test_kept_extras_reach_the_client(engine: FakeEngine) -> None:
    settings = gateway_settings(engine.base_url, keep_extras=frozenset({"timings"}))
    async with running(settings, engine) as gateway:
        fake = {"extra_fields": EXTRAS}
        whole = validate_chat_completion(
            (await gateway.client.post(CHAT, json=chat_body(fake=fake))).content
        )
        assert whole["timings"] == EXTRAS["timings"]
        assert "kv_transfer_params" not in whole
        stream = await gateway.client.post(CHAT, json=chat_body(stream=True, fake=fake))
        events = validate_sse(stream.content)
        assert all(e["timings"] == EXTRAS["timings"] for e in events)
        assert all("kv_transfer_params" not in e for e in events)


async def test_tool_call_stream_through_the_openai_client(gateway: Gateway) -> None:
    oai = client(gateway)
    stream = await oai.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "weather?"}],
        stream=True,
        extra_body={"fake": {"tool_call": {**CALL, "pieces": 5}}},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    await oai.close()
    assert calls == {0: {"id": "call_7", "name": "get_weather", "arguments": CALL["arguments"]}}
    assert finish == "tool_calls"
    # And the raw chunks the client parsed are OpenAI's chunks.
    raw = await gateway.client.post(
        CHAT, json=chat_body(stream=True, fake={"tool_call": {**CALL, "pieces": 5}})
    )
    events = validate_sse(raw.content)
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[1]["tool_calls"][0] == {
        "index": 0,
        "id": "call_7",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }


async def test_tool_call_answer_is_openais_shape(gateway: Gateway) -> None:
    response = await gateway.client.post(CHAT, json=chat_body(fake={"tool_call": CALL}))
    (choice,) = validate_chat_completion(response.content)["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": CALL["arguments"],
    }


async def test_the_first_tool_call_delta_is_the_first_token(engine: FakeEngine) -> None:
    # Held back until the first token, at most 0.5 s: the call's first delta comes at once,
    # its arguments over ~2 s. Were the call not a token, the lead-in would time out (504).
    settings = gateway_settings(engine.base_url, first_token_timeout_s=0.5)
    async with running(settings, engine) as gateway:
        fake = {"tool_call": {**CALL, "pieces": 4}, "tokens_per_s": 2}
        response = await gateway.client.post(CHAT, json=chat_body(stream=True, fake=fake))
        assert response.status_code == 200
        events = validate_sse(response.content)
        arguments = "".join(
            e["choices"][0]["delta"]
            .get("tool_calls", [{}])[0]
            .get("function", {})
            .get("arguments", "")
            for e in events
            if e["choices"]
        )
        assert arguments == CALL["arguments"]
        metrics = (await gateway.client.get("/metrics")).text
    count = (
        "tiergate_gateway_time_to_first_token_seconds_count"
        '{backend="cpu",model="tiergate-small",tier="anonymous"}'
    )
    assert f"{count} 1.0" in metrics
    # ... and well under the answer's own duration.
    assert '_bucket{backend="cpu",le="0.5",model="tiergate-small",tier="anonymous"} 1.0' in metrics


async def test_a_malformed_event_mid_stream_ends_with_our_error_then_done(
    gateway: Gateway,
) -> None:
    response = await gateway.client.post(
        CHAT, json=chat_body(stream=True, fake={"malformed": True})
    )
    assert response.status_code == 200  # the role chunk went out before the garbage
    events = validate_sse(response.content)  # every event is JSON, the last is [DONE]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    error = events[-1]["error"]
    assert error["code"] == "upstream_stream_error"
    assert "malformed event" in error["message"]
    assert b"<garbage>" not in response.content
    metrics = (await gateway.client.get("/metrics")).text
    assert 'tiergate_gateway_upstream_errors_total{backend="cpu",kind="midstream"} 1.0' in metrics
    assert (
        'tiergate_gateway_upstream_calls_total{api="chat",backend="cpu",mode="stream",'
        'model="tiergate-small",outcome="upstream_error"} 1.0' in metrics
    )
    assert last_chat(gateway.engine).outcome == "malformed"


async def test_the_openai_client_raises_api_error_not_json_decode_error(gateway: Gateway) -> None:
    oai = client(gateway)
    stream = await oai.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_body={"fake": {"malformed": True}},
    )
    with pytest.raises(openai.APIError, match="malformed event"):
        async for _ in stream:
            pass
    await oai.close()


async def test_a_malformed_first_event_is_a_502_before_the_first_byte(engine: FakeEngine) -> None:
    settings = gateway_settings(engine.base_url, first_token_timeout_s=2)
    async with running(settings, engine) as gateway:
        response = await gateway.client.post(
            CHAT, json=chat_body(stream=True, fake={"malformed": True})
        )
        assert response.status_code == 502
        error = validate_error(response.content)["error"]
        assert "malformed event before its first token" in error["message"]
        assert response.headers["retry-after"] == "1"
        metrics = (await gateway.client.get("/metrics")).text
    assert 'tiergate_gateway_upstream_errors_total{backend="cpu",kind="protocol"} 1.0' in metrics


async def test_a_malformed_first_event_falls_back_to_the_next_model(engine: FakeEngine) -> None:
    async with FakeEngine(models=["engine-large"], default_fake={"malformed": True}) as broken:
        base = gateway_settings(engine.base_url)
        settings = msgspec.structs.replace(
            base,
            backends={
                **base.backends,
                "gpu": BackendSettings(base_url=f"{broken.base_url}/v1", first_token_timeout_s=2),
            },
            models=[
                *base.models,
                ModelAlias(id="tiergate-large", backend="gpu", engine_model="engine-large"),
                ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
            ],
            routes=[RouteRule(models=["tiergate-large", ALIAS])],
            tiers={"anonymous": TierPolicy(max_tokens=100)},
        )
        async with running(settings, engine) as gateway:
            response = await gateway.client.post(
                CHAT, json=chat_body(model="tiergate", stream=True)
            )
            assert response.status_code == 200
            assert response.headers["x-tiergate-fallback-from"] == "gpu"
            events = validate_sse(response.content)
            assert {e["model"] for e in events} == {ALIAS}


async def test_models_and_error_envelopes_are_openais_shape(gateway: Gateway) -> None:
    validate_model_list((await gateway.client.get("/v1/models")).content)
    validate_model((await gateway.client.get(f"/v1/models/{ALIAS}")).content)
    failing: list[tuple[str, str, Any, int]] = [
        ("GET", "/v1/models/nope", None, 404),
        ("POST", CHAT, chat_body(model="nope"), 404),
        ("POST", CHAT, chat_body(temperature=9), 400),
        ("POST", CHAT, {"model": ALIAS, "messages": "x"}, 400),
        ("POST", CHAT, chat_body(fake={"status": 500}), 502),
        ("POST", CHAT, chat_body(fake={"malformed": True}), 502),
        ("GET", CHAT, None, 405),
        ("GET", "/v2/nothing", None, 404),
    ]
    for method, path, body, status in failing:
        response = await gateway.client.request(method, path, json=body)
        assert response.status_code == status, (path, body, response.text)
        validate_error(response.content)
    # An error event mid-stream is the same envelope (validate_sse checks it).
    stream = await gateway.client.post(CHAT, json=chat_body(stream=True, fake={"drop_after": 1}))
    assert "error" in validate_sse(stream.content)[-1]
