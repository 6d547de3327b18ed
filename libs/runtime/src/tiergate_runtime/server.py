"""Serving an ASGI app: the shared `[server]` settings and the one function that runs a service.

Port 0 asks the kernel for a free port; with `port_file` set, the bound port is written there
(atomically) as soon as the socket listens, which is how tests and `make run` start services on
ephemeral ports without races.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import uvicorn

__all__ = ["ServerSettings", "bind_socket", "serve", "write_port_file"]


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how a service listens."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    port_file: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    graceful_shutdown_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 10.0
    backlog: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2048
    # Worker processes sharing the socket (services that support it; see workers.py).
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def write_port_file(path: str | Path, port: int) -> None:
    """Write `port` to `path` atomically (readers never see a partial file)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(target)


def serve(app: Any, settings: ServerSettings) -> None:
    """Run `app` in this process until SIGINT/SIGTERM, with uvloop and httptools; blocks."""
    sock = bind_socket(settings.host, settings.port, settings.backlog)
    if settings.port_file:
        write_port_file(settings.port_file, sock.getsockname()[1])
    run_on_socket(app, sock, settings)


def run_on_socket(app: Any, sock: socket.socket, settings: ServerSettings) -> None:
    """Serve `app` on an already listening socket until SIGINT/SIGTERM; blocks.

    uvicorn with uvloop and httptools: measured against granian for the gateway (issue 3),
    neither was faster within the noise, and uvicorn is the one the ecosystem runs.
    """
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
        backlog=settings.backlog,
        # uvicorn would rewrite the client address from X-Forwarded-For for any peer on
        # 127.0.0.1; services decide whom to believe themselves (tiergate_runtime.clientip).
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
