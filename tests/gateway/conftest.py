"""In-process gateway tests: the real app on a real socket, in front of the fake engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tiergate_gateway.app import create_app
from tiergate_gateway.settings import (
    AuthLink,
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    ResilienceSettings,
    TierPolicy,
)
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine, RecordedRequest

ALIAS = "tiergate-small"
ENGINE_MODEL = "engine-small"
BODY_LIMIT = 4096
READ_TIMEOUT_S = 1.5


@dataclass
class Gateway:
    """A running gateway app, its client, and the fake engine behind it."""

    url: str
    client: httpx.AsyncClient
    engine: FakeEngine


def gateway_settings(engine_url: str, **backend: object) -> GatewaySettings:
    return GatewaySettings(
        backends={
            "cpu": BackendSettings(
                base_url=f"{engine_url}/v1",
                kind="openai",
                health_url=f"{engine_url}/health",
                read_timeout_s=READ_TIMEOUT_S,
                **backend,  # type: ignore[arg-type]
            )
        },
        models=[ModelAlias(id=ALIAS, backend="cpu", engine_model=ENGINE_MODEL)],
        max_body_bytes=BODY_LIMIT,
        health_probe_interval_s=0.2,
        # Relay tests run unlimited and without an auth service; tests/gateway/test_identity.py
        # and test_limits.py cover tiers and limits.
        tiers={"anonymous": TierPolicy(max_tokens=100_000)},
        auth=AuthLink(url=None),
        # One upstream attempt per request: these tests pin relay and error mapping; the
        # retry path has its own tests (test_fallback.py, test_app_errors.py metrics).
        resilience=ResilienceSettings(retries=0),
    )


@pytest.fixture
async def engine() -> AsyncIterator[FakeEngine]:
    async with FakeEngine(models=[ENGINE_MODEL]) as fake:
        yield fake


@pytest.fixture
async def gateway(engine: FakeEngine) -> AsyncIterator[Gateway]:
    app = create_app(gateway_settings(engine.base_url))
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Gateway(url=url, client=client, engine=engine)


def last_chat(engine: FakeEngine) -> RecordedRequest:
    """The engine's record of the latest chat request (health probes are recorded too)."""
    return [r for r in engine.requests if r.path == "/v1/chat/completions"][-1]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": ALIAS, "messages": [{"role": "user", "content": "hello there"}], **extra}


@contextlib.asynccontextmanager
async def running(settings: GatewaySettings, engine: FakeEngine) -> AsyncIterator[Gateway]:
    """A gateway app with these settings, served in this loop."""
    app = create_app(settings)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Gateway(url=url, client=client, engine=engine)
