"""The corpus for agents: an MCP server (the official `mcp` SDK) with `search_docs` and
`get_document`, served over streamable HTTP at `/mcp/` of the rag service.

Stateless and JSON-answering (no session to keep, no server-sent events): every `tools/call`
is one POST, so any number of rag replicas can serve it. The tools read the same index as
`POST /v1/search` and `GET /v1/documents/{id}`, with the same bounds. The SDK checks the
`Host` and `Origin` headers against `mcp.allowed_hosts` / `mcp.allowed_origins` (DNS-rebinding
protection); a deployment reached under another name lists it there.

Protocol errors are the SDK's JSON-RPC error objects. What the SDK answers in plain text
(a wrong content type, a refused `Host`, an unknown path) is rewritten into our error envelope
with the same status, and `GET`/`DELETE` — an event stream and a session, which a stateless
server has neither of — get a 405 envelope instead of a stream that never ends.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict  # pydantic needs it for TypedDicts before 3.12

from tiergate_rag.index import SearchIndex
from tiergate_rag.settings import RagSettings
from tiergate_runtime.errors import error_body

__all__ = ["McpEndpoint"]

_MAX_K = 50


class DocsHit(TypedDict):
    """One ranked chunk."""

    id: str
    doc_id: str
    score: float
    title: str
    heading_path: list[str]
    source: str
    language: str
    text: str


class DocsResults(TypedDict):
    """`search_docs`: the best chunks, best first."""

    results: list[DocsHit]


class DocsChunk(TypedDict):
    id: str
    heading_path: list[str]


class DocsDocument(TypedDict):
    """`get_document`: a whole document as ingested."""

    id: str
    title: str
    source: str
    language: str
    text: str
    chunks: list[DocsChunk]


class McpEndpoint:
    """The MCP server over one `SearchIndex`; `asgi` is mounted by the app, `running()` is
    entered in its lifespan."""

    def __init__(self, index: SearchIndex, settings: RagSettings) -> None:
        self._index = index
        self._max_query_chars = settings.max_query_chars
        hosts = settings.mcp.allowed_hosts
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection="*" not in hosts,
            allowed_hosts=hosts,
            allowed_origins=settings.mcp.allowed_origins,
        )
        self.server: MCPServer[Any] = MCPServer(
            name="tiergate-docs",
            instructions=(
                "Search tiergate's document corpus (BM25, English/German/French stemming) "
                "with search_docs; read a whole document with get_document."
            ),
        )
        self.server.tool(
            description=(
                "Full-text search (BM25) over the document corpus. Returns the best chunks, "
                "each with its document id, title, heading path, source and text."
            ),
            structured_output=True,
        )(self.search_docs)
        self.server.tool(
            description="A whole document by id (as returned by search_docs in doc_id).",
            structured_output=True,
        )(self.get_document)
        self.asgi: ASGIApp = _PlainErrorsAsEnvelopes(
            self.server.streamable_http_app(
                streamable_http_path="/",
                stateless_http=True,
                json_response=True,
                transport_security=security,
                max_request_body_size=settings.max_body_bytes,
            )
        )

    def running(self) -> Any:
        """The session manager's context (its task group); enter it for the app's life."""
        return self.server.session_manager.run()

    async def search_docs(
        self,
        query: Annotated[str, Field(description="Words to look for.", min_length=1)],
        k: Annotated[int, Field(description="How many chunks.", ge=1, le=_MAX_K)] = 5,
        language: Annotated[
            str | None, Field(description="Only documents in this language (en, de, fr…).")
        ] = None,
        doc_id: Annotated[str | None, Field(description="Only this document.")] = None,
    ) -> DocsResults:
        text = query.strip()
        if not text:
            raise ToolError("The query is empty.")
        if len(text) > self._max_query_chars:
            raise ToolError(f"The query is longer than {self._max_query_chars} characters.")
        hits = await asyncio.to_thread(
            self._index.search, text, k, doc_id=doc_id, language=language
        )
        return {
            "results": [
                {
                    "id": h.chunk_id,
                    "doc_id": h.doc_id,
                    "score": h.score,
                    "title": h.title,
                    "heading_path": h.heading_path,
                    "source": h.source,
                    "language": h.language,
                    "text": h.text,
                }
                for h in hits
            ]
        }

    async def get_document(
        self, doc_id: Annotated[str, Field(description="The document's id.", min_length=1)]
    ) -> DocsDocument:
        document = await asyncio.to_thread(self._index.document, doc_id)
        if document is None:
            raise ToolError(f"No document with id {doc_id!r}.")
        return {
            "id": document.doc_id,
            "title": document.title,
            "source": document.source,
            "language": document.language,
            "text": document.text,
            "chunks": [{"id": cid, "heading_path": path} for cid, path in document.chunks],
        }


_CODES = {
    400: "bad_request",
    403: "origin_not_allowed",
    404: "unknown_url",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    421: "host_not_allowed",
}
_NO_STREAM = (
    "The MCP endpoint is stateless: POST JSON-RPC messages to it; it has no event stream "
    "(GET) and no session (DELETE)."
)


class _PlainErrorsAsEnvelopes:
    """Pass the SDK's answers through, rewriting its plain-text errors as envelopes."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if scope["method"] != "POST":
            body = error_body(_NO_STREAM, "invalid_request_error", code="method_not_allowed")
            await _send_json(send, 405, body, [(b"allow", b"POST")])
            return
        held: Message | None = None
        parts: list[bytes] = []

        async def relay(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] >= 400 and not content_type.startswith(b"application/json"):
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_json(send, held["status"], _envelope(held["status"], parts))
                return
            await send(message)

        await self._app(scope, receive, relay)


def _envelope(status: int, parts: list[bytes]) -> bytes:
    text = b"".join(parts).decode("utf-8", "replace").strip()
    plain = text if text and len(text) <= 200 and "\n" not in text else ""
    message = f"{plain}." if plain and not plain.endswith(".") else plain
    error_type = "invalid_request_error" if status < 500 else "server_error"
    return error_body(
        message or f"The MCP request failed (status {status}).",
        error_type,
        code=_CODES.get(status, "mcp_error"),
    )


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
