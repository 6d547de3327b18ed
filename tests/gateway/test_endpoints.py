"""`/v1/embeddings` and `/v1/completions` through the pipeline, in process, with the official
`openai` client (async: the gateway runs in the test's loop) in front of the fake engine; and a
remote `openai`-kind backend with its own auth header, a key file that rotates, and only
OpenAI's request fields forwarded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest

from tiergate_gateway.app import create_app
from tiergate_gateway.settings import BackendSettings, GatewaySettings, ModelAlias, TierPolicy
from tiergate_proto.identity import Window
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine, RecordedRequest
from tiergate_testkit.openai_schema import validate_error

from .conftest import ALIAS, ENGINE_MODEL, Gateway, gateway_settings, running

EMBED = "tiergate-embed"
EMBED_ENGINE = "engine-embed"


def with_embeddings(engine: FakeEngine, **tier: Any) -> GatewaySettings:
    base = gateway_settings(engine.base_url)
    return msgspec.structs.replace(
        base,
        models=[
            *base.models,
            ModelAlias(
                id=EMBED,
                backend="cpu",
                engine_model=EMBED_ENGINE,
                endpoints=frozenset({"embeddings"}),
            ),
        ],
        tiers={"anonymous": TierPolicy(max_tokens=50, **tier)},
    )


@pytest.fixture
async def mesh() -> AsyncIterator[Gateway]:
    async with FakeEngine(models=[ENGINE_MODEL, EMBED_ENGINE], embedding_dim=8) as engine:
        settings = with_embeddings(engine, tokens=Window(limit=100_000, window_s=60))
        async with running(settings, engine) as gateway:
            yield gateway


def client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anonymous", max_retries=0)


def recorded(engine: FakeEngine, path: str) -> RecordedRequest:
    return [r for r in engine.requests if r.path == path][-1]


async def test_embeddings_every_input_shape_and_both_encodings(mesh: Gateway) -> None:
    async with client(mesh) as sdk:
        await embeddings_checks(sdk, mesh)


async def embeddings_checks(sdk: openai.AsyncOpenAI, mesh: Gateway) -> None:
    one = await sdk.embeddings.create(model=EMBED, input="hello world")
    assert one.model == EMBED
    assert len(one.data) == 1
    assert len(one.data[0].embedding) == 8
    assert one.usage.prompt_tokens > 0
    many = await sdk.embeddings.create(model=EMBED, input=["a", "b", "c"])
    assert [d.index for d in many.data] == [0, 1, 2]
    tokens = await sdk.embeddings.create(model=EMBED, input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2
    # The SDK asks for base64 by default and decodes it; a raw request shows the wire shape.
    raw = await mesh.client.post(
        "/v1/embeddings", json={"model": EMBED, "input": "hello world", "encoding_format": "base64"}
    )
    assert raw.status_code == 200
    packed = base64.b64decode(raw.json()["data"][0]["embedding"])
    floats = list(struct.unpack(f"<{len(packed) // 4}f", packed))
    assert floats == pytest.approx(one.data[0].embedding, abs=1e-6)
    assert raw.headers["x-tiergate-tier"] == "anonymous"
    assert raw.headers["x-tiergate-model"] == EMBED
    assert "x-ratelimit-remaining-tokens" in raw.headers
    sent = recorded(mesh.engine, "/v1/embeddings").body
    assert isinstance(sent, dict)
    assert sent["model"] == EMBED_ENGINE


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/embeddings", {"model": EMBED}, 400, "input"),
        ("/v1/embeddings", {"model": EMBED, "input": ""}, 400, "input"),
        ("/v1/embeddings", {"model": EMBED, "input": 3.5}, 400, "input"),
        ("/v1/embeddings", {"model": EMBED, "input": "x", "encoding_format": "hex"}, 400, None),
        ("/v1/embeddings", {"model": ALIAS, "input": "x"}, 400, "model"),  # a chat model
        ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, "model"),
        (
            "/v1/chat/completions",
            {"model": EMBED, "messages": [{"role": "user", "content": "x"}]},
            400,
            "model",
        ),
        ("/v1/completions", {"model": EMBED, "prompt": "x"}, 400, "model"),
        ("/v1/completions", {"model": ALIAS}, 400, "prompt"),
        ("/v1/completions", {"model": ALIAS, "prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
        (
            "/v1/completions",
            {"model": ALIAS, "prompt": "x", "stream_options": {}},
            400,
            "stream_options",
        ),
    ],
)
async def test_bad_requests_get_an_envelope_and_reach_no_engine(
    mesh: Gateway, path: str, body: dict[str, Any], status: int, param: str | None
) -> None:
    before = len(mesh.engine.requests)
    response = await mesh.client.post(path, json=body)
    assert response.status_code == status, response.text
    error = validate_error(response.content)["error"]
    if param is not None:
        assert error["param"] == param
    assert [r.path for r in mesh.engine.requests[before:] if r.path.startswith("/v1/")] == []


async def test_completions_stream_and_not_with_the_tier_cap(mesh: Gateway) -> None:
    async with client(mesh) as sdk:
        await completions_checks(sdk, mesh)


async def completions_checks(sdk: openai.AsyncOpenAI, mesh: Gateway) -> None:
    whole = await sdk.completions.create(model=ALIAS, prompt="Once upon a time", max_tokens=500)
    assert whole.object == "text_completion"
    assert whole.model == ALIAS
    assert whole.choices[0].text
    assert whole.usage is not None
    sent = recorded(mesh.engine, "/v1/completions").body
    assert isinstance(sent, dict)
    assert sent["max_tokens"] == 50  # clamped to the tier's cap
    pieces = []
    stream = await sdk.completions.create(
        model=ALIAS, prompt="Once", stream=True, stream_options={"include_usage": True}
    )
    usage = None
    async for chunk in stream:
        assert chunk.model == ALIAS
        pieces += [c.text for c in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces)
    assert usage is not None


async def test_a_disallowed_model_is_a_403_for_every_endpoint() -> None:
    async with FakeEngine(models=[ENGINE_MODEL, EMBED_ENGINE]) as engine:
        settings = msgspec.structs.replace(
            with_embeddings(engine), tiers={"anonymous": TierPolicy(models=[ALIAS])}
        )
        async with running(settings, engine) as gateway:
            response = await gateway.client.post(
                "/v1/embeddings", json={"model": EMBED, "input": "x"}
            )
    assert response.status_code == 403
    assert validate_error(response.content)["error"]["code"] == "model_not_allowed"


@contextlib.asynccontextmanager
async def remote(engine: FakeEngine, key_file: Path) -> AsyncIterator[Gateway]:
    base = gateway_settings(engine.base_url)
    settings = msgspec.structs.replace(
        base,
        backends={
            "cpu": BackendSettings(
                base_url=f"{engine.base_url}/v1",
                kind="openai",
                api_key_file=str(key_file),
                auth_header="api-key",
            )
        },
    )
    async with running(settings, engine) as gateway:
        yield gateway


async def test_a_remote_openai_backend_gets_its_header_a_rotated_key_and_only_openai_fields(
    engine: FakeEngine, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("first-key\n")
    async with remote(engine, key_file) as gateway:
        body = {
            "model": ALIAS,
            "messages": [{"role": "user", "content": "hi"}],
            "top_k": 40,  # an engine extra: a strict remote API would refuse it
            "temperature": 0.5,
        }
        response = await gateway.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        first = recorded(engine, "/v1/chat/completions")
        assert first.headers["api-key"] == "first-key"  # the key alone in its own header
        assert "authorization" not in first.headers
        assert isinstance(first.body, dict)
        assert "top_k" not in first.body
        assert first.body["temperature"] == 0.5
        key_file.write_text("second-key-rotated\n")
        for _ in range(30):  # re-read within about a second, without a restart
            await gateway.client.post("/v1/chat/completions", json=body)
            if recorded(engine, "/v1/chat/completions").headers["api-key"] != "first-key":
                break
            await asyncio.sleep(0.1)
        assert recorded(engine, "/v1/chat/completions").headers["api-key"] == "second-key-rotated"


async def test_an_engine_backend_gets_the_extras(engine: FakeEngine) -> None:
    async with running(gateway_settings(engine.base_url), engine) as gateway:
        body = {"model": ALIAS, "messages": [{"role": "user", "content": "hi"}], "top_k": 40}
        assert (await gateway.client.post("/v1/chat/completions", json=body)).status_code == 200
    sent = recorded(engine, "/v1/chat/completions").body
    assert isinstance(sent, dict)
    assert sent["top_k"] == 40


async def test_an_injected_transport_needs_no_socket() -> None:
    """httpx's MockTransport as the backend: the pipeline runs without an engine process."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                "model": EMBED_ENGINE,
                "usage": {"prompt_tokens": 2, "total_tokens": 2},
            },
        )

    settings = msgspec.structs.replace(
        gateway_settings("http://engine.invalid"),
        models=[
            ModelAlias(
                id=EMBED,
                backend="cpu",
                engine_model=EMBED_ENGINE,
                endpoints=frozenset({"embeddings"}),
            )
        ],
    )
    app = create_app(settings, transports={"cpu": httpx.MockTransport(answer)})
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/embeddings", json={"model": EMBED, "input": "hi"})
        # An engine that ignores `dimensions` (it answers 2 values to a request for 8): the
        # client gets a 400, never vectors of another width than it asked for.
        wrong = await http.post(
            "/v1/embeddings", json={"model": EMBED, "input": "hi", "dimensions": 8}
        )
        right = await http.post(
            "/v1/embeddings",
            json={"model": EMBED, "input": "hi", "dimensions": 2, "encoding_format": "base64"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["embedding"] == [0.5, 0.25]
    assert [str(r.url) for r in seen] == ["http://engine.invalid/v1/embeddings"] * 3
    assert wrong.status_code == 400
    assert validate_error(wrong.content)["error"]["param"] == "dimensions"
    assert right.status_code == 200, right.text
