"""`cache_prompt` for llama.cpp: on unless the client says otherwise, and only for llama.cpp."""

from __future__ import annotations

import msgspec
import pytest

from tiergate_testkit.fake_engine import FakeEngine

from .conftest import chat_body, gateway_settings, last_chat, running


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("llamacpp", {}, True),
        ("llamacpp", {"cache_prompt": False}, False),  # the client's choice is kept
        ("vllm", {}, None),  # other engines never see a llama.cpp field they did not get
    ],
    ids=["llamacpp-default", "llamacpp-client-off", "vllm-untouched"],
)
async def test_cache_prompt(
    engine: FakeEngine, kind: str, extra: dict[str, object], expected: bool | None
) -> None:
    settings = gateway_settings(engine.base_url)
    backend = msgspec.structs.replace(settings.backends["cpu"], kind=kind, slots=4)
    settings = msgspec.structs.replace(settings, backends={"cpu": backend})
    async with running(settings, engine) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=chat_body(**extra))
        assert response.status_code == 200
        sent = last_chat(engine).body
        assert isinstance(sent, dict)
        assert sent.get("cache_prompt") is expected
