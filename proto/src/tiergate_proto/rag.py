"""The retrieval service's API: search, and documents (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "DocumentChunk",
    "DocumentPut",
    "DocumentView",
    "SearchFilters",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
]


class SearchFilters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Narrow a search to one document or one language."""

    doc_id: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}$")] | None = None


class SearchRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/search`."""

    query: str
    k: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    filters: SearchFilters = msgspec.field(default_factory=SearchFilters)
    passage_chars: Annotated[int, msgspec.Meta(ge=40, le=20_000)] | None = None
    """Also return each hit's `passage`: its lines that matched the query, at most this
    many characters."""


class SearchHit(msgspec.Struct, kw_only=True):
    """One ranked chunk."""

    id: str
    doc_id: str
    score: float
    text: str
    title: str
    heading_path: list[str]
    source: str
    language: str
    relevance: float = 0.0
    """How much of the query the chunk holds, 0 to 1: the idf-weighted share of the query's
    content terms (function words dropped) found in it. Unlike `score` (BM25, unbounded, its
    scale moving with corpus and query), comparable across queries and corpora."""
    passage: str | None = None
    """With `passage_chars`: the consecutive lines/sentences of `text` that hold the most of
    the query, within that length (the whole text when it fits)."""


class SearchResponse(msgspec.Struct, kw_only=True):
    """The ranked chunks, best first."""

    data: list[SearchHit]
    object: Literal["list"] = "list"
    relevance: float = 0.0
    """How much of the query the hits cover together (0 to 1): the idf-weighted share of the
    query's content terms found in at least one of them. What grounding is decided on."""


class DocumentPut(msgspec.Struct, kw_only=True):
    """`PUT /v1/documents/{doc_id}` (admin): add or replace a document."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=5_000_000)]
    title: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    format: Literal["markdown", "text"] = "markdown"
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}$")] | None = None
    """Declared language; unset: detected."""
    source: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class DocumentChunk(msgspec.Struct, kw_only=True):
    """One chunk of a document: the id search hits carry, and its heading path."""

    id: str
    heading_path: list[str]


class DocumentView(msgspec.Struct, kw_only=True):
    """`GET /v1/documents/{doc_id}`: a whole document as ingested."""

    id: str
    title: str
    source: str
    language: str
    text: str
    chunks: list[DocumentChunk]
    object: Literal["document"] = "document"
