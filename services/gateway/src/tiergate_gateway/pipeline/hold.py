"""Holding a stream for a waking backend: `: waking` comments meanwhile, the head sent early.

A proxy in front of the gateway times out a connection that stays silent (llama-swap's users
got 504s when a wake took over a minute). So a held stream gets an SSE comment, `: waking`,
every `hold_keepalive_s` — legal in any SSE stream (chat chunks and Responses events alike;
clients skip comments) — and its response head (200, `text/event-stream`, the headers known
by then) goes out with the first one. A wake that ends within one interval sends nothing
early: the request goes on exactly as if it had not been held.

Once the head is out, a failure can no longer be a status: `StreamHead` drops the later
`http.response.start` of the attempt that answers, and the act stage ends the stream with
the endpoint's error event instead of raising (see `Act._held`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request
from litestar.types import HTTPResponseStartEvent, Message, Send

from tiergate_gateway.wake import WakeCoordinator
from tiergate_runtime.upstream import unless_client_leaves

__all__ = ["KEEPALIVE", "StreamHead", "hold_stream", "sse_start"]

KEEPALIVE = b": waking\n\n"
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx in front not to buffer the stream
)


def sse_start() -> HTTPResponseStartEvent:
    """The head of a stream (200, SSE headers)."""
    # A new message every time: the edge hook adds this response's own headers to it.
    return {"type": "http.response.start", "status": 200, "headers": list(_SSE_HEADERS)}


class StreamHead:
    """The client's `send` for a stream whose head may go out before its answer.

    `started`: the head went out. A second `http.response.start` (the answering attempt's,
    or the 499 of a client that left) is dropped: the client already has its head.
    """

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.started:
                return
            self.started = True
        await self.send(message)

    async def keepalive(self) -> None:
        """One `: waking` comment, after the head if it has not gone out yet."""
        if not self.started:
            await self(sse_start())
        await self.send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

    async def end(self, body: bytes = b"") -> None:
        """The last bytes of a stream whose head went out."""
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


async def hold_stream(
    request: Request[Any, Any, Any],
    wake: WakeCoordinator,
    backend: str,
    *,
    hold_s: float,
    interval_s: float,
    head: StreamHead,
) -> bool:
    """Wait up to `hold_s` for `backend`, a keep-alive every `interval_s`; whether it is ready.

    Raises ClientGone when the client leaves meanwhile (the wait ends at once: nothing of
    this request is left waiting; the wake itself goes on for the others).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_s
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return wake.ready(backend)
        if await unless_client_leaves(request, wake.wait_ready(backend, min(interval_s, left))):
            return True
        if loop.time() < deadline:
            await head.keepalive()
