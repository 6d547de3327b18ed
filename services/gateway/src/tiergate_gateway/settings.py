"""Gateway settings: backends, public model aliases, limits; validated once at startup.

A TOML file (`TIERGATE_GATEWAY_CONFIG`) plus `TIERGATE_GATEWAY_*` environment overrides, e.g.
`TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL=http://10.0.0.5:8083/v1`. Unknown keys, wrong types
and references to undefined backends fail startup with a message naming the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from tiergate_gateway.backend_settings import (
    ApiName,
    BackendSettings,
    ModelAlias,
    Name,
    Seconds,
    Turns,
    WakeSettings,
    url_problem,
)
from tiergate_gateway.content_filter.settings import ContentFilterSettings
from tiergate_gateway.guard import GuardSettings
from tiergate_gateway.records.settings import RecordsSettings
from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.web import WebSettings
from tiergate_proto.identity import Window
from tiergate_runtime.browser import BrowserSettings
from tiergate_runtime.clientip import check_networks
from tiergate_runtime.server import ServerSettings
from tiergate_runtime.settings import SettingsError, load_settings
from tiergate_runtime.tracing import TracingSettings
from tiergate_state.store import StoreSettings, with_redis_url

__all__ = [
    "ApiName",
    "AuthLink",
    "BackendSettings",
    "GatewaySettings",
    "LimitSettings",
    "ModelAlias",
    "TierPolicy",
    "Turns",
    "WakeSettings",
    "load",
    "validate",
]

ENV_PREFIX = "TIERGATE_GATEWAY_"


class TierPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one tier may do. A limit left unset is off."""

    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    """Public model ids the tier may use; `*` allows every model."""
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1024
    """Cap on `max_tokens`/`max_completion_tokens`: larger asks are clamped, absent ones set."""
    requests: Window | None = None
    """Requests per sliding window, per subject."""
    tokens: Window | None = None
    """Tokens (prompt estimate + max_tokens, corrected to real usage) per sliding window."""
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    """Requests (streams included) in flight at once, per subject."""
    tools: bool = True
    """Whether requests may carry `tools`/`functions`."""
    grounding: bool = False
    """Answer from the retrieval service's sources (one system message with numbered
    sources) when they are relevant to the question; see `[rag]`."""
    guard: GuardSettings | None = None
    """The runaway guard: answers that degenerate into repetition are ended there, with
    `finish_reason: "length"` and `tiergate_guard: "repetition"` (`[tiers.X.guard]`; unset:
    off; on by default for the anonymous tier, whose small model loops)."""
    content_filter: ContentFilterSettings | None = None
    """The profanity filter on requests and answers (`[tiers.X.content_filter]`: a flagged
    request is a 400 `content_policy_violation`, a flagged answer ends with
    `finish_reason: "content_filter"`; unset: off; on by default for `anonymous` and `user`)."""
    grounding_tokens: Annotated[int, msgspec.Meta(ge=50, le=100_000)] = 256
    """Budget of the sources, in estimated tokens (characters / `limits.chars_per_token`):
    the passages that matched, best first, until it is spent. Every prompt token costs time
    to first token on a CPU model (~3 ms each for SmolLM2 on one thread)."""


def _default_tiers() -> dict[str, TierPolicy]:
    # The seed's defaults (DESIGN.md, Tiers and policy). Model lists name no model here, so
    # that any model catalog starts; config/gateway.toml keeps anonymous on the small model.
    return {
        "anonymous": TierPolicy(
            max_tokens=300,
            requests=Window(limit=20, window_s=900),
            tokens=Window(limit=40_000, window_s=900),
            max_concurrent=2,
            tools=False,
            grounding=True,
            guard=GuardSettings(),
            content_filter=ContentFilterSettings(),
        ),
        "user": TierPolicy(
            max_tokens=1024,
            requests=Window(limit=300, window_s=3600),
            tokens=Window(limit=400_000, window_s=3600),
            max_concurrent=4,
            content_filter=ContentFilterSettings(),
        ),
        "agent": TierPolicy(
            max_tokens=4096,
            requests=Window(limit=600, window_s=60),
            max_concurrent=16,
        ),
    }


class AuthLink(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the gateway checks credentials issued by the auth service."""

    url: str | None = "http://127.0.0.1:8081"
    """The auth service: its JWKS, its internal API (without a shared store) and, with
    `proxy`, its public `/v1/auth/*` endpoints. None: only anonymous requests (and API keys
    in a shared store) are possible."""
    issuer: str = "tiergate"
    audience: str = "tiergate"
    pepper: Annotated[str, msgspec.Meta(min_length=32, max_length=512)] | None = None
    """The auth service's pepper: API keys are looked up by their HMAC under it. Unset: API
    keys are refused."""
    internal_token: Annotated[str, msgspec.Meta(min_length=32, max_length=512)] | None = None
    """Bearer token for the auth service's internal API (used when `store.url` is unset)."""
    cache_ttl_s: Annotated[float, msgspec.Meta(gt=0, le=5)] = 4.0
    """How long a key or session lookup is trusted: revocations reach us within this."""
    stale_s: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 900.0
    """How long a last lookup still serves while the store or auth service is unreachable."""
    jwks_max_age_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 300.0
    jwks_min_refetch_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    """An unknown `kid` refetches the JWKS at most this often (a flood of forged kids cannot
    turn into a flood of fetches)."""
    access_cookie: str | None = None
    """Read the access token from this cookie when there is no Authorization header (the
    website's cookie mode, e.g. `tg_access`)."""
    proxy: bool = True
    """Relay `/v1/auth/*` and `/.well-known/jwks.json` to the auth service (one origin)."""
    timeout_s: Seconds = 2.0


class RagLink(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where grounding searches, and how long it may take."""

    url: str | None = "http://127.0.0.1:8082"
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.2
    """Past this the request is answered ungrounded (and says so)."""
    k: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    """Hits asked for; those holding none of the question are dropped, the rest fill the
    tier's `grounding_tokens`."""
    max_source_chars: Annotated[int, msgspec.Meta(ge=100, le=20_000)] = 600
    """The longest passage one source contributes."""
    min_relevance: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.45
    """Ground only when the hits hold at least this share of the question (retrieval's
    `relevance`: the idf-weighted share of the question's content terms found in the hits;
    0 grounds whatever was found). Calibrated on `evals/answer.toml` against the default
    corpus (bench/results/answer-latest.md)."""


class LimitSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How limits are kept."""

    lease_s: Annotated[float, msgspec.Meta(ge=5, le=3600)] = 30.0
    """A concurrency lease outlives a dead process by at most this; live ones are renewed."""
    retry_store_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    """After the store failed, decide locally for this long before trying it again."""
    chars_per_token: Annotated[float, msgspec.Meta(gt=0, le=16)] = 3.0
    """Prompt tokens are estimated from the request's size (cautiously, before the call)."""


class ResilienceSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retries and fallbacks before the first byte, and the breaker per backend."""

    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 2
    """Attempts on the same backend after a 502/503, with jittered backoff, before the next."""
    breaker_threshold: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    """Failures in a row that open a backend's breaker."""
    breaker_cooldown_s: Seconds = 30.0
    """How long an open breaker skips its backend before one probe request is let through."""


class ResponsesSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Responses API (`POST /v1/responses`)."""

    ttl_s: Annotated[float, msgspec.Meta(ge=60, le=30 * 86400)] = 86400.0
    """How long a stored response (`store`, the default) can be continued with
    `previous_response_id`; kept in the shared store, per subject."""


def _default_server() -> ServerSettings:
    return ServerSettings(port=8080)


def _default_backends() -> dict[str, BackendSettings]:
    return {
        "cpu": BackendSettings(
            base_url="http://127.0.0.1:8083/v1",
            kind="llamacpp",
            health_url="http://127.0.0.1:8083/readyz",
        )
    }


def _default_models() -> list[ModelAlias]:
    # SmolLM2's chat template emits no tool calls (llama.cpp's /props: supports_tools false).
    return [
        ModelAlias(
            id="tiergate-small", backend="cpu", engine_model="smollm2-135m-instruct", tools=False
        )
    ]


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the gateway reads from its config file and environment."""

    server: ServerSettings = msgspec.field(default_factory=_default_server)
    backends: dict[Name, BackendSettings] = msgspec.field(default_factory=_default_backends)
    models: list[ModelAlias] = msgspec.field(default_factory=_default_models)
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=256 * 1024 * 1024)] = 8 * 1024 * 1024
    health_probe_interval_s: Seconds = 5.0
    hold_keepalive_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 10.0
    """A stream held for a waking model (`when_cold = "hold"`) gets an SSE comment
    (`: waking`) this often, so proxies in front do not time the silent connection out; its
    response head goes out with the first one. 0: none (the head waits for the answer)."""
    status_cache_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    """`GET /v1/status` is computed at most once per this many seconds (per process)."""
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    auth: AuthLink = msgspec.field(default_factory=AuthLink)
    tiers: dict[Name, TierPolicy] = msgspec.field(default_factory=_default_tiers)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    resilience: ResilienceSettings = msgspec.field(default_factory=ResilienceSettings)
    rag: RagLink = msgspec.field(default_factory=RagLink)
    responses: ResponsesSettings = msgspec.field(default_factory=ResponsesSettings)
    records: RecordsSettings = msgspec.field(default_factory=RecordsSettings)
    web: WebSettings = msgspec.field(default_factory=WebSettings)
    contact: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    """How to reach a human (an e-mail address, a URL, a sentence), returned by
    `GET /v1/status` as `contact`; unset: null."""
    trusted_proxies: list[str] = []
    """Peers whose `X-Forwarded-For` is believed (load balancers in front of the gateway)."""
    browser: BrowserSettings = msgspec.field(default_factory=BrowserSettings)
    routes: list[RouteRule] = []
    """(tier, workload, language) → models, first match wins; used for `routed` models."""
    languages: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}$")]] = msgspec.field(
        default_factory=lambda: ["en", "de", "fr", "es", "it", "nl", "pt"]
    )
    """Languages the detector tells apart (only loaded if a route names a language)."""


def _check_backend(name: str, backend: BackendSettings) -> None:
    for field, url in (("base_url", backend.base_url), ("health_url", backend.health_url)):
        problem = url_problem(url) if url is not None else None
        if problem is not None:
            raise SettingsError(f"invalid setting backends.{name}.{field}: {problem}")
    if backend.api_key is not None and backend.api_key_file is not None:
        raise SettingsError(
            f"invalid setting backends.{name}.api_key_file: set api_key or api_key_file, not both"
        )
    if backend.api_key is None and backend.api_key_file is None:
        for field in ("auth_header", "auth_scheme"):
            if getattr(backend, field) is not None:
                raise SettingsError(
                    f"invalid setting backends.{name}.{field}: unused without api_key or "
                    "api_key_file"
                )
    if backend.api_key_file is not None and not os.access(backend.api_key_file, os.R_OK):
        raise SettingsError(
            f"invalid setting backends.{name}.api_key_file: cannot read {backend.api_key_file!r}"
        )
    if backend.max_queue is not None and backend.slots is None and backend.kind != "llamacpp":
        raise SettingsError(
            f"invalid setting backends.{name}.max_queue: needs backends.{name}.slots "
            f"(a {backend.kind} backend's slots are not learned from the engine)"
        )


def _check_models(settings: GatewaySettings) -> set[str]:
    for name, backend in settings.backends.items():
        _check_backend(name, backend)
    seen: set[str] = set()
    for index, model in enumerate(settings.models):
        if model.backend not in settings.backends:
            defined = ", ".join(sorted(settings.backends)) or "none"
            raise SettingsError(
                f"invalid setting models[{index}].backend: unknown backend {model.backend!r} "
                f"(defined: {defined})"
            )
        if model.id in seen:
            raise SettingsError(f"invalid setting models[{index}].id: duplicate model {model.id!r}")
        if not model.endpoints:
            raise SettingsError(f"invalid setting models[{index}].endpoints: name at least one")
        seen.add(model.id)
    _check_dialects(settings)
    return seen


_UNDROPPABLE = frozenset({"model", "messages", "prompt", "input"})


def _check_dialects(settings: GatewaySettings) -> None:
    for name, backend in settings.backends.items():
        kept = sorted(_UNDROPPABLE & backend.drop_fields)
        if kept:
            raise SettingsError(
                f"invalid setting backends.{name}.drop_fields: {kept[0]!r} cannot be dropped"
            )
    # The template belongs to the engine model: aliases of one model must agree on it.
    turns: dict[tuple[str, str], str] = {}
    for index, model in enumerate(settings.models):
        other = turns.setdefault((model.backend, model.engine_model), model.turns)
        if other != model.turns:
            raise SettingsError(
                f"invalid setting models[{index}].turns: {model.turns!r}, but another alias "
                f"of {model.engine_model!r} on backend {model.backend!r} says {other!r}"
            )


def validate(settings: GatewaySettings) -> GatewaySettings:
    """Cross-field checks msgspec cannot express; raise SettingsError naming the field."""
    seen = _check_models(settings)
    if "anonymous" not in settings.tiers:
        raise SettingsError("invalid setting tiers: the 'anonymous' tier must be defined")
    for tier, policy in settings.tiers.items():
        for index, model_id in enumerate(policy.models):
            if model_id != "*" and model_id not in seen:
                raise SettingsError(
                    f"invalid setting tiers.{tier}.models[{index}]: unknown model {model_id!r}"
                )
    check_networks(settings.trusted_proxies, "trusted_proxies")
    chat_models = {m.id for m in settings.models if "chat" in m.endpoints}
    for index, rule in enumerate(settings.routes):
        for position, model_id in enumerate(rule.models):
            if model_id not in seen:
                raise SettingsError(
                    f"invalid setting routes[{index}].models[{position}]: unknown model "
                    f"{model_id!r}"
                )
            if model_id not in chat_models:
                raise SettingsError(
                    f"invalid setting routes[{index}].models[{position}]: {model_id!r} does "
                    "not serve chat (the route table routes chat requests)"
                )
        if rule.language not in {"*", *settings.languages}:
            raise SettingsError(
                f"invalid setting routes[{index}].language: {rule.language!r} is not in languages"
            )
    if settings.auth.url is not None:
        problem = url_problem(settings.auth.url)
        if problem is not None:
            raise SettingsError(f"invalid setting auth.url: {problem}")
    return settings


def load(environ: Mapping[str, str] | None = None) -> GatewaySettings:
    """Settings from the config file and environment, validated.

    `REDIS_URL` is honoured as `store.url` when that is not set otherwise.
    """
    env = os.environ if environ is None else environ
    settings = load_settings(GatewaySettings, env_prefix=ENV_PREFIX, environ=env)
    return validate(with_redis_url(settings, env))
