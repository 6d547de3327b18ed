"""End to end: `/v1/embeddings`, `/v1/completions` and `/v1/responses` through the gateway to
cpu-llm's real llama.cpp engines (SmolLM2-135M for text, all-MiniLM-L6-v2 for embeddings),
driven by the official `openai` client, sync and async, streaming where it applies."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from tiergate_testkit.openai_schema import validate_error
from tiergate_testkit.services import ServiceProcess

pytestmark = pytest.mark.e2e

ALIAS = "tiergate-small"
EMBED = "tiergate-embed"


@dataclass
class Mesh:
    cpu: ServiceProcess
    gateway: ServiceProcess
    clients: ExitStack = field(default_factory=ExitStack)

    @property
    def api(self) -> str:
        return f"{self.gateway.base_url}/v1"

    def client(self) -> openai.OpenAI:
        return self.clients.enter_context(
            openai.OpenAI(base_url=self.api, api_key="anonymous", max_retries=0, timeout=120)
        )


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    cpu_env = {
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__PARALLEL": "2",
        "TIERGATE_CPU_LLM_ENGINE__CTX_SIZE": "4096",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
        "TIERGATE_CPU_LLM_EMBEDDING__THREADS": "1",
        "TIERGATE_CPU_LLM_EMBEDDING__PARALLEL": "2",
    }
    models = [
        {
            "id": ALIAS,
            "backend": "cpu",
            "engine_model": "smollm2-135m-instruct",
            "tools": False,
        },
        {
            "id": EMBED,
            "backend": "cpu",
            "engine_model": "all-minilm-l6-v2",
            "endpoints": ["embeddings"],
        },
    ]
    tier = {
        "requests": {"limit": 10_000, "window_s": 60},
        "tokens": {"limit": 10_000_000, "window_s": 60},
    }
    with ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", cpu_env) as cpu:
        gateway_env = {
            "TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL": f"{cpu.base_url}/v1",
            "TIERGATE_GATEWAY_BACKENDS__CPU__KIND": "llamacpp",
            "TIERGATE_GATEWAY_BACKENDS__CPU__HEALTH_URL": f"{cpu.base_url}/readyz",
            "TIERGATE_GATEWAY_MODELS": json.dumps(models),
            "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": tier}),
            "TIERGATE_GATEWAY_AUTH__URL": "",
            "TIERGATE_GATEWAY_RAG__URL": "",
        }
        with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", gateway_env) as gateway:
            mesh = Mesh(cpu=cpu, gateway=gateway)
            with mesh.clients:
                yield mesh


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# --- embeddings ---------------------------------------------------------------------------


def test_embeddings_sync_every_input_shape(mesh: Mesh) -> None:
    client = mesh.client()
    raw = client.embeddings.with_raw_response.create(
        model=EMBED,
        input=[
            "The cat sat on the mat.",
            "A cat was sitting on the rug.",
            "Quarterly revenue grew by ten percent.",
        ],
        encoding_format="float",
    )
    assert raw.headers["x-tiergate-tier"] == "anonymous"
    assert raw.headers["x-tiergate-backend"] == "cpu"
    assert "x-ratelimit-remaining-tokens" in raw.headers
    answer = raw.parse()
    assert answer.model == EMBED
    vectors = [d.embedding for d in answer.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert answer.usage.prompt_tokens > 0
    # The SDK's default asks for base64 and decodes it: the same vector as the floats.
    packed = client.embeddings.create(model=EMBED, input="The cat sat on the mat.")
    assert cosine(packed.data[0].embedding, vectors[0]) > 0.9999


async def test_embeddings_async(mesh: Mesh) -> None:
    async with openai.AsyncOpenAI(base_url=mesh.api, api_key="anonymous", max_retries=0) as sdk:
        answers = await asyncio.gather(
            *(sdk.embeddings.create(model=EMBED, input=f"sentence {i}") for i in range(4))
        )
    assert all(len(a.data[0].embedding) == 384 for a in answers)


def test_embeddings_errors_are_envelopes(mesh: Mesh) -> None:
    client = mesh.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=ALIAS, input="a chat model embeds nothing")
    assert validate_error(caught.value.response.content)["error"]["param"] == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBED, input="x", dimensions=8)  # only its 384
    assert validate_error(caught.value.response.content)["error"]["param"] == "dimensions"
    with httpx.Client(base_url=mesh.gateway.base_url, timeout=30) as http:
        bad = http.post("/v1/embeddings", json={"model": EMBED, "input": []})
    assert bad.status_code == 400
    validate_error(bad.content)


# --- legacy completions --------------------------------------------------------------------


def test_completions_sync_stream_and_not(mesh: Mesh) -> None:
    client = mesh.client()
    whole = client.completions.create(
        model=ALIAS, prompt="The capital of France is", max_tokens=8, temperature=0, seed=7
    )
    assert whole.object == "text_completion"
    assert whole.model == ALIAS
    assert whole.choices[0].text
    assert whole.usage is not None
    assert 0 < whole.usage.completion_tokens <= 8
    pieces: list[str] = []
    usage = None
    for chunk in client.completions.create(
        model=ALIAS,
        prompt="Once upon a time",
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        assert chunk.model == ALIAS
        pieces += [c.text for c in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces)
    assert usage is not None


async def test_completions_async_stream(mesh: Mesh) -> None:
    async with openai.AsyncOpenAI(base_url=mesh.api, api_key="anonymous", max_retries=0) as sdk:
        stream = await sdk.completions.create(
            model=ALIAS, prompt="Hello", max_tokens=6, temperature=0, stream=True
        )
        texts = [c.choices[0].text async for c in stream if c.choices]
    assert "".join(texts)


# --- the Responses API ---------------------------------------------------------------------


def test_responses_sync_two_turns(mesh: Mesh) -> None:
    client = mesh.client()
    first = client.responses.create(
        model=ALIAS,
        instructions="Answer in one short sentence.",
        input="My favourite colour is blue.",
        max_output_tokens=24,
        temperature=0,
    )
    assert first.status in {"completed", "incomplete"}
    assert first.output_text
    assert first.usage is not None
    assert first.usage.input_tokens > 0
    second = client.responses.create(
        model=ALIAS,
        previous_response_id=first.id,
        input="What is my favourite colour?",
        max_output_tokens=24,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    assert second.output_text
    # The second turn's prompt carried the first: more input tokens than the question alone.
    assert second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens


def test_responses_stream_helper(mesh: Mesh) -> None:
    # The SDK's helper wants `response.completed` (a capped answer ends `response.incomplete`,
    # as OpenAI's does): room enough for the model to finish its greeting.
    client = mesh.client()
    with client.responses.stream(
        model=ALIAS, input="Say hello.", max_output_tokens=120, temperature=0
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas
    assert final.output_text == "".join(deltas)
    assert final.usage is not None
    assert final.usage.output_tokens > 0


async def test_responses_async_and_another_subjects_id(mesh: Mesh) -> None:
    async with openai.AsyncOpenAI(base_url=mesh.api, api_key="anonymous", max_retries=0) as sdk:
        mine = await sdk.responses.create(model=ALIAS, input="Hi!", max_output_tokens=8)
        assert mine.output_text
        unstored = await sdk.responses.create(
            model=ALIAS, input="Hi!", max_output_tokens=8, store=False
        )
        with pytest.raises(openai.NotFoundError):
            await sdk.responses.create(model=ALIAS, input="again", previous_response_id=unstored.id)


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/v1/embeddings", b"{oops"),
        ("/v1/completions", b'{"model": "tiergate-small", "prompt": 5}'),
        (
            "/v1/responses",
            b'{"model": "tiergate-small", "input": "x", "tools": [{"type": "web_search"}]}',
        ),
    ],
)
def test_raw_errors_are_envelopes(mesh: Mesh, path: str, content: bytes) -> None:
    with httpx.Client(base_url=mesh.gateway.base_url, timeout=30) as http:
        response = http.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error: dict[str, Any] = validate_error(response.content)["error"]
    assert "Traceback" not in response.text
    assert error["message"]
