"""Turning files and posted texts into indexed documents: title, language, chunks.

A document's id is, for a file named in the corpus, that path as configured
(`services/rag/design.md`); for a file found under a corpus directory, its path relative to
that directory; if that id is already taken by an earlier entry, the path as found (directory
included) — so ids never collide; or the id it was posted under. Its title is its first
Markdown heading, else its file name; its language is declared (front matter `lang: de` on
the first line, or the API's `language`) or detected.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

from tiergate_rag.chunking import chunk_markdown, chunk_text
from tiergate_rag.index import IndexedDocument, SearchIndex

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
        origin: str = "corpus",
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
            markdown=markdown,
            origin=origin,
        )

    def corpus(self, entries: list[str]) -> Iterator[IndexedDocument]:
        """Every Markdown/text file under the corpus entries (files or directories)."""
        for doc_id, path, kind in _corpus_files(entries):
            text = path.read_text(encoding="utf-8", errors="replace")
            yield self.document(doc_id, text, markdown=kind == "markdown", source=str(path))

    def rebuild(self, index: SearchIndex, entries: list[str]) -> tuple[int, int]:
        """Rebuild `index` from the corpus read afresh plus the documents added through the
        API (re-chunked with today's settings; an API document wins over a corpus file with
        the same id). Returns (corpus documents, API documents)."""
        fingerprint = self.fingerprint(entries)
        kept = [
            self.document(
                d.doc_id,
                d.text,
                markdown=d.markdown,
                title=d.title,
                language=d.language,
                source=d.source,
                origin="api",
            )
            for d in index.documents(origin="api")
        ]
        taken = {d.doc_id for d in kept}
        corpus = [d for d in self.corpus(entries) if d.doc_id not in taken]
        index.rebuild([*corpus, *kept], fingerprint)
        return len(corpus), len(kept)

    def fingerprint(self, entries: list[str]) -> str:
        """What the corpus index depends on: the files (id, size, modification time) and the
        chunking and language settings. A change means the index must be rebuilt."""
        digest = hashlib.sha256(repr((self._size, self._overlap, self._languages)).encode())
        for doc_id, path, kind in _corpus_files(entries):
            stat = path.stat()
            digest.update(f"\0{doc_id}\0{kind}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        return digest.hexdigest()


def _corpus_files(entries: list[str]) -> Iterator[tuple[str, Path, str]]:
    """(id, path, kind) of every Markdown/text file under the entries, ids unique."""
    seen: set[str] = set()
    for entry in entries:
        root = Path(entry)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            kind = _SUFFIXES.get(path.suffix.lower())
            if kind is None:
                continue
            doc_id = path.as_posix() if root.is_file() else path.relative_to(root).as_posix()
            if doc_id in seen:
                doc_id = path.as_posix()
            seen.add(doc_id)
            yield doc_id, path, kind
