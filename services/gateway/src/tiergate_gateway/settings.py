"""Gateway settings: backends, public model aliases, limits; validated once at startup.

A TOML file (`TIERGATE_GATEWAY_CONFIG`) plus `TIERGATE_GATEWAY_*` environment overrides, e.g.
`TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL=http://10.0.0.5:8083/v1`. Unknown keys, wrong types
and references to undefined backends fail startup with a message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
import msgspec

from tiergate_runtime.server import ServerSettings
from tiergate_runtime.settings import SettingsError, load_settings
from tiergate_runtime.tracing import TracingSettings

__all__ = ["BackendSettings", "GatewaySettings", "ModelAlias", "load", "validate"]

ENV_PREFIX = "TIERGATE_GATEWAY_"

Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# Public ids travel in headers (x-tiergate-model), so they are header-safe ASCII.
ModelId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")]
EngineModelId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
EngineKind = Literal["llamacpp", "vllm", "sglang", "openai"]


def _url_problem(url: str) -> str | None:
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


class BackendSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One upstream that speaks the OpenAI API.

    `base_url` includes the API prefix (`http://127.0.0.1:8083/v1`); requests go to
    `base_url + "/chat/completions"`. `read_timeout_s` bounds every wait for bytes from the
    upstream: the response head (for a non-streaming call, the whole generation) and each
    gap between stream chunks. `health_url` is probed for `/readyz`.
    """

    base_url: str
    kind: EngineKind = "openai"
    api_key: str | None = None
    connect_timeout_s: Seconds = 2.0
    read_timeout_s: Seconds = 300.0
    write_timeout_s: Seconds = 30.0
    pool_timeout_s: Seconds = 5.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    max_keepalive: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 100
    connect_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    health_url: str | None = None
    required_for_ready: bool = True


class ModelAlias(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A public model id clients ask for, and where it is served."""

    id: ModelId
    backend: Name
    engine_model: EngineModelId
    owned_by: str = "tiergate"
    created: int = 0


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
    return [ModelAlias(id="tiergate-small", backend="cpu", engine_model="smollm2-135m-instruct")]


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the gateway reads from its config file and environment."""

    server: ServerSettings = msgspec.field(default_factory=_default_server)
    backends: dict[Name, BackendSettings] = msgspec.field(default_factory=_default_backends)
    models: list[ModelAlias] = msgspec.field(default_factory=_default_models)
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=256 * 1024 * 1024)] = 8 * 1024 * 1024
    health_probe_interval_s: Seconds = 5.0
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)


def validate(settings: GatewaySettings) -> GatewaySettings:
    """Cross-field checks msgspec cannot express; raise SettingsError naming the field."""
    for name, backend in settings.backends.items():
        for field, url in (("base_url", backend.base_url), ("health_url", backend.health_url)):
            problem = _url_problem(url) if url is not None else None
            if problem is not None:
                raise SettingsError(f"invalid setting backends.{name}.{field}: {problem}")
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
        seen.add(model.id)
    return settings


def load() -> GatewaySettings:
    """Settings from the config file and environment, validated."""
    return validate(load_settings(GatewaySettings, env_prefix=ENV_PREFIX))
