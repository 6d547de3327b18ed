"""Engine dialects: pure rewrites of the upstream body into what one engine and its template accept.

What operators otherwise patch with side-car proxies (issue 14), applied by the backend's
`Adapter` to the body `pipeline/body.py` built — after the engine model, the cap and the
grounding message, so these rules see the messages the engine gets. The client's request is
never changed: every rewrite copies what it changes. In this order:

1. **Turns**, per engine model (`[[models]] turns`). `alternating`: Mistral-family templates
   raise "Conversation roles must alternate user/assistant/user/assistant/..." (a 400 to the
   client; seed 002's operator runs a side-car proxy for exactly this). Every `system` and
   `developer` message, wherever it is, goes into one system message at the start (their
   contents in order, joined by a blank line; so the grounding message stays the prefix);
   consecutive `user` turns, and consecutive `assistant` turns without `tool_calls` or
   `function_call`, become one (strings joined by a blank line; when either is a content-part
   array, the arrays concatenated; the first turn's other fields stay). Never merged: a turn
   with tool calls, `tool` messages (one per `tool_call_id`), and anything that is not a
   user/assistant message — an assistant that calls a tool, its tool results and the
   assistant's answer stay as they are, the order these templates expect.
   `alternating_no_system`: the same, for a template without a system role: the system text
   opens the first user turn (a user turn holding only it when there is none).
2. **`developer` → `system`** (`developer_role`, unset: by kind): `developer` is OpenAI's
   newer name for system instructions; vLLM, SGLang and llama.cpp accept the role on the
   wire and hand it to the model's chat template, and open models' templates do not know it
   (Qwen2.5's renders only system, user, assistant and tool: the instruction is lost
   silently). `openai` backends keep it.
3. **`max_completion_tokens` → `max_tokens`** (chat, `llamacpp` only). Checked 2026-12 in the
   engines' sources: vLLM's `ChatCompletionRequest` (vllm/entrypoints/openai/protocol.py)
   and SGLang's (python/sglang/srt/entrypoints/openai/protocol.py) read both fields and mark
   `max_tokens` deprecated, so they get the field as sent; llama.cpp's server reads
   `n_predict`, then `max_completion_tokens`, then `max_tokens` only since its task-params
   rewrite (tools/server/server-task.cpp `params_from_json_cmpl`); older builds read
   `max_tokens`/`n_predict` alone and ignored the cap. `max_tokens` is read by every build.
   With both fields the smaller value is sent.
4. **Fields dropped**: the backend's `drop_fields`, and the kind's own list of fields the
   engine answers with a 400 — llama.cpp's `/completions` refuses `best_of`, `echo` and
   `suffix` ("Unsupported param", oaicompat_completion_params_parse), which clients such as
   LangChain send at their neutral value (`best_of: 1`); those are dropped only at the
   neutral value, so `echo: true` still gets the engine's 400, not a silently different
   answer. The adapter logs what it dropped at debug level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiergate_gateway.settings import BackendSettings, ModelAlias, Turns

__all__ = ["Dialect", "alternate", "apply", "developer_as_system", "dialect_for", "merge_content"]

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TURN_ROLES = frozenset({"user", "assistant"})
_SEPARATOR = "\n\n"
# Fields an engine kind answers with a 400, per API, and the values at which dropping them
# changes nothing (see the module docstring, 4).
_REJECTED: Mapping[str, Mapping[str, Mapping[str, tuple[object, ...]]]] = {
    "llamacpp": {
        "completions": {"best_of": (None, 1), "echo": (None, False), "suffix": (None, "")},
    },
}
_MAX_TOKENS_ONLY = frozenset({"llamacpp"})
_DEVELOPER_AS_SYSTEM = frozenset({"llamacpp", "vllm", "sglang"})


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one backend's engine accepts; built once per backend (`dialect_for`)."""

    turns: Mapping[str, Turns] = field(default_factory=dict)
    """Engine model → its template's turn rule; a model not named is `as_sent`."""
    developer_as_system: bool = False
    max_tokens_only: bool = False
    drop_fields: frozenset[str] = frozenset()
    rejected: Mapping[str, Mapping[str, tuple[object, ...]]] = field(default_factory=dict)
    """API → field → the neutral values at which the field is dropped."""


def dialect_for(name: str, backend: BackendSettings, models: Sequence[ModelAlias]) -> Dialect:
    """The dialect of backend `name` from its settings and the models served on it."""
    role = backend.developer_role
    if role is None:
        role = "system" if backend.kind in _DEVELOPER_AS_SYSTEM else "keep"
    return Dialect(
        turns={
            m.engine_model: m.turns for m in models if m.backend == name and m.turns != "as_sent"
        },
        developer_as_system=role == "system",
        max_tokens_only=backend.kind in _MAX_TOKENS_ONLY,
        drop_fields=backend.drop_fields,
        rejected=_REJECTED.get(backend.kind, {}),
    )


def _parts(content: Any) -> list[Any]:
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def _empty(content: Any) -> bool:
    return content is None or content in ("", [])


def merge_content(first: Any, second: Any) -> Any:
    """Two turns' contents as one: strings joined by a blank line, else parts concatenated."""
    if _empty(first):
        return second
    if _empty(second):
        return first
    if isinstance(first, str) and isinstance(second, str):
        return first + _SEPARATOR + second
    return [*_parts(first), *_parts(second)]


def _plain_turn(message: Any, role: str) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") == role
        and not message.get("tool_calls")
        and not message.get("function_call")
    )


def alternate(messages: Sequence[Any], *, system: bool = True) -> list[Any]:
    """`messages` as a template that wants alternating turns accepts them (module docstring)."""
    instructions: Any = None
    turns: list[Any] = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in _SYSTEM_ROLES:
            instructions = merge_content(instructions, message.get("content"))
            continue
        if (
            role in _TURN_ROLES
            and turns
            and _plain_turn(turns[-1], role)
            and _plain_turn(message, role)
        ):
            last = turns[-1]
            content = merge_content(last.get("content"), message.get("content"))
            turns[-1] = {**last, "content": content}
            continue
        turns.append(message)
    if _empty(instructions):
        return turns
    if system:
        return [{"role": "system", "content": instructions}, *turns]
    for index, message in enumerate(turns):
        if isinstance(message, dict) and message.get("role") == "user":
            opened = {**message, "content": merge_content(instructions, message.get("content"))}
            return [*turns[:index], opened, *turns[index + 1 :]]
    return [{"role": "user", "content": instructions}, *turns]


def developer_as_system(messages: list[Any]) -> list[Any]:
    """`developer` messages as `system` ones; `messages` itself when it has none."""
    if not any(isinstance(m, dict) and m.get("role") == "developer" for m in messages):
        return messages
    return [
        {**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m
        for m in messages
    ]


def _messages(dialect: Dialect, model: Any, messages: list[Any]) -> list[Any]:
    turns = dialect.turns.get(model) if isinstance(model, str) else None
    if turns == "alternating":
        return alternate(messages, system=True)
    if turns == "alternating_no_system":
        return alternate(messages, system=False)
    return developer_as_system(messages) if dialect.developer_as_system else messages


def _dropped(dialect: Dialect, api: str, body: Mapping[str, Any]) -> list[str]:
    rejected = dialect.rejected.get(api, {})
    return [
        key
        for key, value in body.items()
        if key in dialect.drop_fields or (key in rejected and value in rejected[key])
    ]


def apply(dialect: Dialect, api: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`body` in the engine's dialect, and the fields dropped; `body` itself if nothing changes."""
    out = body
    if api == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            rewritten = _messages(dialect, body.get("model"), messages)
            if rewritten is not messages:
                out = {**out, "messages": rewritten}
        if dialect.max_tokens_only and "max_completion_tokens" in out:
            out = dict(out)
            cap = out.pop("max_completion_tokens")
            other = out.get("max_tokens")
            if isinstance(cap, int) and isinstance(other, int):
                cap = min(cap, other)
            out["max_tokens"] = cap if cap is not None else other
    dropped = _dropped(dialect, api, out)
    if dropped:
        out = {key: value for key, value in out.items() if key not in dropped}
    return out, dropped
