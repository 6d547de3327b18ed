"""rag settings: where the index lives, the corpus to ingest, chunking, query bounds, secrets."""

from __future__ import annotations

from typing import Annotated

import msgspec

from tiergate_runtime.server import ServerSettings
from tiergate_runtime.settings import load_settings

__all__ = ["McpSettings", "RagSettings", "load"]

ENV_PREFIX = "TIERGATE_RAG_"


def _default_server() -> ServerSettings:
    return ServerSettings(port=8082)


class McpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The MCP endpoint (`/mcp/`) for agents."""

    enabled: bool = True
    allowed_hosts: list[str] = msgspec.field(
        default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    )
    """`Host` values accepted (`name:*` for any port); `["*"]` turns the check off. A
    deployment reached as `rag.internal:8082` adds that name."""
    allowed_origins: list[str] = msgspec.field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    )
    """Browser `Origin` values accepted (requests without one always are)."""


class RagSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the rag service reads from its config file and environment."""

    server: ServerSettings = msgspec.field(default_factory=_default_server)
    index_dir: str = "var/rag-index"
    corpus: list[str] = []
    """Files and directories (Markdown `.md`, text `.txt`) indexed at start when the index is
    empty, and by `POST /v1/reindex`."""
    chunk_size: Annotated[int, msgspec.Meta(ge=200, le=20_000)] = 1200
    chunk_overlap: Annotated[int, msgspec.Meta(ge=0, le=2_000)] = 150
    max_query_chars: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 2000
    languages: list[str] = msgspec.field(default_factory=lambda: ["en", "de", "fr"])
    """Languages told apart when a document does not declare its own."""
    admin_token: Annotated[str, msgspec.Meta(min_length=32, max_length=512)] | None = None
    """Bearer token for document changes and re-indexing; unset: those endpoints are off."""
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 8 * 1024 * 1024
    mcp: McpSettings = msgspec.field(default_factory=McpSettings)


def load() -> RagSettings:
    """Settings from the config file and environment."""
    return load_settings(RagSettings, env_prefix=ENV_PREFIX)
