"""Turning files and posted texts into indexed documents: title, language, chunks.

A document's id is its path relative to the corpus entry it came from (or the id it was
posted under); its title is its first Markdown heading, else its file name; its language is
declared (front matter `lang: de` on the first line, or the API's `language`) or detected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

from tiergate_rag.chunking import chunk_markdown, chunk_text
from tiergate_rag.index import IndexedDocument

__all__ = ["Ingestor"]

_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text"}
_FIRST_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_DECLARED = re.compile(r"^lang:\s*([a-z]{2})\s*$")


class Ingestor:
    """Builds `IndexedDocument`s with the service's chunking and language settings."""

    def __init__(self, size: int, overlap: int, languages: list[str]) -> None:
        self._size = size
        self._overlap = overlap
        self._languages = languages
        self._detector = LanguageDetectorBuilder.from_languages(
            *(Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in languages)
        ).build()

    def detect(self, text: str) -> str:
        """The language of `text` among the configured ones (the first one if unsure)."""
        found = self._detector.detect_language_of(text[:4000])
        return found.iso_code_639_1.name.lower() if found is not None else self._languages[0]

    def document(
        self,
        doc_id: str,
        text: str,
        *,
        markdown: bool = True,
        title: str | None = None,
        language: str | None = None,
        source: str | None = None,
    ) -> IndexedDocument:
        """One document, chunked."""
        first, _, rest = text.partition("\n")
        declared = _DECLARED.match(first.strip())
        if declared is not None:
            language = language or declared.group(1)
            text = rest
        if title is None:
            heading = _FIRST_HEADING.search(text) if markdown else None
            title = heading.group(1).strip() if heading else Path(doc_id).stem
        chunker = chunk_markdown if markdown else chunk_text
        return IndexedDocument(
            doc_id=doc_id,
            title=title,
            source=source or doc_id,
            language=language or self.detect(text),
            chunks=chunker(text, self._size, self._overlap),
            text=text,
        )

    def corpus(self, entries: list[str]) -> Iterator[IndexedDocument]:
        """Every Markdown/text file under the corpus entries (files or directories)."""
        for entry in entries:
            root = Path(entry)
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for path in files:
                kind = _SUFFIXES.get(path.suffix.lower())
                if kind is None:
                    continue
                doc_id = path.name if root.is_file() else str(path.relative_to(root))
                text = path.read_text(encoding="utf-8", errors="replace")
                yield self.document(doc_id, text, markdown=kind == "markdown", source=str(path))
