"""Bake cpu-llm's models into its image: the conversions the service would do at first start.

Run by `cpu-llm.Dockerfile` at build time, as root, with the image's own environment
(`TIERGATE_CPU_LLM_CONFIG`, the cache directories, the chosen model): it loads the settings the
service will load and calls the service's own model preparation, `resolve_chat_model` (a
packaged model's GGUF, chunks joined; re-encoded as Q8_0 with `engine.requantize`) and
`resolve_embedding_model` (all-MiniLM-L6-v2 converted to GGUF), which write into the cache
directory. At start the service resolves the same settings to the same files and converts
nothing, so the cache directory can stay read-only.

Exits 2 with one line naming the problem (a bad setting, a missing model package, a file that
is not a GGUF, a custom model without `MODEL_ID`), which fails the build.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tiergate_cpu_llm.embedding_model import resolve_embedding_model
from tiergate_cpu_llm.model import ModelFileError
from tiergate_cpu_llm.packaged_model import resolve_chat_model
from tiergate_cpu_llm.settings import CpuLlmSettings, load
from tiergate_runtime.settings import SettingsError


def _fail(message: str) -> int:
    print(f"cpu-llm bake: {message}", file=sys.stderr)
    return 2


def _problem(settings: CpuLlmSettings) -> str | None:
    """Why these settings cannot be baked, or None."""
    engine, embedding = settings.engine, settings.embedding
    if engine.cache_dir is None or (embedding.enabled and embedding.cache_dir is None):
        return (
            "engine.cache_dir and embedding.cache_dir must be set (the image sets both to "
            "/var/cache/tiergate/models); unset, the models would land in ~/.cache"
        )
    if engine.model_path and not engine.model_id:
        return (
            "a model file (MODEL_FILE) needs MODEL_ID: the id the engine reports, which the "
            "gateway's engine_model must name"
        )
    return None


def bake(settings: CpuLlmSettings) -> dict[str, object]:
    """Prepare every model the service serves; return what was baked (paths and sizes)."""
    chat = resolve_chat_model(settings.engine)
    baked: dict[str, object] = {
        "chat": {"model_id": chat.model_id, "path": str(chat.path), "bytes": _size(chat.path)},
    }
    if settings.embedding.enabled:
        path = resolve_embedding_model(settings.embedding)
        baked["embedding"] = {
            "model_id": settings.embedding.model_id,
            "path": str(path),
            "bytes": _size(path),
        }
    # What the service does at start: the same resolution must find the files just made.
    again = resolve_chat_model(settings.engine)
    if again.path != chat.path:
        raise ModelFileError(f"a second resolution found {again.path}, not {chat.path}")
    return baked


def _size(path: Path) -> int:
    return path.stat().st_size


def main() -> int:
    """Load the image's settings, bake, print what was baked as JSON."""
    try:
        settings = load()
    except SettingsError as exc:
        return _fail(str(exc))
    problem = _problem(settings)
    if problem is not None:
        return _fail(problem)
    try:
        baked = bake(settings)
    except ModelFileError as exc:
        return _fail(str(exc))
    print(json.dumps(baked, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
