"""The fake engine speaks SGLang's control endpoints as its http_server.py serves them: memory
release and resume on GET or POST with an optional `{"tags": [...]}` body, answered 200 with
`null`; `/health_generate` fails while the memory is released; `/flush_cache`. (SGLang itself
cannot run here: no CUDA; these are the behaviours gpu-llm's `sleep = "sglang"` is tested
against.)"""

from __future__ import annotations

import httpx
import pytest

from tiergate_testkit.fake_engine import FakeEngine


async def test_release_and_resume_on_either_method_with_optional_tags() -> None:
    async with FakeEngine(models=["mistral"]) as engine, httpx.AsyncClient() as client:
        base = engine.base_url
        assert (await client.get(f"{base}/health_generate")).status_code == 200
        released = await client.post(f"{base}/release_memory_occupation", json={})
        assert (released.status_code, released.text) == (200, "null")
        assert (await client.get(f"{base}/health_generate")).status_code == 503
        chat = {"model": "mistral", "messages": [{"role": "user", "content": "hi"}]}
        assert (await client.post(f"{base}/v1/chat/completions", json=chat)).status_code == 503
        resumed = await client.get(f"{base}/resume_memory_occupation")  # no body: every tag
        assert (resumed.status_code, resumed.text) == (200, "null")
        assert (await client.get(f"{base}/health_generate")).status_code == 200
        tagged = await client.post(
            f"{base}/release_memory_occupation", json={"tags": ["kv_cache", "weights"]}
        )
        assert tagged.status_code == 200
        await client.post(f"{base}/resume_memory_occupation", json={"tags": ["kv_cache"]})
        assert (await client.post(f"{base}/flush_cache")).status_code == 200
        assert (await client.get(f"{base}/flush_cache")).status_code == 200


@pytest.mark.parametrize("body", [{"tags": ["gpu"]}, {"tags": "weights"}, [1]])
async def test_a_malformed_release_is_refused_and_changes_nothing(body: object) -> None:
    async with FakeEngine(models=["mistral"]) as engine, httpx.AsyncClient() as client:
        base = engine.base_url
        answer = await client.post(f"{base}/release_memory_occupation", json=body)
        assert answer.status_code == 400
        assert (await client.get(f"{base}/health_generate")).status_code == 200
