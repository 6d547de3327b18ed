"""Engine dialects (`upstream/dialects.py`) as tables: turns, roles, token field, dropped fields."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from tiergate_gateway.settings import (
    AuthLink,
    BackendSettings,
    GatewaySettings,
    ModelAlias,
    validate,
)
from tiergate_gateway.upstream.adapters import Adapter
from tiergate_gateway.upstream.dialects import (
    Dialect,
    alternate,
    apply,
    developer_as_system,
    dialect_for,
    merge_content,
)
from tiergate_runtime.settings import SettingsError


def system(content: Any) -> dict[str, Any]:
    return {"role": "system", "content": content}


def dev(content: Any) -> dict[str, Any]:
    return {"role": "developer", "content": content}


def user(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def bot(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def tool(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


CALL = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
CALL2 = [{"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]
IMG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


# (case, messages, alternating (one system message first), alternating_no_system)
TURNS: list[tuple[str, list[Any], list[Any], list[Any]]] = [
    ("empty", [], [], []),
    (
        "already alternating",
        [user("a"), bot("b"), user("c")],
        [user("a"), bot("b"), user("c")],
        [user("a"), bot("b"), user("c")],
    ),
    ("only system", [system("s")], [system("s")], [user("s")]),
    ("only developer", [dev("d")], [system("d")], [user("d")]),
    ("system first", [system("s"), user("a")], [system("s"), user("a")], [user("s\n\na")]),
    (
        "system after user",
        [user("a"), system("s"), bot("b")],
        [system("s"), user("a"), bot("b")],
        [user("s\n\na"), bot("b")],
    ),
    (
        "system between users joins them",
        [user("a"), system("s"), user("b")],
        [system("s"), user("a\n\nb")],
        [user("s\n\na\n\nb")],
    ),
    (
        "grounding, system and developer merge in order",
        [system("ground"), system("own"), user("q"), dev("late")],
        [system("ground\n\nown\n\nlate"), user("q")],
        [user("ground\n\nown\n\nlate\n\nq")],
    ),
    (
        "consecutive users",
        [user("a"), user("b"), user("c")],
        [user("a\n\nb\n\nc")],
        [user("a\n\nb\n\nc")],
    ),
    (
        "consecutive assistants",
        [user("a"), bot("b"), bot("c")],
        [user("a"), bot("b\n\nc")],
        [user("a"), bot("b\n\nc")],
    ),
    (
        "empty assistant content merges away",
        [user("a"), bot(None), bot("c")],
        [user("a"), bot("c")],
        [user("a"), bot("c")],
    ),
    (
        "first user's other fields stay",
        [user("a", name="ann"), user("b", name="bob")],
        [user("a\n\nb", name="ann")],
        [user("a\n\nb", name="ann")],
    ),
    (
        "content parts concatenated",
        [user([text("look"), IMG]), user("and this")],
        [user([text("look"), IMG, text("and this")])],
        [user([text("look"), IMG, text("and this")])],
    ),
    (
        "system folds into a parts array",
        [system("s"), user([IMG])],
        [system("s"), user([IMG])],
        [user([text("s"), IMG])],
    ),
    (
        "system parts and string system",
        [system([text("p")]), system("q"), user("a")],
        [system([text("p"), text("q")]), user("a")],
        [user([text("p"), text("q"), text("a")])],
    ),
    # An assistant calling tools, the results and the answer stay apart: a merge across the
    # call would lose which text came before the call.
    (
        "tool call turn is a boundary",
        [user("a"), bot("thinking"), bot(None, tool_calls=CALL), tool("c1", "r"), bot("done")],
        [user("a"), bot("thinking"), bot(None, tool_calls=CALL), tool("c1", "r"), bot("done")],
        [user("a"), bot("thinking"), bot(None, tool_calls=CALL), tool("c1", "r"), bot("done")],
    ),
    (
        "tool results never merge",
        [user("a"), bot(None, tool_calls=CALL + CALL2), tool("c1", "r1"), tool("c2", "r2")],
        [user("a"), bot(None, tool_calls=CALL + CALL2), tool("c1", "r1"), tool("c2", "r2")],
        [user("a"), bot(None, tool_calls=CALL + CALL2), tool("c1", "r1"), tool("c2", "r2")],
    ),
    (
        "two calling turns stay two",
        [user("a"), bot(None, tool_calls=CALL), bot(None, tool_calls=CALL2)],
        [user("a"), bot(None, tool_calls=CALL), bot(None, tool_calls=CALL2)],
        [user("a"), bot(None, tool_calls=CALL), bot(None, tool_calls=CALL2)],
    ),
    (
        "users after a tool result merge",
        [tool("c1", "r"), user("a"), user("b")],
        [tool("c1", "r"), user("a\n\nb")],
        [tool("c1", "r"), user("a\n\nb")],
    ),
    (
        "no user turn: system becomes one",
        [system("s"), bot("b")],
        [system("s"), bot("b")],
        [user("s"), bot("b")],
    ),
    ("empty system text is no system message", [system(""), user("a")], [user("a")], [user("a")]),
    (
        "not a message: passed on as is",
        [user("a"), "junk", user("b")],
        [user("a"), "junk", user("b")],
        [user("a"), "junk", user("b")],
    ),
]


@pytest.mark.parametrize(
    ("messages", "with_system", "without_system"),
    [case[1:] for case in TURNS],
    ids=[case[0] for case in TURNS],
)
def test_alternate(messages: list[Any], with_system: list[Any], without_system: list[Any]) -> None:
    before = copy.deepcopy(messages)
    assert alternate(messages, system=True) == with_system
    assert alternate(messages, system=False) == without_system
    assert messages == before  # the client's request is never changed


@pytest.mark.parametrize(
    ("first", "second", "merged"),
    [
        ("a", "b", "a\n\nb"),
        (None, "b", "b"),
        ("a", None, "a"),
        ("", "b", "b"),
        ([], "b", "b"),
        ("a", [IMG], [text("a"), IMG]),
        ([IMG], [IMG], [IMG, IMG]),
    ],
)
def test_merge_content(first: Any, second: Any, merged: Any) -> None:
    assert merge_content(first, second) == merged


def test_developer_as_system() -> None:
    plain = [system("s"), user("a")]
    assert developer_as_system(plain) is plain  # nothing to change: no copy
    mixed = [dev("d"), user("a"), dev("e")]
    assert developer_as_system(mixed) == [system("d"), user("a"), system("e")]
    assert mixed[0]["role"] == "developer"


MISTRAL = "mistral-small"
DIALECTS = {
    "llamacpp": dialect_for("b", BackendSettings(base_url="http://x/v1", kind="llamacpp"), []),
    "vllm": dialect_for("b", BackendSettings(base_url="http://x/v1", kind="vllm"), []),
    "sglang": dialect_for(
        "b",
        BackendSettings(base_url="http://x/v1", kind="sglang"),
        [
            ModelAlias(id="m", backend="b", engine_model=MISTRAL, turns="alternating"),
            ModelAlias(id="other", backend="elsewhere", engine_model="o", turns="alternating"),
        ],
    ),
    "openai": dialect_for("b", BackendSettings(base_url="http://x/v1", kind="openai"), []),
    "vllm keeping developer": dialect_for(
        "b", BackendSettings(base_url="http://x/v1", kind="vllm", developer_role="keep"), []
    ),
    "openai dropping": dialect_for(
        "b",
        BackendSettings(
            base_url="http://x/v1", kind="openai", drop_fields=frozenset({"seed", "top_k"})
        ),
        [],
    ),
}


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "e", "messages": [dev("d"), user("a")], **extra}


# (dialect, api, body, body sent, fields dropped)
APPLY: list[tuple[str, str, dict[str, Any], dict[str, Any], list[str]]] = [
    (
        "llamacpp",
        "chat",
        chat(max_completion_tokens=50),
        {"model": "e", "messages": [system("d"), user("a")], "max_tokens": 50},
        [],
    ),
    (
        "llamacpp",
        "chat",
        chat(max_completion_tokens=50, max_tokens=20),
        {"model": "e", "messages": [system("d"), user("a")], "max_tokens": 20},
        [],
    ),
    (
        "llamacpp",
        "chat",
        chat(max_tokens=20),
        {"model": "e", "messages": [system("d"), user("a")], "max_tokens": 20},
        [],
    ),
    (
        "vllm",
        "chat",
        chat(max_completion_tokens=50),
        {"model": "e", "messages": [system("d"), user("a")], "max_completion_tokens": 50},
        [],
    ),
    ("vllm keeping developer", "chat", chat(), chat(), []),
    ("openai", "chat", chat(max_completion_tokens=5), chat(max_completion_tokens=5), []),
    # Alternating only for the model that says so, on its own backend.
    (
        "sglang",
        "chat",
        {"model": MISTRAL, "messages": [user("a"), dev("d"), user("b")]},
        {"model": MISTRAL, "messages": [system("d"), user("a\n\nb")]},
        [],
    ),
    (
        "sglang",
        "chat",
        {"model": "o", "messages": [user("a"), user("b")]},
        {"model": "o", "messages": [user("a"), user("b")]},
        [],
    ),
    # llama.cpp refuses these legacy fields: dropped at their neutral value only.
    (
        "llamacpp",
        "completions",
        {"model": "e", "prompt": "p", "best_of": 1, "echo": False, "suffix": None},
        {"model": "e", "prompt": "p"},
        ["best_of", "echo", "suffix"],
    ),
    (
        "llamacpp",
        "completions",
        {"model": "e", "prompt": "p", "echo": True, "best_of": 2},
        {"model": "e", "prompt": "p", "echo": True, "best_of": 2},
        [],
    ),
    (
        "llamacpp",
        "chat",
        chat(echo=False) | {"messages": []},
        {"model": "e", "messages": [], "echo": False},
        [],
    ),
    (
        "vllm",
        "completions",
        {"model": "e", "prompt": "p", "echo": False},
        {"model": "e", "prompt": "p", "echo": False},
        [],
    ),
    (
        "openai dropping",
        "chat",
        chat(seed=1, top_k=3, temperature=0),
        chat(temperature=0),
        ["seed", "top_k"],
    ),
    (
        "openai dropping",
        "embeddings",
        {"model": "e", "input": "x", "seed": 1},
        {"model": "e", "input": "x"},
        ["seed"],
    ),
]


@pytest.mark.parametrize(
    ("dialect", "api", "body", "sent", "dropped"),
    APPLY,
    ids=[f"{row[0]}-{row[1]}-{index}" for index, row in enumerate(APPLY)],
)
def test_apply(
    dialect: str, api: str, body: dict[str, Any], sent: dict[str, Any], dropped: list[str]
) -> None:
    before = copy.deepcopy(body)
    out, gone = apply(DIALECTS[dialect], api, body)
    assert out == sent
    assert gone == dropped
    assert body == before


def test_apply_returns_the_body_itself_when_nothing_changes() -> None:
    body = {"model": "e", "messages": [user("a")], "max_tokens": 3}
    assert apply(DIALECTS["llamacpp"], "chat", body)[0] is body
    assert apply(Dialect(), "completions", body)[0] is body


def test_adapter_shapes_in_the_dialect_then_the_schema() -> None:
    settings = BackendSettings(
        base_url="http://x/v1", kind="openai", drop_fields=frozenset({"temperature"})
    )
    model = ModelAlias(id="m", backend="remote", engine_model="e", turns="alternating_no_system")
    adapter = Adapter("remote", settings, [model])
    body = {"model": "e", "messages": [system("s"), user("a")], "temperature": 1, "top_k": 4}
    assert adapter.shape("chat", body) == {"model": "e", "messages": [user("s\n\na")]}


def test_adapter_logs_what_it_dropped() -> None:
    settings = BackendSettings(base_url="http://x/v1", kind="llamacpp")
    adapter = Adapter("cpu", settings)
    with capture_logs() as logs:
        adapter.shape("completions", {"model": "e", "prompt": "p", "best_of": 1})
        adapter.shape("completions", {"model": "e", "prompt": "p"})
    dropped = [entry for entry in logs if entry["event"] == "upstream_fields_dropped"]
    assert dropped == [
        {
            "event": "upstream_fields_dropped",
            "log_level": "debug",
            "backend": "cpu",
            "api": "completions",
            "fields": ["best_of"],
        }
    ]


def _settings(backend: BackendSettings, models: list[ModelAlias]) -> GatewaySettings:
    return GatewaySettings(backends={"b": backend}, models=models, auth=AuthLink(url=None))


@pytest.mark.parametrize(
    ("backend", "models", "problem"),
    [
        (
            BackendSettings(base_url="http://x/v1", drop_fields=frozenset({"messages"})),
            [ModelAlias(id="m", backend="b", engine_model="e")],
            r"backends\.b\.drop_fields: 'messages' cannot be dropped",
        ),
        (
            BackendSettings(base_url="http://x/v1"),
            [
                ModelAlias(id="m", backend="b", engine_model="e", turns="alternating"),
                ModelAlias(id="n", backend="b", engine_model="e"),
            ],
            r"models\[1\]\.turns: 'as_sent', but another alias of 'e'",
        ),
    ],
    ids=["undroppable-field", "aliases-disagree-on-the-template"],
)
def test_dialect_settings_are_checked(
    backend: BackendSettings, models: list[ModelAlias], problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem):
        validate(_settings(backend, models))


def test_dialect_settings_load_from_toml() -> None:
    settings = msgspec.toml.decode(
        b"""
        [backends.b]
        base_url = "http://x/v1"
        kind = "sglang"
        developer_role = "keep"
        drop_fields = ["seed"]
        [[models]]
        id = "m"
        backend = "b"
        engine_model = "e"
        turns = "alternating_no_system"
        """,
        type=GatewaySettings,
    )
    assert settings.backends["b"].drop_fields == frozenset({"seed"})
    assert settings.models[0].turns == "alternating_no_system"
    with pytest.raises(msgspec.ValidationError, match="turns"):
        msgspec.convert(
            {"id": "m", "backend": "b", "engine_model": "e", "turns": "strict"}, ModelAlias
        )
