"""`create_app(settings)`: search, document admin, re-index, health and metrics.

- `POST /v1/search {query, k, filters}` → ranked chunks. An empty, oversized or non-text
  query is a 400 envelope; `k` is 1 to 50.
- `GET /v1/documents/{doc_id}`: a whole document as ingested, with its chunks' ids.
- `PUT /v1/documents/{doc_id}` / `DELETE /v1/documents/{doc_id}` (admin token): add, replace
  or remove one document. `POST /v1/reindex` (admin): rebuild from the corpus, atomically.
- `/mcp/`: the same corpus for agents over MCP (`search_docs`, `get_document`).
- At start, the index is rebuilt when the corpus changed since it was built (or is new);
  rebuilding keeps the documents added through the API.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import structlog
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.handlers import asgi
from litestar.params import FromPath
from litestar.types import Receive, Scope, Send
from prometheus_client import CollectorRegistry

from tiergate_proto.rag import (
    DocumentChunk,
    DocumentPut,
    DocumentView,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from tiergate_rag.index import SearchIndex
from tiergate_rag.ingest import Ingestor
from tiergate_rag.mcp_server import McpEndpoint
from tiergate_rag.relevance import together
from tiergate_rag.settings import RagSettings
from tiergate_runtime.app import service_app
from tiergate_runtime.body import read_struct
from tiergate_runtime.errors import InvalidRequest, NotFound, Unauthorized
from tiergate_runtime.metrics import HttpMetrics

__all__ = ["create_app"]

_log = structlog.get_logger("tiergate.rag")
_encode = msgspec.json.Encoder().encode


def _json(value: object, status: int = 200) -> Response[bytes]:
    return Response(_encode(value), status_code=status, media_type="application/json")


def _require_admin(request: Request[Any, Any, Any], expected: str | None) -> None:
    if expected is None:
        raise NotFound(f"Unknown path: {request.method} {request.url.path}", code="unknown_url")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized("A valid admin token is required.", code="invalid_admin_token")


def create_app(settings: RagSettings) -> Litestar:
    """Build the app; the index directory is created if missing."""
    index = SearchIndex(Path(settings.index_dir))
    ingestor = Ingestor(settings.chunk_size, settings.chunk_overlap, settings.languages)
    registry = CollectorRegistry()
    mcp = McpEndpoint(index, settings) if settings.mcp.enabled else None

    async def rebuild() -> tuple[int, int]:
        corpus, kept = await asyncio.to_thread(ingestor.rebuild, index, settings.corpus)
        _log.info("reindexed", corpus_documents=corpus, api_documents=kept, chunks=index.count())
        return corpus, kept

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # Built when the corpus (files, chunking, languages) differs from what the live index
        # was built from: at the first start, and after the documentation changed.
        # Searches detect the query's language: load lingua's models now, not at the first
        # search (0.7-0.9 s, past the gateway's grounding timeout).
        await asyncio.to_thread(ingestor.detect, "Which language is this query written in?")
        current = await asyncio.to_thread(ingestor.fingerprint, settings.corpus)
        if settings.corpus and index.fingerprint() != current:
            await rebuild()
        if mcp is None:
            yield
            return
        async with mcp.running():
            yield

    @post("/v1/search", status_code=200)
    async def search(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await read_struct(request, SearchRequest, settings.max_body_bytes)
        query = body.query.strip()
        if not query:
            raise InvalidRequest("The query is empty.", param="query", code="empty_query")
        if len(query) > settings.max_query_chars:
            raise InvalidRequest(
                f"The query is longer than {settings.max_query_chars} characters.",
                param="query",
                code="query_too_long",
            )
        hits = await asyncio.to_thread(
            index.search,
            query,
            body.k,
            doc_id=body.filters.doc_id,
            language=body.filters.language,
            passage_chars=body.passage_chars,
            query_language=ingestor.detect(query),
        )
        data = [
            SearchHit(
                id=h.chunk_id,
                doc_id=h.doc_id,
                score=h.score,
                text=h.text,
                title=h.title,
                heading_path=h.heading_path,
                source=h.source,
                language=h.language,
                relevance=h.relevance,
                passage=h.passage,
            )
            for h in hits
        ]
        jointly = together((h.query, h.matched) for h in hits if h.query is not None)
        return _json(SearchResponse(data=data, relevance=jointly))

    @get("/v1/documents/{doc_id:path}")
    async def get_document(doc_id: FromPath[str]) -> Response[bytes]:
        doc_id = doc_id.removeprefix("/")
        document = await asyncio.to_thread(index.document, doc_id)
        if document is None:
            raise NotFound(f"No document with id '{doc_id}'.", code="document_not_found")
        return _json(
            DocumentView(
                id=document.doc_id,
                title=document.title,
                source=document.source,
                language=document.language,
                text=document.text,
                chunks=[DocumentChunk(id=c, heading_path=p) for c, p in document.chunks],
            )
        )

    @asgi("/mcp", is_mount=True, copy_scope=True)
    async def mcp_mount(scope: Scope, receive: Receive, send: Send) -> None:
        assert mcp is not None  # mounted only when enabled
        await mcp.asgi(scope, receive, send)  # type: ignore[arg-type]

    @put("/v1/documents/{doc_id:path}", status_code=200)
    async def put_document(
        request: Request[Any, Any, Any], doc_id: FromPath[str]
    ) -> Response[bytes]:
        _require_admin(request, settings.admin_token)
        doc_id = doc_id.removeprefix("/")
        body = await read_struct(request, DocumentPut, settings.max_body_bytes)
        document = ingestor.document(
            doc_id,
            body.text,
            markdown=body.format == "markdown",
            title=body.title,
            language=body.language,
            source=body.source,
            origin="api",
        )
        await asyncio.to_thread(index.upsert, [document])
        return _json({"id": doc_id, "chunks": len(document.chunks), "language": document.language})

    @delete("/v1/documents/{doc_id:path}", status_code=200)
    async def delete_document(
        request: Request[Any, Any, Any], doc_id: FromPath[str]
    ) -> Response[bytes]:
        _require_admin(request, settings.admin_token)
        doc_id = doc_id.removeprefix("/")
        await asyncio.to_thread(index.delete, doc_id)
        return _json({"id": doc_id, "deleted": True})

    @post("/v1/reindex", status_code=200)
    async def reindex(request: Request[Any, Any, Any]) -> Response[bytes]:
        _require_admin(request, settings.admin_token)
        corpus, kept = await rebuild()
        return _json(
            {"documents": corpus + kept, "corpus": corpus, "api": kept, "chunks": index.count()}
        )

    app = service_app(
        [
            search,
            get_document,
            put_document,
            delete_document,
            reindex,
            *([mcp_mount] if mcp is not None else []),
        ],
        registry=registry,
        http_metrics=HttpMetrics(registry, "tiergate_rag"),
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.index = index
    return app
