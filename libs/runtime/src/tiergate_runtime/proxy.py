"""A transparent reverse proxy to an engine's HTTP API, streaming the answer through unbuffered.

Used by the model services (cpu-llm, later gpu-llm) to expose their engine's `/v1` API on their
own port. Bodies are relayed byte for byte; only hop-by-hop headers are dropped. When the
client goes away mid-stream the upstream response is closed at once, so the engine sees the
connection close and stops generating. Failures to reach the engine become envelopes:
refused → 503 with Retry-After, timeout → 504, broken answer → 502.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from litestar import Request, Response
from litestar.response import Stream

from tiergate_runtime.edge import REQUEST_ID_HEADER, request_record
from tiergate_runtime.errors import BadGateway, GatewayTimeout, ServiceUnavailable

__all__ = ["HOP_BY_HOP", "ReverseProxy"]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class ReverseProxy:
    """Forwards a Litestar request to `base_url` + the same path and streams the answer back."""

    def __init__(self, client: httpx.AsyncClient, name: str) -> None:
        self.client = client
        self.name = name

    async def forward(self, request: Request[Any, Any, Any], base_url: str) -> Response[Any]:
        """Relay `request` to the upstream; raise an ApiError if the upstream cannot answer."""
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append((REQUEST_ID_HEADER, request_record(request.scope).request_id))
        body = await request.body()
        upstream = self.client.build_request(
            request.method,
            base_url + request.url.path,
            params=request.url.query,
            headers=headers,
            content=body,
        )
        try:
            response = await self.client.send(upstream, stream=True)
        except httpx.ConnectError as exc:
            raise ServiceUnavailable(f"The {self.name} engine is not reachable.") from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(f"The {self.name} engine did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise BadGateway(f"The {self.name} engine failed to answer.") from exc
        out_headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-type"
        }
        return Stream(
            _relay(response),
            status_code=response.status_code,
            headers=out_headers,
            media_type=response.headers.get("content-type"),
        )


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        # Runs on normal end, on upstream error and when the client disconnects (the
        # framework cancels the stream): closing the response closes the engine's socket.
        await response.aclose()
