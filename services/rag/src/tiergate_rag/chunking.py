"""Splitting a document into chunks that carry their title and heading path.

Markdown is split at headings (`#` … `######`, outside fenced code); each section keeps the
path of headings above it (`["Install", "From a clone"]`). A section longer than `size`
characters is cut at paragraph (then line, then word) boundaries into pieces of at most `size`
characters, each starting with the last `overlap` characters of the one before, so a sentence
cut in two is still found whole in one chunk. Plain text has no headings: one section.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

__all__ = ["Chunk", "chunk_markdown", "chunk_text"]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One searchable piece of a document."""

    index: int
    """Position in the document (0, 1, …)."""
    text: str
    heading_path: tuple[str, ...]


def _sections(markdown: str) -> list[tuple[tuple[str, ...], str]]:
    sections: list[tuple[tuple[str, ...], str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text:
            sections.append((tuple(title for _, title in path), text))
        lines.clear()

    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        flush()
        level = len(heading.group(1))
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, heading.group(2).strip()))
    flush()
    return sections


def _cut(text: str, size: int) -> list[str]:
    """Pieces of at most `size` characters, cut at the coarsest boundary that fits."""
    if len(text) <= size:
        return [text]
    for separator in ("\n\n", "\n", " "):
        parts = text.split(separator)
        if len(parts) > 1:
            pieces: list[str] = []
            current = ""
            for part in parts:
                candidate = f"{current}{separator}{part}" if current else part
                if len(candidate) <= size:
                    current = candidate
                    continue
                if current:
                    pieces.append(current)
                current = part
            if current:
                pieces.append(current)
            return [cut for piece in pieces for cut in _cut(piece, size)]
    return [text[i : i + size] for i in range(0, len(text), size)]


def _with_overlap(pieces: list[str], overlap: int) -> list[str]:
    if overlap <= 0:
        return pieces
    out = [pieces[0]]
    for previous, piece in itertools.pairwise(pieces):
        tail = previous[-overlap:]
        space = tail.find(" ")
        tail = tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail  # start at a word
        out.append(f"{tail} {piece}")
    return out


def chunk_markdown(markdown: str, size: int = 1200, overlap: int = 150) -> list[Chunk]:
    """The chunks of a Markdown document, in order."""
    chunks: list[Chunk] = []
    for path, text in _sections(markdown):
        for piece in _with_overlap(_cut(text, size), overlap):
            chunks.append(Chunk(index=len(chunks), text=piece, heading_path=path))
    return chunks


def chunk_text(text: str, size: int = 1200, overlap: int = 150) -> list[Chunk]:
    """The chunks of a plain-text document (no headings)."""
    pieces = _with_overlap(_cut(text.strip(), size), overlap) if text.strip() else []
    return [Chunk(index=i, text=piece, heading_path=()) for i, piece in enumerate(pieces)]
