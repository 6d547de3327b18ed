"""Tracing: the caller's trace continues through the gateway to the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tiergate_gateway.app import create_app
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import chat_body, gateway_settings, last_chat

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
async def traced(
    engine: FakeEngine,
) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(gateway_settings(engine.base_url), tracer_provider=provider)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client, exporter


async def test_span_continues_caller_trace_and_reaches_engine(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter], engine: FakeEngine
) -> None:
    client, exporter = traced
    response = await client.post(
        "/v1/chat/completions", json=chat_body(stream=True), headers={"traceparent": PARENT}
    )
    assert response.status_code == 200
    [span] = exporter.get_finished_spans()
    assert span.name == "chat.completions"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    attributes = dict(span.attributes or {})
    assert attributes["tiergate.model"] == "tiergate-small"
    assert attributes["tiergate.backend"] == "cpu"
    assert attributes["tiergate.outcome"] == "ok"
    assert int(str(attributes["tiergate.completion_tokens"])) > 0
    sent = last_chat(engine).headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"


async def test_rejected_request_is_an_error_span(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    response = await client.post("/v1/chat/completions", json={**chat_body(), "model": "nope"})
    assert response.status_code == 404
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["http.response.status_code"] == 404


async def test_no_tracing_means_no_traceparent_upstream() -> None:
    async with FakeEngine(models=["engine-small"]) as engine:
        app = create_app(gateway_settings(engine.base_url))
        async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
            await client.post("/v1/chat/completions", json=chat_body())
        assert "traceparent" not in last_chat(engine).headers
