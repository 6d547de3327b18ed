"""Serving an ASGI app in the test's own event loop, on a real socket with an ephemeral port.

In-process app tests use a real HTTP server (uvicorn) rather than a transport shim, so that
streaming, client disconnects and connection errors behave exactly as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

__all__ = ["serve_in_loop"]


@contextlib.asynccontextmanager
async def serve_in_loop(app: Any) -> AsyncIterator[str]:
    """Run `app` (lifespan included) until the block exits; yields its base URL."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says it is TCP. Without it uvicorn's separate writes of the head, the
    # body and the final chunk meet Nagle and the client's delayed ACK: ~40 ms per response
    # (production sockets get TCP_NODELAY; see tests/testkit/test_asgi.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
        proxy_headers=False,  # as in production (tiergate_runtime.server)
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
