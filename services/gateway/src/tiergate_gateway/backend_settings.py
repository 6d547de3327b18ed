"""Backend settings: the engines the gateway calls (`[backends.X]`), their wake, and the public
model aliases (`[models.X]`) that name them. Part of `GatewaySettings` (`settings.py`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
import msgspec

__all__ = [
    "ApiName",
    "BackendSettings",
    "EngineKind",
    "EngineModelId",
    "FieldName",
    "HeaderName",
    "ModelAlias",
    "ModelId",
    "Name",
    "Seconds",
    "Turns",
    "WakeSettings",
    "url_problem",
]

Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# Public ids travel in headers (x-tiergate-model), so they are header-safe ASCII.
ModelId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")]
EngineModelId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
EngineKind = Literal["llamacpp", "vllm", "sglang", "openai"]
ApiName = Literal["chat", "completions", "embeddings"]
# What a model's chat template accepts of the conversation (upstream/dialects.py).
Turns = Literal["as_sent", "alternating", "alternating_no_system"]
FieldName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def url_problem(url: str) -> str | None:
    """Why `url` is not a usable http(s) base URL, or None."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port  # raises on a non-numeric port
    except (httpx.InvalidURL, ValueError) as exc:
        return f"not a valid URL ({exc})"
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        return f"expected an http(s) URL, got {url!r}"
    if port is not None and not 0 < port < 65536:
        return f"port {port} is out of range"
    return None


class WakeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A GPU backend that may be asleep, and how to wake it.

    `platform`: a service the platform scales to zero; `url` is its wake URL (POSTed once per
    wake), and it is ready when its `/v1/models` lists the model. `supervisor`: a gpu-llm box;
    `url` is the supervisor (`/v1/models/{model}/wake`, `/status`), ready when the model's
    engine is ready there.
    """

    kind: Literal["platform", "supervisor"] = "platform"
    url: str
    token: str | None = None
    """Bearer token for the wake call (the supervisor's admin token)."""
    model: str | None = None
    """The engine model to wait for; default: the first model routed to this backend."""
    box: str = "gpu0"
    """supervisor: the box's name; its state is read from the shared store (`tg:gpu:{box}`,
    published by gpu-llm) and, when that is missing, from its `/status`."""
    lock_ttl_s: Seconds = 60.0
    """At most one wake per this many seconds across all replicas (a lock in the store)."""
    probe_interval_s: Seconds = 2.0
    ready_timeout_s: Seconds = 900.0


HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")]


class BackendSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One upstream that speaks the OpenAI API, spoken to by the adapter of its `kind`.

    `base_url` includes the API prefix (`http://127.0.0.1:8083/v1`); requests go to
    `base_url + "/chat/completions"` (`/completions`, `/embeddings`). `read_timeout_s` bounds
    every wait for bytes from the upstream: the response head (for a non-streaming call, the
    whole generation) and each gap between stream chunks. `health_url` is probed for
    `/readyz`.
    """

    base_url: str
    kind: EngineKind = "openai"
    """`llamacpp`, `vllm`, `sglang`: an engine of ours; every request field is forwarded
    (engines read extras such as `top_k`). `openai`: a remote OpenAI-compatible API; only
    the fields of OpenAI's published request schema are forwarded (upstream/adapters.py)."""
    api_key: str | None = None
    """Sent as `<auth_header>: <auth_scheme> <api_key>`. From the environment:
    `TIERGATE_GATEWAY_BACKENDS__<NAME>__API_KEY`."""
    api_key_file: str | None = None
    """A file holding the key (first line); re-read when it changes, so a rotated key is
    used without a restart. Not together with `api_key`."""
    auth_header: HeaderName | None = None
    """The header that carries the key (e.g. `api-key` for Azure, `x-api-key`). Unset:
    `authorization`. Only with a key."""
    auth_scheme: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{0,32}$")] | None = None
    """Written before the key; empty: the key alone. Unset: `Bearer` in `authorization`, the
    key alone in any other header. Only with a key."""
    stream_usage: bool = True
    """Streams ask the upstream for usage (`stream_options.include_usage`), so that tokens
    are counted exactly; false for an API that rejects `stream_options` (then the token
    reservation stands)."""
    connect_timeout_s: Seconds = 2.0
    read_timeout_s: Seconds = 300.0
    write_timeout_s: Seconds = 30.0
    pool_timeout_s: Seconds = 5.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    max_keepalive: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 100
    connect_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    health_url: str | None = None
    required_for_ready: bool = True
    wake: WakeSettings | None = None
    """Set for a GPU backend that scales to zero (see WakeSettings)."""
    first_token_timeout_s: Seconds | None = None
    """Streaming: hold the answer's first bytes back until its first token; if none comes in
    this long, the call fails before anything reached the client (504) — so the route's next
    model can answer. Unset: the first bytes go out as they come (`read_timeout_s` only)."""
    keep_extras: frozenset[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] = frozenset()
    """Top-level fields of the engine's answers and stream chunks that clients get, although
    OpenAI's schema has no such field (e.g. `["timings"]` from llama.cpp). Every other field
    an engine adds is dropped (issue 10); `reasoning_content` in a message or delta is kept."""
    # Load shedding (issue 10; upstream/admission.py). Bounds are per gateway process.
    slots: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    """Requests the engine serves at once; more wait in the gateway. Unset: learned from a
    `llamacpp` engine (`/props`, `/slots`; 4 until known), unbounded for other kinds (vLLM
    and SGLang queue in their own scheduler). Split across `server.workers`."""
    max_queue: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None
    """Requests that may wait for a slot; past it a 503 `backend_overloaded` with Retry-After
    (or the route's next model). Unset: 4 per slot."""
    max_queue_wait_s: Seconds = 30.0
    """Longest wait for a slot, then the same 503: an accepted request's time to first byte
    is bounded by this, not by `read_timeout_s`."""
    # Engine dialects (issue 14; upstream/dialects.py).
    developer_role: Literal["keep", "system"] | None = None
    """`system`: `developer` messages are sent as `system` (open models' chat templates know
    no `developer` role; Qwen2.5's drops such a message silently). `keep`: sent as they are
    (a template that knows the role, e.g. gpt-oss). Unset: `system` for `llamacpp`, `vllm`
    and `sglang`, `keep` for `openai`."""
    drop_fields: frozenset[FieldName] = frozenset()
    """Top-level request fields never forwarded to this backend (an engine that rejects
    them), logged at debug level. `model`, `messages`, `prompt` and `input` cannot be
    dropped. Added to the kind's own list (a `llamacpp` backend drops `best_of`, `echo` and
    `suffix` of legacy completions when they hold their neutral value)."""


class ModelAlias(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A public model id clients ask for, and where it is served."""

    id: ModelId
    backend: Name
    engine_model: EngineModelId
    owned_by: str = "tiergate"
    created: int = 0
    routed: bool = False
    """Requests for this id are sent by the route table (`[[routes]]`) to the model that fits
    their tier and workload; `backend`/`engine_model` serve them when no rule matches."""
    # What the model accepts (issue 10): a request needing more is a 400 naming the field
    # before any engine sees it, and a routed request only goes to models that accept it.
    vision: bool = False
    """Accepts `image_url` content parts."""
    audio: bool = False
    """Accepts `input_audio` content parts."""
    files: bool = False
    """Accepts `file` content parts."""
    tools: bool = True
    """Can call tools (its chat template emits tool calls; llama.cpp's `/props` says so as
    `chat_template_caps.supports_tools`). False: a request that *requires* a tool call
    (`tool_choice` "required" or a named tool) is a 400; with "auto" tools are forwarded."""
    endpoints: frozenset[ApiName] = frozenset({"chat", "completions"})
    """The APIs it serves: `chat` (also `/v1/responses`, translated to chat), `completions`
    (legacy text completions), `embeddings`. A request to another is a 400; `/v1/models`
    lists them as the model's `capabilities`."""
    turns: Turns = "as_sent"
    """What the model's chat template accepts (issue 14). `as_sent`: anything. `alternating`
    (Mistral-family templates, which answer anything else with a 400): consecutive user or
    assistant turns are merged (text joined by a blank line, content parts concatenated;
    never across a tool call) and every system/developer message becomes one system message
    at the start. `alternating_no_system`: the same, for a template without a system role:
    that text opens the first user turn."""
