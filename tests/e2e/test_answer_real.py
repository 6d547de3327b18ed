"""End to end: the anonymous answer with the shipped configuration and the real small model.

rag over tiergate's own docs (config/rag.toml's corpus), cpu-llm (llama.cpp, SmolLM2, one
thread) and the gateway with config/gateway.toml (limits lifted) run as processes; the
official openai client asks. An irrelevant question is answered ungrounded; a question the
docs answer is grounded within the tier's budget; a question the model loops on is cut by
the runaway guard within two repetitions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tiergate_testkit.grounded import grounded_backends, shipped_corpus
from tiergate_testkit.services import ServiceProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ALIAS = "tiergate-small"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    work = tmp_path_factory.mktemp("answer")
    with grounded_backends(
        work / "index",
        shipped_corpus(ROOT),
        model_id="smollm2",
        cpu_env={"TIERGATE_CPU_LLM_EMBEDDING__ENABLED": "false"},
    ) as backends:
        rag, cpu = backends.rag, backends.cpu
        gateway_env = {
            "TIERGATE_GATEWAY_CONFIG": str(ROOT / "config" / "gateway.toml"),
            "TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL": f"{cpu.base_url}/v1",
            "TIERGATE_GATEWAY_BACKENDS__CPU__HEALTH_URL": f"{cpu.base_url}/readyz",
            "TIERGATE_GATEWAY_MODELS": json.dumps(
                [{"id": ALIAS, "backend": "cpu", "engine_model": "smollm2"}]
            ),
            "TIERGATE_GATEWAY_TIERS__ANONYMOUS__REQUESTS": "",
            "TIERGATE_GATEWAY_TIERS__ANONYMOUS__TOKENS": "",
            "TIERGATE_GATEWAY_RAG__URL": rag.base_url,
            "TIERGATE_GATEWAY_RAG__TIMEOUT_S": "2",
            "TIERGATE_GATEWAY_AUTH__URL": "",
        }
        with (
            ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", gateway_env) as gateway,
            openai.OpenAI(
                base_url=f"{gateway.base_url}/v1", api_key="anonymous", max_retries=0
            ) as sdk,
        ):
            yield sdk


def _ask(
    client: openai.OpenAI, question: str, max_tokens: int = 60
) -> tuple[dict[str, str], str, int]:
    raw = client.chat.completions.with_raw_response.create(
        model=ALIAS,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        seed=0,
    )
    completion = raw.parse()
    assert completion.usage is not None
    return (
        dict(raw.headers),
        completion.choices[0].message.content or "",
        completion.usage.prompt_tokens,
    )


def test_an_irrelevant_question_is_answered_ungrounded(client: openai.OpenAI) -> None:
    headers, answer, prompt_tokens = _ask(client, "What is the capital of France?")
    assert headers["x-tiergate-grounding"] == "ungrounded; reason=not_relevant"
    assert "x-tiergate-sources" not in headers
    assert answer.strip()
    assert prompt_tokens < 80  # the question and the chat template, no sources


def test_a_question_the_docs_answer_is_grounded_within_the_budget(client: openai.OpenAI) -> None:
    headers, answer, prompt_tokens = _ask(
        client, "Which port does tiergate's rag service listen on?"
    )
    assert headers["x-tiergate-grounding"] == "grounded"
    assert headers["x-tiergate-sources"]
    assert answer.strip()
    # 256 estimated tokens of sources (768 characters), the instruction, the question and
    # the template: well under the ~1,000 tokens of whole chunks grounding used to add.
    assert prompt_tokens < 450


def test_a_looping_answer_is_cut_within_two_repetitions(client: openai.OpenAI) -> None:
    # SmolLM2 at temperature 0 answers this with the same list item over and over.
    stream = client.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "List the features of a gateway."}],
        max_tokens=300,
        temperature=0,
        seed=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, guard, usage = "", None, None, None
    for chunk in stream:
        extra = chunk.model_extra or {}
        guard = extra.get("tiergate_guard", guard)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert guard == "repetition", text
    assert finish == "length"
    assert usage is not None
    assert usage.completion_tokens < 300  # stopped before the cap
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s) > 20]
    most = max(sentences.count(s) for s in set(sentences))
    assert most <= 3  # the sentence and at most two repetitions
