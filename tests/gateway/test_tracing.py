"""Tracing: the caller's trace continues through the gateway to the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tiergate_gateway.app import create_app
from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import BackendSettings, ModelAlias, ResilienceSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import chat_body, gateway_settings, last_chat
from .test_fallback import dead_url

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
    [attempt, span] = exporter.get_finished_spans()
    assert span.name == "chat.completions"
    assert attempt.name == "upstream"
    assert attempt.parent is not None
    assert attempt.parent.span_id == span.context.span_id
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    attributes = dict(span.attributes or {})
    assert attributes["tiergate.model"] == "tiergate-small"
    assert attributes["tiergate.backend"] == "cpu"
    assert attributes["tiergate.outcome"] == "ok"
    assert int(str(attributes["tiergate.completion_tokens"])) > 0
    sent = last_chat(engine).headers["traceparent"]
    # The engine's work continues the attempt's span.
    assert sent == f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01"


async def test_a_fallback_is_one_ok_request_span_over_two_attempt_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with FakeEngine(models=["engine-small"]) as good:
        settings = gateway_settings(good.base_url)
        settings = msgspec.structs.replace(
            settings,
            backends={
                "cpu": BackendSettings(base_url=dead_url(), connect_retries=0),
                "spare": BackendSettings(base_url=f"{good.base_url}/v1", kind="vllm"),
            },
            models=[
                ModelAlias(id="small", backend="cpu", engine_model="engine-small", routed=True),
                ModelAlias(id="spare", backend="spare", engine_model="engine-small"),
            ],
            routes=[RouteRule(models=["small", "spare"])],
            resilience=ResilienceSettings(retries=0),
        )
        app = create_app(settings, tracer_provider=provider)
        async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
            body = {**chat_body(), "model": "small"}
            response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
    assert response.headers["x-tiergate-fallback-from"] == "cpu"
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.name == "chat.completions"]
    attempts = [s for s in spans if s.name == "upstream"]
    assert request.status.status_code is not StatusCode.ERROR
    assert dict(request.attributes or {})["tiergate.outcome"] == "ok"
    assert dict(request.attributes or {})["tiergate.backend"] == "spare"
    assert int(str(dict(request.attributes or {})["tiergate.completion_tokens"])) > 0
    assert [dict(a.attributes or {})["tiergate.backend"] for a in attempts] == ["cpu", "spare"]
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    assert all(
        a.parent is not None and a.parent.span_id == request.context.span_id for a in attempts
    )


async def test_rejected_request_is_an_error_span(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    response = await client.post("/v1/chat/completions", json={**chat_body(), "model": "nope"})
    assert response.status_code == 404
    [span] = exporter.get_finished_spans()  # no attempt: nothing reached an engine
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["http.response.status_code"] == 404


async def test_no_tracing_means_no_traceparent_upstream() -> None:
    async with FakeEngine(models=["engine-small"]) as engine:
        app = create_app(gateway_settings(engine.base_url))
        async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
            await client.post("/v1/chat/completions", json=chat_body())
        assert "traceparent" not in last_chat(engine).headers
