"""The fake engine's `/v1/embeddings` and legacy `/v1/completions`, through the openai client."""

from __future__ import annotations

import asyncio
import base64
import math
import struct

import httpx
import openai
import pytest

from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.fake_engine.embeddings import vector
from tiergate_testkit.fake_engine.responses import MALFORMED_BODY
from tiergate_testkit.openai_schema import (
    validate_embeddings,
    validate_sse,
    validate_text_completion,
    validate_text_completion_chunk,
)

WIDTH = 16  # FakeEngine's default embedding_dim


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


# --- embeddings -------------------------------------------------------------------------------


async def test_embeddings_create_decodes_the_base64_it_asks_for_by_default(
    oai: openai.AsyncOpenAI, engine: FakeEngine
) -> None:
    answer = await oai.embeddings.create(model="other-model", input="hello fake engine")
    (item,) = answer.data
    assert item.embedding == vector("hello fake engine", WIDTH)
    assert math.isclose(norm(item.embedding), 1.0, rel_tol=1e-6)
    assert answer.model == "other-model"
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (3, 3)
    (record,) = engine.requests
    assert record.path == "/v1/embeddings"
    assert record.body == {
        "model": "other-model",
        "input": "hello fake engine",
        "encoding_format": "base64",
    }
    assert (record.outcome, record.status) == ("completed", 200)


async def test_float_answers_match_openais_schema_and_are_deterministic(
    http: httpx.AsyncClient,
) -> None:
    body = {"model": "fake-model", "input": ["a", "b"], "encoding_format": "float"}
    first = validate_embeddings((await http.post("/v1/embeddings", json=body)).content)
    again = validate_embeddings((await http.post("/v1/embeddings", json=body)).content)
    assert first == again
    assert [item["index"] for item in first["data"]] == [0, 1]
    assert first["data"][0]["embedding"] == vector("a", WIDTH)
    assert first["data"][0]["embedding"] != first["data"][1]["embedding"]


async def test_base64_on_the_wire_is_little_endian_float32(http: httpx.AsyncClient) -> None:
    body = {"model": "fake-model", "input": "x", "encoding_format": "base64"}
    answer = validate_embeddings((await http.post("/v1/embeddings", json=body)).content, "base64")
    packed = base64.b64decode(answer["data"][0]["embedding"])
    assert list(struct.unpack(f"<{WIDTH}f", packed)) == vector("x", WIDTH)


async def test_dimensions_shorten_to_a_unit_prefix(oai: openai.AsyncOpenAI) -> None:
    answer = await oai.embeddings.create(model="fake-model", input="x", dimensions=4)
    short = answer.data[0].embedding
    assert len(short) == 4
    assert math.isclose(norm(short), 1.0, rel_tol=1e-6)
    full = vector("x", WIDTH)
    scale = short[0] / full[0]
    assert all(math.isclose(s, f * scale, rel_tol=1e-5) for s, f in zip(short, full, strict=False))


async def test_token_inputs(oai: openai.AsyncOpenAI) -> None:
    one = await oai.embeddings.create(model="fake-model", input=[1, 2, 3])
    assert len(one.data) == 1
    assert one.usage.prompt_tokens == 3
    many = await oai.embeddings.create(model="fake-model", input=[[1, 2], [3]])
    assert [item.embedding for item in many.data] == [vector([1, 2], WIDTH), vector([3], WIDTH)]


async def test_the_width_is_configurable() -> None:
    async with FakeEngine(embedding_dim=3) as engine, httpx.AsyncClient() as http:
        body = {"input": "x", "encoding_format": "float"}
        answer = (await http.post(f"{engine.base_url}/v1/embeddings", json=body)).json()
        assert len(answer["data"][0]["embedding"]) == 3
    with pytest.raises(ValueError, match="embedding_dim"):
        FakeEngine(embedding_dim=0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "x", "dimensions": WIDTH + 1}, "dimensions 17 exceeds"),
        ({"input": []}, "`input` is empty"),
        ({"input": ["a", 1]}, "mixes"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "fake": {"chunks": 3}}, "`fake.chunks` shapes generated text"),
        ({"input": "x", "fake": {"tool_call": {"name": "f"}}}, "`fake.tool_call`"),
    ],
)
async def test_bad_embedding_requests_answer_400(
    http: httpx.AsyncClient, body: dict[str, object], message: str
) -> None:
    response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


async def test_embedding_faults(oai: openai.AsyncOpenAI, http: httpx.AsyncClient) -> None:
    with pytest.raises(openai.RateLimitError):
        await oai.embeddings.create(model="m", input="x", extra_body={"fake": {"status": 429}})
    body = {"input": "x", "fake": {"malformed": True}}
    assert (await http.post("/v1/embeddings", json=body)).content == MALFORMED_BODY
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/v1/embeddings", json={"input": "x", "fake": {"drop_after": 0}})


# --- legacy completions -----------------------------------------------------------------------


async def test_completions_create(oai: openai.AsyncOpenAI, engine: FakeEngine) -> None:
    completion = await oai.completions.create(
        model="other-model", prompt="say something", extra_body={"fake": {"content": "Hi there"}}
    )
    (choice,) = completion.choices
    assert (choice.text, choice.finish_reason, choice.index) == ("Hi there", "stop", 0)
    assert completion.object == "text_completion"
    assert completion.model == "other-model"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 2)
    (record,) = engine.requests
    assert record.path == "/v1/completions"
    assert completion.id == f"cmpl-fake-{record.id}"
    assert record.chunks_sent == 2


async def test_completion_answer_matches_openais_schema(http: httpx.AsyncClient) -> None:
    body = {"model": "fake-model", "prompt": ["a b", "c"], "max_tokens": 2}
    answer = validate_text_completion((await http.post("/v1/completions", json=body)).content)
    assert answer["choices"][0]["text"] == "The quick"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["prompt_tokens"] == 3


async def test_completions_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.completions.create(
        model="fake-model",
        prompt=[1, 2, 3, 4],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=4,
        extra_body={"fake": {"chunks": 9}},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "The quick brown fox"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 4)


async def test_completions_stream_matches_openais_schema(http: httpx.AsyncClient) -> None:
    body = {"model": "fake-model", "prompt": "x", "stream": True, "fake": {"chunks": 2}}
    response = await http.post("/v1/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    chunks = validate_sse(response.content, chunk=validate_text_completion_chunk)
    assert [c["choices"][0]["text"] for c in chunks] == ["The", " quick", ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]


async def test_completion_faults_are_chats(oai: openai.AsyncOpenAI, engine: FakeEngine) -> None:
    fake = {"status": 503, "headers": {"Retry-After": "2"}}
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.completions.create(model="m", prompt="x", extra_body={"fake": fake})
    assert caught.value.response.headers["retry-after"] == "2"
    stream = await oai.completions.create(
        model="m", prompt="x", stream=True, extra_body={"fake": {"drop_after": 2}}
    )
    with pytest.raises(openai.APIConnectionError):
        [_ async for _ in stream]
    async with asyncio.timeout(5):
        await engine.wait_settled()
    assert [r.outcome for r in engine.requests] == ["status", "drop_after"]
    assert engine.requests[1].chunks_sent == 2


async def test_completion_extra_fields_and_tool_call_refused(http: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "fake": {"extra_fields": {"timings": {"n": 1}}}}
    assert (await http.post("/v1/completions", json=body)).json()["timings"] == {"n": 1}
    fake = {"tool_call": {"name": "f"}}
    refused = await http.post("/v1/completions", json={"prompt": "x", "fake": fake})
    assert refused.status_code == 400
    assert "`fake.tool_call` is for chat completions" in refused.json()["error"]["message"]
