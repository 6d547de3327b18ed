"""One long-lived connection pool per backend, and the call that opens an upstream request.

`Upstream.open()` returns the upstream's response with its head read and its body not yet
read, or raises an `ApiError` that is safe to send (nothing has reached the client yet). Only a
refused connection is retried — the request never reached the engine, so a retry cannot run a
generation twice.

Requests go straight to the pool's transport as `httpx.Request`s, not through
`httpx.AsyncClient.send`: the client's per-request URL merging, auth and redirect handling and
cookie extraction were ~11% of the gateway's CPU (issue 3), and a client cookie jar shared by
all users would replay one user's upstream cookies on everyone's requests. The transport can
be injected (`transport=`, e.g. `httpx.MockTransport`) for in-process tests without sockets.
The backend's dialect — paths, authentication, accepted fields — is its `Adapter`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.settings import BackendSettings, ModelAlias
from tiergate_gateway.upstream.adapters import Adapter, UpstreamApi
from tiergate_gateway.upstream.errors import error_from_status, error_from_transport
from tiergate_runtime.errors import BadGateway
from tiergate_runtime.http_transport import PooledTransport

__all__ = ["Upstream"]

_MAX_ERROR_BODY = 64 * 1024
_RETRY_WAIT_S = 0.05


class Upstream:
    """A backend's client: explicit timeouts and pool limits, opened and closed by the lifespan."""

    def __init__(
        self,
        name: str,
        settings: BackendSettings,
        metrics: GatewayMetrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        models: Sequence[ModelAlias] = (),
    ) -> None:
        """`models`: the configured model aliases (the adapter reads the turn rules of those
        on this backend; upstream/dialects.py)."""
        self.name = name
        self.settings = settings
        self.adapter = Adapter(name, settings, models)
        self._metrics = metrics
        self._injected = transport
        self._transport: httpx.AsyncBaseTransport | None = None
        self._urls = {api: self.adapter.url(api) for api in ("chat", "completions", "embeddings")}
        # identity: we relay raw bytes, and a compressed stream could not be re-framed.
        self._headers = {"content-type": "application/json", "accept-encoding": "identity"}
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.write_timeout_s,
            pool=settings.pool_timeout_s,
        )
        self._extensions = {"timeout": timeout.as_dict()}

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The connection pool; only between `start()` and `aclose()`."""
        if self._transport is None:
            raise RuntimeError(f"upstream {self.name} used outside the app's lifespan")
        return self._transport

    def start(self) -> None:
        """Open the connection pool (called from the app's lifespan)."""
        if self._injected is not None:
            self._transport = self._injected
            return
        limits = httpx.Limits(
            max_connections=self.settings.max_connections,
            max_keepalive_connections=self.settings.max_keepalive,
        )
        self._transport = PooledTransport(limits=limits, trust_env=False)

    async def open(
        self, api: UpstreamApi, body: bytes, headers: dict[str, str], *, stream: bool
    ) -> httpx.Response:
        """POST a request of `api`; return the open response or raise a safe ApiError.

        The response is returned only if it is a 2xx of the expected kind (an event stream
        when `stream`), so that nothing is committed to the client for an answer we cannot
        relay. `headers` are added to the client's own (request id, trace context).
        """
        request = httpx.Request(
            "POST",
            self._urls[api],
            content=body,
            headers=self._headers | self.adapter.auth() | headers,
            extensions=self._extensions,
        )
        try:
            response = await self._send(request)
        except httpx.HTTPError as exc:
            error, kind = error_from_transport(self.name, exc)
            self._metrics.upstream_error(self.name, kind)
            raise error from exc
        if 200 <= response.status_code < 300:
            content_type = response.headers.get("content-type", "")
            if not stream or content_type.startswith("text/event-stream"):
                return response
            await response.aclose()
            self._metrics.upstream_error(self.name, "protocol")
            raise BadGateway(
                f"The {self.name} backend answered a stream request with {content_type or 'no'}"
                " content type.",
                retry_after=1,
            )
        if response.status_code < 400:  # 1xx/3xx: httpx follows no redirects, nor do we
            await response.aclose()
            self._metrics.upstream_error(self.name, "protocol")
            raise BadGateway(
                f"The {self.name} backend answered with status {response.status_code}.",
                retry_after=1,
            )
        try:
            body_bytes = await _read_bounded(response, _MAX_ERROR_BODY)
        except httpx.HTTPError:
            body_bytes = b""
        finally:
            await response.aclose()
        self._metrics.upstream_error(self.name, "status")
        raise error_from_status(self.name, response.status_code, response.headers, body_bytes)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        # Only a refused connection is retried: the engine never saw the request. (A plain
        # loop, not tenacity: a retry object per request cost 4% of the hot path, issue 3.)
        retries = self.settings.connect_retries
        while True:
            try:
                return await self.transport.handle_async_request(request)
            except httpx.ConnectError:
                if retries == 0:
                    raise
                retries -= 1
                await asyncio.sleep(_RETRY_WAIT_S)

    async def aclose(self) -> None:
        """Close the pool."""
        if self._transport is not None:
            if self._injected is None:
                await self._transport.aclose()
            self._transport = None


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]
