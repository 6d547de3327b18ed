"""gpu-llm settings: the engines of one GPU box, the swap rule, health, idle scale-to-zero.

A TOML file (`TIERGATE_GPU_LLM_CONFIG`) plus `TIERGATE_GPU_LLM_*` environment overrides. Each
engine is a command line the supervisor starts and stops, the port it listens on, where its
health answers, how long it may take to become ready, the models it serves, and whether it can
release the GPU without exiting (`sleep`: vLLM's `/sleep` + `/wake_up`, SGLang's
`/release_memory_occupation` + `/resume_memory_occupation`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from tiergate_runtime.server import ServerSettings
from tiergate_runtime.settings import SettingsError, load_settings
from tiergate_state.store import StoreSettings, with_redis_url

__all__ = ["EngineSettings", "GpuLlmSettings", "HealthSettings", "PolicySettings", "load"]

ENV_PREFIX = "TIERGATE_GPU_LLM_"
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86400)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
SleepMode = Literal["none", "vllm", "sglang"]


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One engine: how to run it, where it answers, what it serves."""

    command: list[str]
    """argv, e.g. ["vllm", "serve", "Qwen/Qwen2.5-14B-Instruct", "--port", "8100"]."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    host: str = "127.0.0.1"
    health_path: str = "/health"
    ready_timeout_s: Seconds = 600.0
    models: list[str]
    """Model ids requests name for this engine (as the engine knows them)."""
    sleep: SleepMode = "none"
    """`vllm` needs `--enable-sleep-mode` on its command line."""
    pre_start: list[str] | None = None
    """Run to completion before every start (e.g. dropping page caches)."""
    pre_start_timeout_s: Seconds = 60.0
    stop_grace_s: Seconds = 30.0
    """SIGTERM, then SIGKILL after this."""
    env: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """http://host:port."""
        return f"http://{self.host}:{self.port}"


class PolicySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The swap rule (see policy.py) and idle scale-to-zero."""

    min_dwell_s: Seconds = 60.0
    swap_min_waiting: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 4
    max_wait_s: Seconds = 30.0
    demand_window_s: Seconds = 30.0
    idle_ttl_s: Seconds = 600.0
    """The hot engine stops (or sleeps) after this long with nothing in flight."""
    drain_s: Seconds = 120.0
    """How long a swap waits for the hot engine's running requests before stopping it."""


class HealthSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Probing the hot engine, and how often a start is tried."""

    probe_interval_s: Seconds = 30.0
    probe_timeout_s: Seconds = 5.0
    failures_before_restart: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    start_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 2
    """Tries per wake; all failing leaves the engine `failed` until the next wake."""


def _default_server() -> ServerSettings:
    return ServerSettings(port=8084)


class GpuLlmSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything gpu-llm reads from its config file and environment."""

    server: ServerSettings = msgspec.field(default_factory=_default_server)
    box: Name = "gpu0"
    engines: dict[Name, EngineSettings] = msgspec.field(default_factory=dict)
    policy: PolicySettings = msgspec.field(default_factory=PolicySettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    admin_token: Annotated[str, msgspec.Meta(min_length=32, max_length=512)] | None = None
    """Bearer token for wake/sleep; unset: those endpoints are off."""
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    """Where the box's state is published for the gateways (`tg:gpu:{box}`); unset: nowhere."""
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=256 * 1024 * 1024)] = 32 * 1024 * 1024
    proxy_read_timeout_s: Seconds = 600.0


def validate(settings: GpuLlmSettings) -> GpuLlmSettings:
    """Cross-field checks; raise SettingsError naming the field."""
    owner: dict[str, str] = {}
    ports: dict[int, str] = {}
    for name, engine in settings.engines.items():
        if not engine.command:
            raise SettingsError(f"invalid setting engines.{name}.command: empty")
        if not engine.models:
            raise SettingsError(f"invalid setting engines.{name}.models: empty")
        for model in engine.models:
            if model in owner:
                raise SettingsError(
                    f"invalid setting engines.{name}.models: {model!r} is already served by "
                    f"{owner[model]!r}"
                )
            owner[model] = name
        if engine.port in ports:
            raise SettingsError(
                f"invalid setting engines.{name}.port: {engine.port} is {ports[engine.port]}'s"
            )
        ports[engine.port] = name
        if not engine.health_path.startswith("/"):
            raise SettingsError(f"invalid setting engines.{name}.health_path: must start with /")
    return settings


def load(environ: Mapping[str, str] | None = None) -> GpuLlmSettings:
    """Settings from the config file and environment (`REDIS_URL` too), validated."""
    env = os.environ if environ is None else environ
    settings = load_settings(GpuLlmSettings, env_prefix=ENV_PREFIX, environ=env)
    return validate(with_redis_url(settings, env))
