"""cpu-llm's `/v1/embeddings` with the real all-MiniLM-L6-v2 in a second llama.cpp server.

Driven with the official openai client (which asks for base64 and decodes it) and with plain
HTTP for the float format and the error envelopes. One thread per engine and a fixed seed keep
the two engines steady on a busy 2-core machine; the converted model lives in a cache
directory made for this module.
"""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tiergate_testkit.openai_schema import validate_embeddings, validate_error
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

PREFIX = "TIERGATE_CPU_LLM_"
MODEL = "all-minilm-l6-v2"
DIMENSIONS = 384
MAX_INPUTS = 16
HELLO_WORLD = [101, 7592, 2088, 102]  # [CLS] hello world [SEP] in the model's WordPiece vocab


def service_env(cache: Path, **extra: str) -> dict[str, str]:
    return {
        f"{PREFIX}ENGINE__THREADS": "1",
        f"{PREFIX}ENGINE__PARALLEL": "1",
        f"{PREFIX}ENGINE__CTX_SIZE": "1024",
        f"{PREFIX}ENGINE__SEED": "42",
        f"{PREFIX}EMBEDDING__THREADS": "1",
        f"{PREFIX}EMBEDDING__PARALLEL": "2",
        f"{PREFIX}EMBEDDING__CTX_SIZE": "1024",
        f"{PREFIX}EMBEDDING__MAX_INPUTS": str(MAX_INPUTS),
        f"{PREFIX}EMBEDDING__CACHE_DIR": str(cache),
        f"{PREFIX}EMBEDDING__HEALTH_INTERVAL_S": "0.3",
        f"{PREFIX}EMBEDDING__UNHEALTHY_RESTARTS_AFTER": "3",
        f"{PREFIX}EMBEDDING__STOP_GRACE_S": "2",
        f"{PREFIX}EMBEDDING__RESTART_BACKOFF_S": "0.2",
        **extra,
    }


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


def cpu_llm(env: dict[str, str]) -> ServiceProcess:
    """cpu-llm, ready once its embedding engine is (see `chat_ready` for the other)."""
    return ServiceProcess("tiergate_cpu_llm", PREFIX, env, ready_path="/readyz/embeddings")


def chat_ready(proc: ServiceProcess) -> None:
    """Wait for the chat engine too (`/readyz` is its readiness alone)."""
    with httpx.Client(base_url=proc.base_url, timeout=5) as http:
        ready = wait_until(lambda: http.get("/readyz").status_code == 200, 90)
    assert ready, "the chat engine did not become ready"


@pytest.fixture(scope="module")
def service(cache: Path) -> Iterator[ServiceProcess]:
    with cpu_llm(service_env(cache)) as proc:
        chat_ready(proc)
        yield proc


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        yield client


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{service.base_url}/v1", api_key="unused", max_retries=0
    ) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def embed(http: httpx.Client, payload: Any, **fields: Any) -> list[list[float]]:
    answer = http.post("/v1/embeddings", json={"input": payload, **fields})
    assert answer.status_code == 200, answer.text
    body = validate_embeddings(answer.content)
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    return [d["embedding"] for d in body["data"]]


def child_pids(service: ServiceProcess, child: str) -> list[int]:
    """Pids of the engine children named `child`, in start order, from the service's log."""
    pids = []
    for line in service.output().splitlines():
        if '"child_started"' in line:
            record = json.loads(line)
            if record["child"] == child:
                pids.append(int(record["pid"]))
    return pids


def test_openai_client_string_and_list(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model=MODEL, input="The cat sleeps on the sofa.")
    assert len(one.data) == 1
    vector = one.data[0].embedding
    assert len(vector) == DIMENSIONS
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    assert one.usage.prompt_tokens == one.usage.total_tokens > 2
    assert one.model == MODEL
    many = client.embeddings.create(model=MODEL, input=["one", "two words", "three more words"])
    assert [d.index for d in many.data] == [0, 1, 2]
    assert many.usage.prompt_tokens > one.usage.prompt_tokens // 2
    again = client.embeddings.create(model=MODEL, input=["The cat sleeps on the sofa."])
    assert cosine(again.data[0].embedding, vector) > 0.9999


def test_float_and_base64_formats_agree(http: httpx.Client) -> None:
    [floats] = embed(http, "How do I reset my password?", encoding_format="float")
    answer = http.post(
        "/v1/embeddings",
        json={"input": "How do I reset my password?", "encoding_format": "base64"},
    )
    assert answer.status_code == 200
    body = validate_embeddings(answer.content, "base64")
    raw = base64.b64decode(body["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{DIMENSIONS}f", raw))
    assert max(abs(a - b) for a, b in zip(decoded, floats, strict=True)) < 1e-6
    assert body["usage"]["prompt_tokens"] > 0


def test_token_arrays_are_embedded_as_given(http: httpx.Client) -> None:
    [text] = embed(http, "hello world")
    [tokens] = embed(http, HELLO_WORLD)
    assert cosine(text, tokens) > 0.9999  # text gets [CLS] ... [SEP]; token ids are as sent
    both = embed(http, [HELLO_WORLD, [101, 7592, 102]])
    assert len(both) == 2
    assert cosine(both[0], text) > 0.9999
    assert cosine(both[1], text) < 0.99
    [bare] = embed(http, [7592, 2088])  # no special tokens added: a different vector
    assert cosine(bare, text) < 0.99


def test_paraphrases_are_closer_than_unrelated_sentences(http: httpx.Client) -> None:
    sentences = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "How do I reset my password?",
        "I forgot my password, how can I change it?",
        "The stock market fell sharply today.",
        "Share prices dropped steeply on Monday.",
    ]
    v = embed(http, sentences)
    paraphrases = [cosine(v[0], v[1]), cosine(v[2], v[3]), cosine(v[4], v[5])]
    unrelated = [cosine(v[0], v[2]), cosine(v[1], v[4]), cosine(v[3], v[5]), cosine(v[0], v[5])]
    assert min(paraphrases) > 0.5
    assert max(unrelated) < 0.25
    assert min(paraphrases) > max(unrelated) + 0.3


def test_longest_input_the_model_takes(http: httpx.Client) -> None:
    [vector] = embed(http, " ".join(["word"] * 510))  # + [CLS] and [SEP]: 512 tokens
    assert len(vector) == DIMENSIONS
    [same] = embed(http, "x", dimensions=DIMENSIONS)  # the model's own width is fine
    assert len(same) == DIMENSIONS


@pytest.mark.parametrize(
    ("payload", "status", "param", "code"),
    [
        ({}, 400, "input", None),
        ({"input": ""}, 400, "input", None),
        ({"input": []}, 400, "input", None),
        ({"input": [""]}, 400, "input", None),
        ({"input": ["a", 5]}, 400, "input", None),
        ({"input": 5}, 400, "input", None),
        ({"input": {"text": "a"}}, 400, "input", None),
        ({"input": None}, 400, "input", None),
        ({"input": [[101], []]}, 400, "input", None),
        ({"input": [-1]}, 400, "input", None),
        ({"input": [99_999_999]}, 400, "input", None),  # outside the vocabulary: the engine's
        ({"input": ["a"] * (MAX_INPUTS + 1)}, 400, "input", None),
        ({"input": [1] * 600}, 400, "input", "context_length_exceeded"),
        ({"input": " ".join(["word"] * 600)}, 400, "input", "context_length_exceeded"),
        ({"input": " ".join(["word"] * 511)}, 400, "input", "context_length_exceeded"),
        ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format", None),
        ({"input": "a", "dimensions": 128}, 400, "dimensions", None),
        ({"input": "a", "dimensions": "384"}, 400, "dimensions", None),
        ({"input": "a", "model": 5}, 400, "model", None),
    ],
)
def test_errors_are_envelopes(
    http: httpx.Client, payload: dict[str, Any], status: int, param: str | None, code: str | None
) -> None:
    answer = http.post("/v1/embeddings", json=payload)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = validate_error(answer.content)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert (body["error"]["param"], body["error"]["code"]) == (param, code)
    assert "Traceback" not in answer.text


def test_bodies_that_are_not_requests(http: httpx.Client) -> None:
    for raw in (b"not json", b"[1, 2]", b'{"input": "a"'):
        answer = http.post(
            "/v1/embeddings", content=raw, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert validate_error(answer.content)["error"]["type"] == "invalid_request_error"
    wrong_method = http.get("/v1/embeddings")
    assert wrong_method.status_code == 405
    validate_error(wrong_method.content)


def test_models_readiness_and_chat_beside_embeddings(http: httpx.Client) -> None:
    models = http.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["smollm2-135m-instruct", MODEL]
    embedder = models["data"][1]
    assert embedder["meta"]["n_embd"] == DIMENSIONS
    assert embedder["meta"]["n_ctx_train"] == 512
    assert http.get("/readyz").content == b'{"status":"ok"}'
    assert http.get("/readyz/embeddings").content == b'{"status":"ok"}'
    metrics = http.get("/metrics").text
    assert "tiergate_cpu_llm_engine_ready 1.0" in metrics
    assert "tiergate_cpu_llm_embedding_engine_ready 1.0" in metrics
    chat = http.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "seed": 1},
    )
    assert chat.status_code == 200
    assert chat.json()["object"] == "chat.completion"


def test_embedding_engine_is_restarted_after_a_crash_and_a_hang(cache: Path) -> None:
    with cpu_llm(service_env(cache)) as proc, httpx.Client(base_url=proc.base_url) as http:
        chat_ready(proc)
        [first] = child_pids(proc, "llama-server-embedding")
        [chat] = child_pids(proc, "llama-server")

        def embeddings_ready() -> bool:
            return http.get("/readyz/embeddings").status_code == 200

        def refused() -> bool:
            try:
                answer = http.post("/v1/embeddings", json={"input": "a"}, timeout=1)
            except httpx.TimeoutException:
                return False  # still relayed: the hung engine does not answer
            if answer.status_code == 200:
                return False
            # Relayed in the moment the engine died, before supervision noticed: a 502.
            assert answer.status_code in (502, 503), answer.text
            assert answer.headers["retry-after"]
            code = validate_error(answer.content)["error"]["code"]
            assert code == ("service_unavailable" if answer.status_code == 503 else "bad_gateway")
            return answer.status_code == 503

        os.kill(first, signal.SIGKILL)
        assert wait_until(refused, 10), "a dead embedding engine's requests are refused"
        # Chat stays ready: /readyz is the chat engine's.
        assert http.get("/readyz").status_code == 200
        assert wait_until(lambda: len(child_pids(proc, "llama-server-embedding")) == 2, 15)
        assert wait_until(embeddings_ready, 30), "embedding engine back after a crash"
        assert len(embed(http, "back again")[0]) == DIMENSIONS

        second = child_pids(proc, "llama-server-embedding")[1]
        os.kill(second, signal.SIGSTOP)
        assert wait_until(lambda: not embeddings_ready(), 5), "readiness withdrawn when hung"
        assert http.get("/readyz").status_code == 200
        assert wait_until(refused, 5), "a hung embedding engine's requests are refused"
        # ...but a client's mistake is still a 400, not a 503 to retry.
        mistake = http.post("/v1/embeddings", json={"input": ""}, timeout=2)
        assert mistake.status_code == 400, mistake.text
        assert wait_until(lambda: len(child_pids(proc, "llama-server-embedding")) == 3, 15)
        assert wait_until(embeddings_ready, 30), "embedding engine back after a hang"
        assert len(embed(http, "and again")[0]) == DIMENSIONS
        assert child_pids(proc, "llama-server") == [chat]  # the chat engine was never touched


def test_embeddings_can_be_turned_off(cache: Path) -> None:
    env = service_env(cache, **{f"{PREFIX}EMBEDDING__ENABLED": "false"})
    with (
        ServiceProcess("tiergate_cpu_llm", PREFIX, env) as proc,
        httpx.Client(base_url=proc.base_url, timeout=10) as http,
    ):
        answer = http.post("/v1/embeddings", json={"input": "a"})
        assert answer.status_code == 404
        assert validate_error(answer.content)["error"]["code"] == "unsupported_endpoint"
        assert http.get("/readyz/embeddings").status_code == 404
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["smollm2-135m-instruct"]
        assert child_pids(proc, "llama-server-embedding") == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {f"{PREFIX}EMBEDDING__MODEL_PATH": "/nonexistent/embedder.gguf"},
            "model file not found: /nonexistent/embedder.gguf",
        ),
        (
            {f"{PREFIX}EMBEDDING__MODEL_PACKAGE": "no-such-package-tiergate"},
            "'no-such-package-tiergate' that ships the embedding model is not installed",
        ),
        ({f"{PREFIX}EMBEDDING__QUANTIZATION": "q4_k"}, "invalid setting embedding.quantization"),
        ({f"{PREFIX}EMBEDDING__POOLING": "max"}, "invalid setting embedding.pooling"),
    ],
)
def test_bad_embedding_config_is_a_clear_error(
    env: dict[str, str], message: str, cache: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tiergate_cpu_llm"],
        env={**os.environ, **service_env(cache), f"{PREFIX}SERVER__PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
