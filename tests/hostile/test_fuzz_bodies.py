"""Generated hostile bodies against every public JSON route (issue 10): never a 5xx, always
OpenAI's envelope on an error, never a hang.

Hypothesis builds bodies three ways — arbitrary JSON values, a valid body with one field
replaced by an arbitrary value (deep in `messages` too), and arbitrary bytes (invalid UTF-8,
truncated JSON) — and posts them to the real gateway (in front of the fake engine and the real
auth service), the auth service directly and the rag service. Bounded: a few hundred requests
per route, well under a minute in all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiergate_auth.app import create_app as create_auth
from tiergate_auth.settings import AuthSettings, DatabaseSettings, OtpSettings, SmtpSettings
from tiergate_auth.sink import MailSink
from tiergate_gateway.app import create_app as create_gateway
from tiergate_gateway.content_filter import ContentFilterSettings
from tiergate_gateway.settings import (
    AuthLink,
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    ResilienceSettings,
    TierPolicy,
)
from tiergate_proto.identity import Window
from tiergate_rag.app import create_app as create_rag
from tiergate_rag.settings import RagSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine

# A request answered slower than this counts as a hang.
HANG_S = 10.0
EXAMPLES = 400
SMALL = "tiergate-small"
EMBED = "tiergate-embed"


ANSWER = "__ANSWER_ID__"
"""Stands for the id of a real answer in feedback bodies (replaced when posted)."""
INTERNAL = "fuzz-internal-token-0123456789abcdefg"


@dataclass
class Mesh:
    gateway: httpx.AsyncClient
    auth: httpx.AsyncClient
    rag: httpx.AsyncClient
    seen: dict[str, list[int]]
    answer_id: str = ""


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    (root / "corpus").mkdir()
    (root / "corpus" / "guide.md").write_text("# Guide\n\nTiergate routes requests by tier.\n")
    sink = MailSink().start()
    auth_settings = AuthSettings(
        admin_token="fuzz-admin-token-0123456789abcdefghij",
        internal_token=INTERNAL,
        database=DatabaseSettings(
            url=f"sqlite+aiosqlite:///{root}/records/auth.db", upgrade_on_start=True
        ),
        smtp=SmtpSettings(host="127.0.0.1", port=sink.port),
        # Every request comes from 127.0.0.1: the per-address limits would turn all but the
        # first 20 starts into 429s, and the campaign would stop reaching the code behind them.
        otp=OtpSettings(
            resend_cooldown_s=1,
            per_ip=Window(limit=100_000, window_s=3600),
            verify_per_ip=Window(limit=100_000, window_s=900),
        ),
    )
    rag_settings = RagSettings(index_dir=str(root / "index"), corpus=[str(root / "corpus")])
    try:
        async with (
            FakeEngine(models=["engine-small", "engine-embed"]) as engine,
            serve_in_loop(create_auth(auth_settings)) as auth_url,
            serve_in_loop(create_rag(rag_settings)) as rag_url,
        ):
            gateway_settings = GatewaySettings(
                backends={"cpu": BackendSettings(base_url=f"{engine.base_url}/v1", kind="vllm")},
                models=[
                    ModelAlias(id=SMALL, backend="cpu", engine_model="engine-small", tools=False),
                    ModelAlias(
                        id=EMBED,
                        backend="cpu",
                        engine_model="engine-embed",
                        endpoints=frozenset({"embeddings"}),
                    ),
                ],
                tiers={
                    "anonymous": TierPolicy(
                        max_tokens=16, tools=False, content_filter=ContentFilterSettings()
                    )
                },
                auth=AuthLink(url=auth_url, internal_token=auth_settings.internal_token),
                rag=msgspec.structs.replace(GatewaySettings().rag, url=None),
                max_body_bytes=64 * 1024,
                resilience=ResilienceSettings(retries=0),
            )
            async with (
                serve_in_loop(create_gateway(gateway_settings)) as gateway_url,
                httpx.AsyncClient(base_url=gateway_url, timeout=HANG_S) as gateway,
                httpx.AsyncClient(base_url=auth_url, timeout=HANG_S) as auth,
                httpx.AsyncClient(base_url=rag_url, timeout=HANG_S) as rag,
            ):
                answer = await gateway.post(
                    "/v1/chat/completions",
                    json={"model": SMALL, "messages": [{"role": "user", "content": "hi"}]},
                )
                assert answer.status_code == 200, answer.text
                yield Mesh(
                    gateway=gateway, auth=auth, rag=rag, seen={}, answer_id=answer.json()["id"]
                )
    finally:
        sink.stop()


# --- bodies ---------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "user", "assistant", "tool", "system", "function", "text", SMALL])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

VALID_CHAT: dict[str, Any] = {
    "model": SMALL,
    "max_tokens": 4,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "user", "content": "and now?"},
    ],
}
CHAT_FIELDS = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "response_format",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "metadata",
    "functions",
    "function_call",
    "modalities",
    "audio",
    "prediction",
    "parallel_tool_calls",
    "fake",
]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio"]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """`valid` with one path replaced (or a new field added) by an arbitrary value."""
    body: dict[str, Any] = json.loads(json.dumps(valid))
    if draw(st.booleans()):
        path = draw(st.sampled_from(_paths(body)))
    else:  # a (known or unknown) field added at the top or in a message
        field = draw(st.sampled_from(fields) | st.text(max_size=8))
        message = draw(st.integers(0, len(body.get("messages", [])))) if "messages" in body else 0
        if "messages" in body and message < len(body["messages"]):
            path = ("messages", message, draw(st.sampled_from(MESSAGE_FIELDS)))
        else:
            path = (field,)
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = draw(JSON)
    return body


def encoded(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON text of the bodies, or bytes that are not valid JSON or not valid UTF-8."""
    as_json = bodies.map(lambda b: json.dumps(b).encode())
    broken = as_json.flatmap(
        lambda raw: st.sampled_from(
            [raw[: len(raw) // 2], raw.replace(b'"', b'"\xff', 1), b"\xef\xbb\xbf" + raw, raw * 2]
        )
    )
    return as_json | broken | st.binary(max_size=64)


CHAT_BODIES = encoded(mutated(VALID_CHAT, CHAT_FIELDS) | JSON)
EMAILS = st.integers(0, 10**6).map(lambda n: f"fuzz-{n}@example.org")
OTP_BODIES = encoded(
    EMAILS.flatmap(
        lambda email: (
            mutated({"email": email}, ["email"])
            | mutated({"email": email, "code": "123456"}, ["email", "code"])
        )
    )
    | JSON
)
TOKEN_BODIES = encoded(mutated({"refresh_token": "tgr_x"}, ["refresh_token"]) | JSON)
FEEDBACK_BODIES = encoded(
    mutated(
        {"id": ANSWER, "rating": "up", "flag": "wrong", "comment": "Not quite."},
        ["id", "rating", "flag", "comment"],
    )
    | JSON
)
_CHAT_RECORD: dict[str, Any] = {
    "answer_id": "chatcmpl-fuzz",
    "subject": "user-1",
    "conversation_id": "c-1",
    "tier": "user",
    "model": SMALL,
    "backend": "cpu",
    "api": "chat",
    "created_at": 1,
    "messages": [{"role": "user", "content": "hi"}],
    "answer": {"role": "assistant", "content": "hello"},
    "finish_reason": "stop",
}
_FEEDBACK_RECORD: dict[str, Any] = {
    "answer_id": "chatcmpl-fuzz",
    "subject_digest": "ab" * 32,
    "tier": "anonymous",
    "model": SMALL,
    "backend": "cpu",
    "api": "chat",
    "answered_at": 1,
    "rating": "down",
    "flag": None,
    "comment": None,
}
INTERNAL_CHAT_BODIES = encoded(mutated(_CHAT_RECORD, list(_CHAT_RECORD)) | JSON)
INTERNAL_FEEDBACK_BODIES = encoded(mutated(_FEEDBACK_RECORD, list(_FEEDBACK_RECORD)) | JSON)
SEARCH_BODIES = encoded(
    mutated({"query": "tier", "k": 3, "filters": {"language": "en"}}, ["query", "k", "filters"])
    | JSON
)

EMBEDDING_BODIES = encoded(
    mutated(
        {"model": EMBED, "input": ["a", "b"], "encoding_format": "float"},
        ["model", "input", "encoding_format", "dimensions", "user"],
    )
    | mutated({"model": EMBED, "input": [[1, 2], [3]]}, ["input"])
    | JSON
)
COMPLETION_BODIES = encoded(
    mutated(
        {"model": SMALL, "prompt": "Once", "max_tokens": 4, "stream": False},
        ["model", "prompt", "max_tokens", "stream", "stream_options", "logprobs", "echo", "stop",
         "n", "best_of", "suffix", "logit_bias", "seed", "temperature", "fake"],
    )
    | JSON
)  # fmt: skip
RESPONSE_BODIES = encoded(
    mutated(
        {
            "model": SMALL,
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
            ],
            "max_output_tokens": 4,
        },
        ["model", "input", "instructions", "tools", "tool_choice", "stream", "store", "text",
         "previous_response_id", "max_output_tokens", "temperature", "reasoning", "include",
         "metadata", "truncation", "parallel_tool_calls"],
    )
    | mutated({"model": SMALL, "input": "hi", "stream": True}, ["input", "stream", "tools"])
    | JSON
)  # fmt: skip

MODERATION_BODIES = encoded(
    mutated({"model": "omni-moderation-latest", "input": "hello"}, ["model", "input"])
    | mutated(
        {"input": ["a", {"type": "text", "text": "b"}, {"type": "image_url", "image_url": {}}]},
        ["input"],
    )
    | JSON
)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: a red CI run reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def check(
    mesh: Mesh,
    client: httpx.AsyncClient,
    route: str,
    body: bytes,
    *,
    method: str = "POST",
    token: str | None = None,
) -> None:
    """Send `body`; fail on a 5xx, a non-envelope error or a hang (httpx's timeout)."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    response = await client.request(method, route, content=body, headers=headers)
    mesh.seen.setdefault(f"{client.base_url.port}{route}", []).append(response.status_code)
    assert response.status_code < 500, (route, body, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, response.text
        assert "Traceback" not in response.text
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1


REACHES = {
    "test_gateway_chat": [("gateway", "/v1/chat/completions")],
    "test_gateway_embeddings": [("gateway", "/v1/embeddings")],
    "test_gateway_completions": [("gateway", "/v1/completions")],
    "test_gateway_responses": [("gateway", "/v1/responses")],
    "test_gateway_moderations": [("gateway", "/v1/moderations")],
    "test_gateway_feedback": [("gateway", "/v1/feedback")],
    "test_auth_internal_chats": [("auth", "/v1/internal/chats")],
    "test_auth_internal_feedback": [("auth", "/v1/internal/feedback")],
    "test_gateway_auth_relay": [("gateway", "/v1/auth/otp/start")],
    "test_auth_routes": [("auth", "/v1/auth/otp/start")],
    "test_rag_search": [("rag", "/v1/search")],
}
"""What each campaign test must reach: (the mesh's client, route)."""


@pytest.fixture(autouse=True)
def reached_and_some_valid(request: pytest.FixtureRequest, mesh: Mesh) -> Iterator[None]:
    """After each campaign test: it reached its routes with at least a third of its examples,
    and not all were 400s (the generators also make bodies the services accept). Checked per
    test, so it holds whichever worker runs which test."""
    expected = REACHES.get(request.node.originalname)
    assert expected is not None or not request.node.originalname.startswith("test_"), (
        f"{request.node.originalname}: add it to REACHES"
    )
    keys = [f"{getattr(mesh, client).base_url.port}{route}" for client, route in expected or ()]
    before = {key: len(mesh.seen.get(key, [])) for key in keys}
    yield
    for key in keys:
        statuses = mesh.seen.get(key, [])[before[key] :]
        assert len(statuses) >= EXAMPLES // 3, key
        assert any(status < 300 for status in statuses), (key, sorted(set(statuses)))


@FUZZ
@given(body=CHAT_BODIES)
async def test_gateway_chat(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.gateway, "/v1/chat/completions", body)


@FUZZ
@given(body=EMBEDDING_BODIES)
async def test_gateway_embeddings(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.gateway, "/v1/embeddings", body)


@FUZZ
@given(body=COMPLETION_BODIES)
async def test_gateway_completions(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.gateway, "/v1/completions", body)


@FUZZ
@given(body=RESPONSE_BODIES)
async def test_gateway_responses(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.gateway, "/v1/responses", body)


@FUZZ
@given(body=MODERATION_BODIES)
async def test_gateway_moderations(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.gateway, "/v1/moderations", body)


@FUZZ
@given(body=FEEDBACK_BODIES)
async def test_gateway_feedback(mesh: Mesh, body: bytes) -> None:
    await check(
        mesh, mesh.gateway, "/v1/feedback", body.replace(ANSWER.encode(), mesh.answer_id.encode())
    )


@FUZZ
@given(body=INTERNAL_CHAT_BODIES)
async def test_auth_internal_chats(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.auth, "/v1/internal/chats", body, token=INTERNAL)


@FUZZ
@given(body=INTERNAL_FEEDBACK_BODIES)
async def test_auth_internal_feedback(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.auth, "/v1/internal/feedback", body, method="PUT", token=INTERNAL)


@FUZZ
@given(body=OTP_BODIES, route=st.sampled_from(["/v1/auth/otp/start", "/v1/auth/otp/verify"]))
async def test_gateway_auth_relay(mesh: Mesh, body: bytes, route: str) -> None:
    await check(mesh, mesh.gateway, route, body)


@FUZZ
@given(
    body=OTP_BODIES | TOKEN_BODIES,
    route=st.sampled_from(
        ["/v1/auth/otp/start", "/v1/auth/otp/verify", "/v1/auth/refresh", "/v1/auth/logout"]
    ),
)
async def test_auth_routes(mesh: Mesh, body: bytes, route: str) -> None:
    await check(mesh, mesh.auth, route, body)


@FUZZ
@given(body=SEARCH_BODIES)
async def test_rag_search(mesh: Mesh, body: bytes) -> None:
    await check(mesh, mesh.rag, "/v1/search", body)
