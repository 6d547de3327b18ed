"""End to end: the official openai client → gateway → cpu-llm → llama.cpp with the real SmolLM2.

Every process is real and listens on an ephemeral port; one thread and fixed seeds keep the
small model steady on a busy 2-core machine.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tiergate_testkit.openai_schema import (
    validate_chat_completion,
    validate_chat_completion_chunk,
    validate_error,
    validate_model,
    validate_model_list,
    validate_sse,
)
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

ALIAS = "tiergate-small"
ENGINE_MODEL = "smollm2-135m-instruct"
BODY_LIMIT = 65536


@dataclass
class Mesh:
    cpu: ServiceProcess
    gateway: ServiceProcess
    # Clients are closed when the mesh stops: an SDK client left to the garbage collector
    # can lose its socket before its own close runs, and the ResourceWarning then fails
    # whichever later test the collection happens in (issue 10).
    clients: ExitStack = field(default_factory=ExitStack)

    @property
    def api(self) -> str:
        return f"{self.gateway.base_url}/v1"

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return self.clients.enter_context(
            openai.OpenAI(base_url=self.api, api_key="anonymous", max_retries=0, **kwargs)
        )


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    cpu_env = {
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__PARALLEL": "2",
        "TIERGATE_CPU_LLM_ENGINE__CTX_SIZE": "4096",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
        "TIERGATE_CPU_LLM_ENGINE__MODEL_ID": ENGINE_MODEL,
    }
    with ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", cpu_env) as cpu:
        gateway_env = {
            "TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL": f"{cpu.base_url}/v1",
            "TIERGATE_GATEWAY_BACKENDS__CPU__KIND": "llamacpp",
            "TIERGATE_GATEWAY_BACKENDS__CPU__HEALTH_URL": f"{cpu.base_url}/readyz",
            "TIERGATE_GATEWAY_MAX_BODY_BYTES": str(BODY_LIMIT),
            "TIERGATE_GATEWAY_HEALTH_PROBE_INTERVAL_S": "1",
            # The relay under test; tiers and limits have their own end-to-end tests.
            "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}}),
            "TIERGATE_GATEWAY_AUTH__URL": "",
        }
        with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", gateway_env) as gateway:
            mesh = Mesh(cpu=cpu, gateway=gateway)
            with mesh.clients:
                yield mesh


def ask(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def test_non_stream_chat_with_usage(mesh: Mesh) -> None:
    client = mesh.client()
    raw = client.chat.completions.with_raw_response.create(
        model=ALIAS,
        messages=ask("What is the capital of France?"),
        max_tokens=24,
        seed=7,
        temperature=0,
    )
    body = validate_chat_completion(raw.http_response.content)  # OpenAI's schema (issue 10)
    assert "timings" not in body  # llama.cpp's extra, not configured to be kept
    assert body["choices"][0]["message"]["refusal"] is None
    assert body["choices"][0]["logprobs"] is None
    completion = raw.parse()
    assert completion.model == ALIAS
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw.headers["x-tiergate-backend"] == "cpu"
    assert raw.headers["x-tiergate-model"] == ALIAS
    assert raw.headers["x-request-id"]


def test_max_tokens_is_honoured(mesh: Mesh) -> None:
    client = mesh.client()
    for limit in (1, 5):
        completion = client.chat.completions.create(
            model=ALIAS,
            messages=ask("Write a long story about a dragon."),
            max_tokens=limit,
            seed=3,
        )
        validate_chat_completion(completion.to_dict())
        assert completion.usage is not None
        assert completion.usage.completion_tokens == limit
        assert completion.choices[0].finish_reason == "length"
    completion = client.chat.completions.create(
        model=ALIAS,
        messages=ask("Write a long story about a dragon."),
        max_completion_tokens=3,
        seed=3,
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_stream_chat_with_usage(mesh: Mesh) -> None:
    client = mesh.client()
    stream = client.chat.completions.create(
        model=ALIAS,
        messages=ask("Say hello."),
        max_tokens=12,
        stream=True,
        seed=1,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    for chunk in chunks:  # as received: the SDK keeps exactly the fields that were sent
        validate_chat_completion_chunk(chunk.to_dict())
    assert {c.model for c in chunks} == {ALIAS}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes in (["length"], ["stop"])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 12


def test_stream_sse_framing_and_no_usage_unless_asked(mesh: Mesh) -> None:
    body = {"model": ALIAS, "messages": ask("Hi"), "max_tokens": 4, "stream": True}
    with httpx.Client(timeout=60) as http:
        response = http.post(f"{mesh.api}/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    validate_sse(response.content)
    assert "timings" not in response.text
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert all(p.get("usage") is None for p in payloads)
    assert all(p["model"] == ALIAS for p in payloads)


def test_models_list(mesh: Mesh) -> None:
    client = mesh.client()
    models = client.models.list()
    assert [m.id for m in models.data] == [ALIAS]
    assert client.models.retrieve(ALIAS).id == ALIAS
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    validate_error(missing.value.response.content)
    with httpx.Client(base_url=mesh.api, timeout=10) as http:
        validate_model_list(http.get("/models").content)
        validate_model(http.get(f"/models/{ALIAS}").content)


@pytest.mark.parametrize("stream", [False, True])
def test_llama_cpp_logprobs_are_openais_shape(mesh: Mesh, stream: bool) -> None:
    # llama.cpp's logprobs lack `refusal` and carry token ids: the gateway fills and drops.
    body = {
        "model": ALIAS,
        "messages": ask("Say hello."),
        "max_tokens": 3,
        "seed": 1,
        "logprobs": True,
        "top_logprobs": 2,
        "stream": stream,
    }
    with httpx.Client(timeout=60) as http:
        response = http.post(f"{mesh.api}/chat/completions", json=body)
    assert response.status_code == 200, response.text
    if stream:
        events = validate_sse(response.content)
        logprobs = [e["choices"][0].get("logprobs") for e in events if e["choices"]]
        token = next(lp for lp in logprobs if lp)["content"][0]
    else:
        choice = validate_chat_completion(response.content)["choices"][0]
        assert choice["logprobs"]["refusal"] is None
        token = choice["logprobs"]["content"][0]
    assert len(token["top_logprobs"]) == 2
    assert "id" not in token


def test_engine_extras_reach_llama_cpp(mesh: Mesh) -> None:
    # `top_k` and `n_probs` are llama.cpp extras, not OpenAI fields: the gateway forwards them.
    client = mesh.client()
    raw = client.chat.completions.with_raw_response.create(
        model=ALIAS,
        messages=ask("Hi"),
        max_tokens=2,
        extra_body={"top_k": 1, "n_probs": 2},
    )
    validate_chat_completion(raw.http_response.content)
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 2


@pytest.mark.parametrize(
    ("call", "error", "status"),
    [
        (
            lambda c: c.chat.completions.create(model="gpt-9", messages=ask("x")),
            openai.NotFoundError,
            404,
        ),
        (
            lambda c: c.chat.completions.create(model=ALIAS, messages=ask("x"), temperature=7),
            openai.BadRequestError,
            400,
        ),
        (
            lambda c: c.chat.completions.create(
                model=ALIAS,
                messages=[{"role": "robot", "content": "x"}],
            ),
            openai.BadRequestError,
            400,
        ),
        (
            lambda c: c.chat.completions.create(model=ALIAS, messages=ask("x" * BODY_LIMIT)),
            openai.APIStatusError,
            413,
        ),
    ],
)
def test_client_errors_through_the_openai_client(
    mesh: Mesh, call: Any, error: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as caught:
        call(mesh.client())
    assert caught.value.status_code == status
    body = validate_error(caught.value.response.content)
    assert set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "param"),
    [
        ("POST", "/v1/chat/completions", b"{oops", {"content-type": "application/json"}, 400, None),
        (
            "POST",
            "/v1/chat/completions",
            b'{"model": "tiergate-small", "messages": [{"role": "user", "content": ["x"]}]}',
            {"content-type": "application/json"},
            400,
            "messages[0].content[0]",
        ),
        ("POST", "/v1/chat/completions", b"model=x", {"content-type": "text/plain"}, 415, None),
        ("GET", "/v1/chat/completions", b"", {}, 405, None),
        ("GET", "/v2/anything", b"", {}, 404, None),
    ],
)
def test_raw_error_cases(
    mesh: Mesh,
    method: str,
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    param: str | None,
) -> None:
    with httpx.Client(base_url=mesh.gateway.base_url, timeout=30) as http:
        response = http.request(method, path, content=content, headers=headers)
    assert response.status_code == status
    error = validate_error(response.content)["error"]
    assert error["param"] == param
    assert "Traceback" not in response.text


def busy_slots(mesh: Mesh) -> int:
    slots = httpx.get(f"{mesh.cpu.base_url}/slots", timeout=5).json()
    return sum(1 for s in slots if s.get("is_processing"))


def test_client_disconnect_mid_stream_stops_the_engine(mesh: Mesh) -> None:
    assert wait_until(lambda: busy_slots(mesh) == 0, 30)
    body = {
        "model": ALIAS,
        "messages": ask("Write a very long essay about the sea."),
        "max_tokens": 2000,
        "stream": True,
        "ignore_eos": True,
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{mesh.api}/chat/completions", json=body) as response,
    ):
        seen = 0
        for line in response.iter_lines():
            if '"content":"' in line:
                seen += 1
            if seen == 3:
                assert busy_slots(mesh) == 1
                break
    # 2000 tokens take well over a minute here; the slot must free up right after we left.
    assert wait_until(lambda: busy_slots(mesh) == 0, 10), "engine kept generating"


def test_concurrent_requests_are_batched_not_queued(mesh: Mesh) -> None:
    """Two streams at once: both slots generate together (continuous batching)."""
    assert wait_until(lambda: busy_slots(mesh) == 0, 30)
    body = {
        "model": ALIAS,
        "messages": ask("Count to one hundred."),
        "max_tokens": 300,
        "stream": True,
        "ignore_eos": True,
    }
    started = threading.Barrier(3, timeout=60)
    release = threading.Event()

    def stream_one() -> None:
        with (
            httpx.Client(timeout=60) as http,
            http.stream("POST", f"{mesh.api}/chat/completions", json=body) as response,
        ):
            # Keep reading (leaving the iterator would close the connection) until released.
            seen = False
            for line in response.iter_lines():
                if not seen and '"content":"' in line:
                    seen = True
                    started.wait()
                if release.is_set():
                    break

    threads = [threading.Thread(target=stream_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        started.wait()
        assert busy_slots(mesh) == 2
    finally:
        release.set()
        for thread in threads:
            thread.join(30)


def test_one_access_log_line_per_request_without_prompt_text(mesh: Mesh) -> None:
    secret = f"prompt-marker-{uuid.uuid4().hex}"
    request_id = f"e2e-{uuid.uuid4().hex}"
    client = mesh.client(default_headers={"x-request-id": request_id})
    client.chat.completions.create(model=ALIAS, messages=ask(secret), max_tokens=3)
    deadline = time.monotonic() + 5
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not lines:
        lines = [
            json.loads(line) for line in mesh.gateway.output().splitlines() if request_id in line
        ]
        time.sleep(0.05)
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request"
    assert line["route"] == "/v1/chat/completions"
    assert line["status"] == 200
    assert line["model"] == ALIAS
    assert line["backend"] == "cpu"
    assert line["completion_tokens"] == 3
    assert line["prompt_tokens"] > 0
    assert line["duration_ms"] > 0
    assert secret not in mesh.gateway.output()
    assert secret not in mesh.cpu.output()


def test_metrics_exposed(mesh: Mesh) -> None:
    mesh.client().chat.completions.create(
        model=ALIAS, messages=ask("Hi"), max_tokens=2, stream=True
    ).close()
    text = httpx.get(f"{mesh.gateway.base_url}/metrics", timeout=5).text
    for family in (
        "tiergate_gateway_http_requests_total",
        "tiergate_gateway_http_request_duration_seconds_bucket",
        "tiergate_gateway_upstream_calls_total",
        "tiergate_gateway_time_to_first_token_seconds_bucket",
        "tiergate_gateway_tokens_total",
    ):
        assert family in text
