"""A transparent reverse proxy to an engine's HTTP API, streaming the answer through unbuffered.

Used by the model services (cpu-llm, later gpu-llm) to expose their engine's `/v1` API on their
own port. Bodies are relayed byte for byte; only hop-by-hop headers are dropped. Paths with
dot segments or encoded slashes are refused, so a request routed as `/v1/...` cannot reach
another engine endpoint. When the client goes away — while the engine is still thinking, or
mid-stream — the upstream request is closed at once, so the engine stops generating. Failures
to reach the engine become envelopes (see `tiergate_runtime.upstream.transport_error`); a
failure mid-stream aborts the client connection, the only honest signal left once the status
line went out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import structlog
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Stream

from tiergate_runtime.edge import REQUEST_ID_HEADER, AccessRecord, request_record
from tiergate_runtime.errors import NotFound
from tiergate_runtime.upstream import (
    TRANSPORT_ERRORS,
    ClientGone,
    as_transport_error,
    transport_error,
    unless_client_leaves,
)

__all__ = ["HOP_BY_HOP", "ReverseProxy", "UpstreamBrokeOff", "safe_path"]

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
        REQUEST_ID_HEADER,  # replaced by ours, which is validated
    }
)
_UNSAFE_RAW = (b"%2f", b"%5c", b"%2e", b"\\")
_log = structlog.get_logger("tiergate.proxy")


class UpstreamBrokeOff(Exception):
    """The engine failed after the response started; the client connection is aborted."""


def safe_path(path: str, raw_path: bytes) -> bool:
    """False for paths that could escape the route they matched (dot segments, encoded `/`)."""
    if any(segment in {".", ".."} for segment in path.split("/")):
        return False
    lowered = raw_path.lower()
    return not any(marker in lowered for marker in _UNSAFE_RAW) and "//" not in path


class ReverseProxy:
    """Forwards a Litestar request to `base_url` + the same path and streams the answer back."""

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        name: str,
        *,
        drop_response_headers: Iterable[str] = (),
        drop_request_headers: Iterable[str] = (),
    ) -> None:
        """`drop_response_headers`: upstream headers not relayed (ones we set ourselves);
        `drop_request_headers`: the client's headers not forwarded (ones this edge already
        acted on)."""
        self._client = client
        self.name = name
        self._drop = HOP_BY_HOP | {"content-type"} | {h.lower() for h in drop_response_headers}
        self._drop_request = frozenset(h.lower() for h in drop_request_headers)

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client, set by the owning app's lifespan."""
        if self._client is None:
            raise RuntimeError(f"proxy to {self.name} used outside the app's lifespan")
        return self._client

    @client.setter
    def client(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def forward(
        self,
        request: Request[Any, Any, Any],
        base_url: str,
        *,
        client_ip: str | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> Response[Any]:
        """Relay `request` to the upstream; raise an ApiError if the upstream cannot answer.

        With `client_ip`, `X-Forwarded-For` is replaced by it: the upstream learns the client
        address we resolved, not a chain the client could have written. `on_finish` is called
        once when the exchange is over — answer relayed, failed, or the client gone.
        """
        try:
            response = await self._forward(request, base_url, client_ip, on_finish)
        except BaseException:
            if on_finish is not None:
                on_finish()
            raise
        return response

    async def _forward(
        self,
        request: Request[Any, Any, Any],
        base_url: str,
        client_ip: str | None,
        on_finish: Callable[[], None] | None,
    ) -> Response[Any]:
        path = request.url.path
        if not safe_path(path, request.scope.get("raw_path") or path.encode()):
            raise NotFound(f"Unknown path: {request.method} {path[:200]}", code="unknown_url")
        record = request_record(request.scope)
        drop = HOP_BY_HOP | self._drop_request
        if client_ip is not None:
            drop |= {"x-forwarded-for"}
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in drop]
        headers.append((REQUEST_ID_HEADER, record.request_id))
        if client_ip is not None:
            headers.append(("x-forwarded-for", client_ip))
        body = await request.body()
        upstream = self.client.build_request(
            request.method,
            base_url + path,
            params=request.url.query,
            headers=headers,
            content=body,
        )
        try:
            response = await unless_client_leaves(request, self.client.send(upstream, stream=True))
        except ClientGone:
            record.outcome = "client_disconnected"
            if on_finish is not None:
                on_finish()
            return Response(b"", status_code=499)  # nobody reads it; the log says what happened
        except TRANSPORT_ERRORS as exc:
            error, _ = transport_error(self.name, as_transport_error(exc))
            raise error from exc
        out_headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in self._drop and k.lower() != "set-cookie"
        }
        return Stream(
            _relay(response, record, self.name, on_finish),
            status_code=response.status_code,
            headers=out_headers,
            cookies=_cookies(response.headers.get_list("set-cookie")),
            media_type=response.headers.get("content-type"),
        )


class _RelayedCookie(Cookie):
    """An upstream `Set-Cookie` line, sent on exactly as it came (a proxy does not rewrite
    cookies: attributes `http.cookies` does not know, such as CHIPS' `Partitioned`, survive).
    Key, path and domain are parsed only for Litestar's bookkeeping (cookie identity)."""

    def __init__(self, line: str) -> None:
        name, _, rest = line.partition("=")
        attributes = {}
        for part in rest.split(";")[1:]:
            attr, _, value = part.partition("=")
            attributes[attr.strip().lower()] = value.strip()
        super().__init__(
            key=name.strip(),
            path=attributes.get("path") or "/",
            domain=attributes.get("domain") or None,
        )
        self.line = line

    def to_header(self, **kwargs: Any) -> str:
        header = kwargs.get("header", "Set-Cookie:")
        return f"{header} {self.line}".strip()

    def to_encoded_header(self) -> tuple[bytes, bytes]:
        return b"set-cookie", self.line.encode("latin-1")


def _cookies(set_cookie: list[str]) -> list[Cookie]:
    """Upstream `Set-Cookie` lines, each relayed verbatim (a response keeps headers in a dict,
    which would fold several `Set-Cookie` lines into one broken value). A line without a
    cookie name, or with a character a header cannot carry, is dropped rather than mangled."""
    cookies: list[Cookie] = []
    for line in set_cookie:
        name = line.partition("=")[0].strip()
        if not name or "=" not in line or any(c in line for c in "\r\n\0"):
            continue
        try:
            line.encode("latin-1")
        except UnicodeEncodeError:
            continue
        cookies.append(_RelayedCookie(line.strip()))
    return cookies


async def _relay(
    response: httpx.Response,
    record: AccessRecord,
    name: str,
    on_finish: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    finished = False
    try:
        async for chunk in response.aiter_raw():
            yield chunk
        finished = True
    except httpx.HTTPError as exc:
        record.outcome = "upstream_error"
        _log.warning("upstream_broke_off", upstream=name, error=type(exc).__name__)
        raise UpstreamBrokeOff(f"{name} failed mid-response") from exc
    finally:
        # Runs on normal end, on upstream error and when the client disconnects (the
        # framework cancels the stream): closing the response closes the engine's socket.
        await asyncio.shield(response.aclose())
        if not finished and record.outcome == "ok":
            record.outcome = "client_disconnected"
        if not finished:
            record.finish()  # no last body message will go out to let the edge do it
        if on_finish is not None:
            on_finish()
