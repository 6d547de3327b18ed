"""In-process gateway tests: the real app on a real socket, in front of the fake engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tiergate_auth.sink import MailSink
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
                kind="vllm",  # the fake engine stands in for vLLM (reads extras: `fake`)
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
async def gpu() -> AsyncIterator[FakeEngine]:
    """A GPU engine stand-in scaled to zero: its platform wake loads it in 0.3 s."""
    async with FakeEngine(models=["engine-large"], scaled_to_zero=True, load_time_s=0.3) as fake:
        yield fake


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    """A real SMTP sink catching the auth service's mail (one per test module)."""
    mail = MailSink().start()
    yield mail
    mail.stop()


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


class ResponsesSchema:
    """OpenAI's Responses API schemas (`openai_responses_schema.json`; its `$comment` says
    where they come from). `validate` raises AssertionError naming every violation and returns
    the parsed body; `validate_event` picks the event's own schema from its `type`."""

    def __init__(self) -> None:
        import json
        from pathlib import Path

        from jsonschema import Draft202012Validator

        path = Path(__file__).with_name("openai_responses_schema.json")
        self._document: dict[str, Any] = json.loads(path.read_text())
        Draft202012Validator.check_schema(self._document)
        self._validators: dict[str, Draft202012Validator] = {}
        self.event_schemas: dict[str, str] = {}
        for ref in self._document["$defs"]["ResponseStreamEvent"]["anyOf"]:
            name = ref["$ref"].rsplit("/", 1)[1]
            (kind,) = self._document["$defs"][name]["properties"]["type"]["enum"]
            self.event_schemas[kind] = name

    def validate(self, name: str, body: bytes | str | dict[str, Any]) -> Any:
        import json

        from jsonschema import Draft202012Validator

        value = json.loads(body) if isinstance(body, bytes | str) else body
        validator = self._validators.get(name)
        if validator is None:
            validator = Draft202012Validator({**self._document, "$ref": f"#/$defs/{name}"})
            self._validators[name] = validator
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"  at {e.json_path}: {e.message[:300]}" for e in errors]
            raise AssertionError(f"not a valid {name}:\n" + "\n".join(lines) + f"\n{value}")
        return value

    def validate_event(self, body: bytes | str | dict[str, Any]) -> Any:
        import json

        value = json.loads(body) if isinstance(body, bytes | str) else body
        assert value.get("type") in self.event_schemas, f"not an event type: {value.get('type')}"
        self.validate("ResponseStreamEvent", value)
        return self.validate(self.event_schemas[value["type"]], value)


@pytest.fixture(scope="session")
def responses_schema() -> ResponsesSchema:
    """OpenAI's Responses API schemas, to check every `Response` and event we produce."""
    return ResponsesSchema()
