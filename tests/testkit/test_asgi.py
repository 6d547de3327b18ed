"""`serve_in_loop`: the in-process server behaves like production on the wire."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from tiergate_testkit.asgi import serve_in_loop

Message = MutableMapping[str, Any]


async def hello(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def accepted_sockets(port: int) -> list[Any]:
    """The server's side of this loop's open connections to `port`.

    Read from the selector loop's own table of transports (private, but the only handle on the
    server's sockets; a scan of gc.get_objects() took 1.6 s under pytest)."""
    transports = getattr(asyncio.get_running_loop(), "_transports", {})
    found = []
    for transport in list(transports.values()):
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_INET:
            continue
        try:
            if sock.getsockname()[1] == port and sock.getpeername():
                found.append(sock)
        except OSError:  # the listening socket has no peer
            continue
    return found


async def test_connections_have_tcp_nodelay() -> None:
    # Without it, every response here waited ~40 ms for the client's delayed ACK (uvicorn
    # writes the head, the body and the last chunk separately); production runs uvloop, which
    # sets TCP_NODELAY on every TCP connection. Issue 10 (identity burst measurements).
    async with serve_in_loop(hello) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).text == "ok"  # the connection stays open (keep-alive)
        port = int(url.rsplit(":", 1)[1])
        sockets = accepted_sockets(port)
        assert sockets
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
