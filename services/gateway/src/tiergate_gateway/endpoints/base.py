"""What an endpoint tells the pipeline: how to read its request and shape its answer.

Everything else — identity, policy, plan, limits, decide, wake, grounding, fallbacks,
metrics, spans, the access log — is the pipeline's and the same for every endpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from litestar import Request

from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.metrics import ApiLabel
from tiergate_gateway.pipeline.exchange import Exchange, Parsed, StreamRelay
from tiergate_gateway.settings import ApiName
from tiergate_gateway.upstream.adapters import UpstreamApi

__all__ = ["Endpoint"]


class Endpoint(ABC):
    """One public API on the pipeline."""

    path: str
    """Where it is mounted (`/v1/chat/completions`)."""
    api: ApiName
    """What the model must serve (a model's `endpoints`)."""
    public_api: ApiLabel
    """The API as clients see it: the `api` label of `api_requests_total`."""
    upstream: UpstreamApi
    """The API called on the engine."""
    span_name: str

    @abstractmethod
    async def read(
        self, request: Request[Any, Any, Any], limit: int, principal: Principal
    ) -> Parsed:
        """Read and validate the body: a Parsed, or InvalidRequest (400), 413, 415, 404.

        Reads only (a Responses request loads its conversation here); no side effects.
        """

    @abstractmethod
    async def answer(
        self, exchange: Exchange, content: bytes, alias: str, keep_extras: frozenset[str]
    ) -> tuple[bytes, tuple[int, int] | None]:
        """A whole upstream answer made the client's, and its (prompt, completion) tokens.

        Raises msgspec.DecodeError when `content` is not an answer of the upstream API.
        """

    @abstractmethod
    def relay(self, exchange: Exchange, alias: str, keep_extras: frozenset[str]) -> StreamRelay:
        """The transformer of one streamed answer."""

    async def end_stream(self, exchange: Exchange, relay: StreamRelay) -> bytes:
        """Bytes sent after a stream that ended well (the Responses API stores, then says
        `response.completed`); none by default."""
        del exchange, relay
        return b""
