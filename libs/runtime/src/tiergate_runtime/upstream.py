"""Calling an upstream on a client's behalf: failures mapped once, client departure noticed.

`transport_error` is the one mapping from an httpx failure (no answer at all) to the error we
send, used by the gateway and by the model services' proxies alike. `unless_client_leaves`
awaits upstream work but cancels it the moment the client disconnects, so an engine never
keeps generating an answer nobody will read (issue 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import httpx
from litestar import Request

from tiergate_runtime.errors import ApiError, BadGateway, GatewayTimeout, ServiceUnavailable

__all__ = [
    "TRANSPORT_ERRORS",
    "ClientGone",
    "TransportKind",
    "as_transport_error",
    "transport_error",
    "unless_client_leaves",
]

T = TypeVar("T")
TransportKind = Literal["connect", "timeout", "protocol"]


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


TRANSPORT_ERRORS = (httpx.HTTPError, AttributeError)
"""What a call through httpx raises when the upstream gave no answer. AttributeError: with
httpcore 1.0 over anyio, an upstream that dies while the connection is being set up leaves
anyio's socket without its raw socket, and `getpeername` on None escapes instead of a
ConnectError (seen when an engine was killed mid-request). `as_transport_error` maps it."""


def as_transport_error(exc: BaseException) -> httpx.HTTPError:
    """`exc` (one of TRANSPORT_ERRORS) as an httpx error: the connect race is a ConnectError."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    return httpx.ConnectError("the connection closed while it was being set up")


def transport_error(name: str, exc: httpx.HTTPError) -> tuple[ApiError, TransportKind]:
    """The error to send when `name` gave no answer, and its metric kind.

    refused/unreachable, connect timeout or pool exhausted → 503 + Retry-After; no answer in
    time → 504;
    connection dropped or garbage → 502 + Retry-After.
    """
    if isinstance(exc, httpx.ConnectError):
        return ServiceUnavailable(f"The {name} backend is not reachable.", retry_after=2), "connect"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        # aiohttp's pool reports "no free connection in time" and "TCP connect too slow" alike.
        message = f"The {name} backend did not accept a connection in time (down or at capacity)."
        return ServiceUnavailable(message, retry_after=1), "connect"
    if isinstance(exc, httpx.TimeoutException):
        return GatewayTimeout(f"The {name} backend did not answer in time."), "timeout"
    return (
        BadGateway(f"The {name} backend closed the connection without an answer.", retry_after=1),
        "protocol",
    )


async def _wait_disconnect(request: Request[Any, Any, Any]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_client_leaves(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """Await `work` (after the body was read); cancel it and raise ClientGone if the client goes.

    One watcher task per call, which cancels the awaiting task when the client disconnects
    (cheaper than racing two tasks: this runs on every non-streaming request, issue 3).
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _wait_disconnect(request)
        gone = True
        current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            current.uncancel()
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()
