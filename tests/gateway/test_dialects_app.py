"""Engine dialects through the real app: what the fake engine receives, per backend and model."""

from __future__ import annotations

from typing import Any

import msgspec

from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import BackendSettings, GatewaySettings, ModelAlias
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import ALIAS, ENGINE_MODEL, chat_body, gateway_settings, last_chat, running


def with_backend(engine: FakeEngine, **changes: Any) -> GatewaySettings:
    settings = gateway_settings(engine.base_url)
    backend = msgspec.structs.replace(settings.backends["cpu"], **changes)
    return msgspec.structs.replace(settings, backends={"cpu": backend})


def sent_to(engine: FakeEngine, path: str = "/v1/chat/completions") -> dict[str, Any]:
    body = [r for r in engine.requests if r.path == path][-1].body
    assert isinstance(body, dict)
    return body


# The model's turn rule reaches the adapter only when create_app passes the model aliases to
# each Upstream (`Upstream(..., models=settings.models)`, app.py): until the lead wires it this
# test fails as expected; strict, so it says so once it passes.
async def test_a_mistral_like_model_gets_alternating_turns(engine: FakeEngine) -> None:
    settings = with_backend(engine, kind="sglang")
    model = msgspec.structs.replace(settings.models[0], turns="alternating")
    settings = msgspec.structs.replace(settings, models=[model])
    messages = [
        {"role": "user", "content": "first"},
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "second"},
        {"role": "system", "content": "in English"},
    ]
    async with running(settings, engine) as gateway:
        answer = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(messages=messages)
        )
        assert answer.status_code == 200
        assert sent_to(engine)["messages"] == [
            {"role": "system", "content": "be brief\n\nin English"},
            {"role": "user", "content": "first\n\nsecond"},
        ]


async def test_llamacpp_gets_max_tokens_and_system(engine: FakeEngine) -> None:
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "again"},  # as sent: this model's turns are `as_sent`
    ]
    async with running(with_backend(engine, kind="llamacpp", slots=4), engine) as gateway:
        answer = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(messages=messages, max_completion_tokens=7)
        )
        assert answer.status_code == 200
        sent = last_chat(engine).body
        assert isinstance(sent, dict)
        assert sent["max_tokens"] == 7
        assert "max_completion_tokens" not in sent
        assert [m["role"] for m in sent["messages"]] == ["system", "user", "user"]


async def test_vllm_gets_max_completion_tokens_as_sent(engine: FakeEngine) -> None:
    async with running(with_backend(engine, kind="vllm"), engine) as gateway:
        answer = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(max_completion_tokens=7)
        )
        assert answer.status_code == 200
        sent = sent_to(engine)
        assert sent["max_completion_tokens"] == 7
        assert "max_tokens" not in sent


async def test_dropped_fields_never_reach_the_engine(engine: FakeEngine) -> None:
    settings = with_backend(engine, kind="llamacpp", slots=4, drop_fields=frozenset({"seed"}))
    async with running(settings, engine) as gateway:
        chat = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(seed=3, temperature=0)
        )
        assert chat.status_code == 200
        sent = sent_to(engine)
        assert "seed" not in sent
        assert sent["temperature"] == 0
        legacy = await gateway.client.post(
            "/v1/completions",
            json={"model": ALIAS, "prompt": "Once", "best_of": 1, "echo": False, "seed": 1},
        )
        assert legacy.status_code == 200, legacy.text
        sent = sent_to(engine, "/v1/completions")
        assert not {"best_of", "echo", "seed"} & set(sent)
        assert sent["prompt"] == "Once"


def speculation_settings(cpu: FakeEngine, spec: FakeEngine, nospec: FakeEngine) -> GatewaySettings:
    """config/gateway.toml's GPU pattern: one vLLM engine with speculative decoding, one
    without for JSON (services/gateway/design.md, Dialects)."""
    base = gateway_settings(cpu.base_url)
    return msgspec.structs.replace(
        base,
        backends={
            **base.backends,
            "qwen": BackendSettings(base_url=f"{spec.base_url}/v1", kind="vllm"),
            "qwen_nospec": BackendSettings(base_url=f"{nospec.base_url}/v1", kind="vllm"),
        },
        models=[
            *base.models,
            ModelAlias(id="tiergate-qwen", backend="qwen", engine_model="qwen-spec"),
            ModelAlias(id="tiergate-qwen-json", backend="qwen_nospec", engine_model="qwen-nospec"),
            ModelAlias(id="tiergate", backend="cpu", engine_model=ENGINE_MODEL, routed=True),
        ],
        routes=[
            RouteRule(workload="json", models=["tiergate-qwen-json", ALIAS]),
            RouteRule(workload="code", models=["tiergate-qwen", ALIAS]),
            RouteRule(models=["tiergate-qwen", ALIAS]),
        ],
    )


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
    },
}


async def test_json_reaches_the_engine_without_speculation(engine: FakeEngine) -> None:
    async with (
        FakeEngine(models=["qwen-spec"]) as spec,
        FakeEngine(models=["qwen-nospec"]) as nospec,
        running(speculation_settings(engine, spec, nospec), engine) as gateway,
    ):
        json_answer = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(
                model="tiergate",
                messages=[{"role": "user", "content": "Give me a JSON object with key a."}],
                response_format=SCHEMA,
            ),
        )
        assert json_answer.status_code == 200
        assert json_answer.headers["x-tiergate-workload"].startswith("json")
        assert json_answer.headers["x-tiergate-model"] == "tiergate-qwen-json"
        assert sent_to(nospec)["response_format"] == SCHEMA
        assert sent_to(nospec)["model"] == "qwen-nospec"

        code_answer = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(
                model="tiergate",
                messages=[{"role": "user", "content": "Write a Python function to sort."}],
            ),
        )
        assert code_answer.status_code == 200
        assert code_answer.headers["x-tiergate-workload"].startswith("code")
        assert code_answer.headers["x-tiergate-model"] == "tiergate-qwen"
        assert sent_to(spec)["model"] == "qwen-spec"
        # Each engine saw only its own workload.
        chats = [r for r in spec.requests if r.path == "/v1/chat/completions"]
        assert len(chats) == 1
        assert "response_format" not in sent_to(spec)
        assert len([r for r in nospec.requests if r.path == "/v1/chat/completions"]) == 1
