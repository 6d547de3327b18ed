"""The embedding engine's routes: `POST /v1/embeddings` relayed, `/readyz/embeddings`.

The body is checked first (`embeddings.check_request`; limits from the running engine's
`/v1/models` metadata), even while the engine is not serving: a client's mistake is a 400,
never a 503 to retry. Then it goes to the embedding engine and the answer comes back whole
(embeddings are not streamed); an engine error becomes our envelope
(`embeddings.engine_error`). A client that leaves before the answer cancels the engine call.
While the engine is not serving (starting, restarting, hung) both routes answer 503 with
Retry-After; with `embedding.enabled` false, 404.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post, route
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler

from tiergate_cpu_llm.embeddings import check_request, engine_error, limits_from_models
from tiergate_cpu_llm.engine import Engine
from tiergate_cpu_llm.settings import EmbeddingSettings
from tiergate_runtime.edge import REQUEST_ID_HEADER, request_record
from tiergate_runtime.errors import NotFound, ServiceUnavailable
from tiergate_runtime.health import OK_BODY
from tiergate_runtime.proxy import ReverseProxy
from tiergate_runtime.upstream import (
    TRANSPORT_ERRORS,
    ClientGone,
    as_transport_error,
    transport_error,
    unless_client_leaves,
)

__all__ = ["embedding_routes"]

_JSON = "application/json"
_DISABLED = "This service does not serve embeddings (embedding.enabled is false)."
_STARTING = "The embedding engine is starting."


def embedding_routes(
    embedder: Engine | None, settings: EmbeddingSettings, proxy: ReverseProxy
) -> list[HTTPRouteHandler]:
    """The route handlers; `proxy` lends its pooled client (set by the app's lifespan)."""

    @post("/v1/embeddings", include_in_schema=False, status_code=200)
    async def embeddings(request: Request[Any, Any, State]) -> Response[bytes]:
        if embedder is None:
            raise NotFound(_DISABLED, code="unsupported_endpoint")
        body = await request.body()
        # The client's mistakes first: a bad request is a 400 even while the engine starts
        # (then only the limits that need the engine's metadata are not checked yet).
        limits = limits_from_models(
            embedder.models,
            model_id=settings.model_id,
            max_inputs=settings.max_inputs,
            batch_size=settings.batch_size,
        )
        check_request(body, limits)
        base_url = embedder.base_url
        if not embedder.serving or base_url is None:
            raise ServiceUnavailable(_STARTING, retry_after=2)
        record = request_record(request.scope)
        headers = {"content-type": _JSON, REQUEST_ID_HEADER: record.request_id}
        call = proxy.client.post(f"{base_url}/v1/embeddings", content=body, headers=headers)
        try:
            answer = await unless_client_leaves(request, call)
        except ClientGone:
            record.outcome = "client_disconnected"
            return Response(b"", status_code=499)  # nobody reads it; the log says what happened
        except TRANSPORT_ERRORS as exc:  # the connect race included (see there)
            error, _ = transport_error("cpu-llm embedding", as_transport_error(exc))
            raise error from exc
        if answer.status_code != 200:
            raise engine_error(answer.status_code, answer.content, limits)
        return Response(answer.content, media_type=_JSON)

    @route(
        "/readyz/embeddings",
        http_method=["GET", "HEAD"],
        sync_to_thread=False,
        include_in_schema=False,
    )
    def embeddings_ready() -> Response[bytes]:
        """`{"status":"ok"}` while the embedding engine is ready, else a 503 envelope."""
        if embedder is None:
            raise NotFound(_DISABLED, code="unsupported_endpoint")
        if not embedder.ready:
            raise ServiceUnavailable(_STARTING, retry_after=2, code="not_ready")
        return Response(OK_BODY, media_type=_JSON)

    return [embeddings, embeddings_ready]
