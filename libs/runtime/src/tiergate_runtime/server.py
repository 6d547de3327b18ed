"""Serving an ASGI app: the shared `[server]` settings and the one function that runs a service.

Port 0 asks the kernel for a free port; with `port_file` set, the bound port is written there
(atomically) as soon as the socket listens, which is how tests and `make run` start services on
ephemeral ports without races. The same holds for `metrics_port` and `metrics_port_file`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import structlog
import uvicorn
from uvicorn.server import ServerState

from tiergate_runtime.http_protocol import HttpLimits, protocol_class
from tiergate_runtime.metrics import METRICS_APP_KEY, ASGIApp

__all__ = [
    "ServerSettings",
    "bind_metrics_socket",
    "bind_socket",
    "effective_max_connections",
    "make_server",
    "run_on_socket",
    "serve",
    "write_port_file",
]


_log = structlog.get_logger("tiergate.http")


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how a service listens, and the limits every connection is held to.

    The limits (issue 10) hold per process; each answer they cause is an OpenAI error envelope
    with `connection: close` (see tiergate_runtime.http_protocol):

    - `head_timeout_s` (10): the request line and headers must arrive within this, counted
      from the connection's start (or a keep-alive request's first byte); else 408, or a
      silent close if nothing at all was sent.
    - `body_timeout_s` (30): the longest the service waits for the next body bytes; else 408
      (the connection is closed; no answer if a response had already started).
    - `max_header_bytes` (32 KiB) and `max_headers` (100): request line plus headers, raw
      bytes, and the header count; past either, 431.
    - `max_connections` (10,000): open connections per process; one past it gets a 503 with
      `Retry-After: 1` at once and is closed. Lowered at start if it does not fit the file
      descriptor limit (RLIMIT_NOFILE, raised towards its hard limit first) minus `fd_reserve`
      (1024: upstream connections, files, logs).
    - `metrics_port` (unset): serve `/metrics` on `metrics_host:metrics_port` (0: any free
      port, written to `metrics_port_file`) instead of the public port, which then answers
      `/metrics` with a 404. With `workers > 1` one worker serves it, with every worker's sum.
    """

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    port_file: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    graceful_shutdown_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 10.0
    backlog: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2048
    # Worker processes sharing the socket (services that support it; see workers.py).
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    head_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    body_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1048576)] = 32768
    max_headers: Annotated[int, msgspec.Meta(ge=8, le=10000)] = 100
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=1000000)] = 10000
    fd_reserve: Annotated[int, msgspec.Meta(ge=0, le=1000000)] = 1024
    metrics_host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    metrics_port_file: str | None = None


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted sockets only then (uvloop does
    # anyway); without it every small answer waits ~40 ms for the delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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


def bind_metrics_socket(settings: ServerSettings) -> socket.socket | None:
    """The internal metrics socket, if `metrics_port` is set (its port file written)."""
    if settings.metrics_port is None:
        return None
    sock = bind_socket(settings.metrics_host, settings.metrics_port, 128)
    if settings.metrics_port_file:
        write_port_file(settings.metrics_port_file, sock.getsockname()[1])
    return sock


def serve(app: Any, settings: ServerSettings) -> None:
    """Run `app` in this process until SIGINT/SIGTERM, with uvloop and httptools; blocks."""
    sock = bind_socket(settings.host, settings.port, settings.backlog)
    try:
        metrics_sock = bind_metrics_socket(settings)
    except OSError:
        sock.close()
        raise
    if settings.port_file:
        write_port_file(settings.port_file, sock.getsockname()[1])
    run_on_socket(app, sock, settings, metrics_sock)


def run_on_socket(
    app: Any,
    sock: socket.socket,
    settings: ServerSettings,
    metrics_sock: socket.socket | None = None,
) -> None:
    """Serve `app` on an already listening socket until SIGINT/SIGTERM; blocks.

    With `metrics_sock`, the app's metrics are served there too (see `ServerSettings`).
    """
    make_server(app, settings, metrics_sock=metrics_sock).run(sockets=[sock])


def make_server(
    app: Any, settings: ServerSettings, *, metrics_sock: socket.socket | None = None
) -> uvicorn.Server:
    """The uvicorn server for `app` under `settings`; `run(sockets=[...])` or `serve(...)` it.

    uvicorn with uvloop and httptools: measured against granian for the gateway (issue 3),
    neither was faster within the noise, and uvicorn is the one the ecosystem runs. Issue 10
    measured again with the limits of `LimitedHttpProtocol` (bench/results/http-server-choice.md).
    """
    limits = HttpLimits(
        head_timeout_s=settings.head_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        max_connections=effective_max_connections(settings.max_connections, settings.fd_reserve),
        # Half the reserve may hold refused connections for a moment (see http_protocol).
        refusals_lingering=settings.fd_reserve // 2,
        metrics_elsewhere=settings.metrics_port is not None,
    )
    config = _config(app, settings, limits)
    metrics = None
    if metrics_sock is not None:
        metrics_app = _metrics_app(app)
        metrics_limits = msgspec.structs.replace(
            limits, max_connections=64, metrics_elsewhere=False
        )
        metrics = (metrics_sock, _config(metrics_app, settings, metrics_limits, lifespan="off"))
    return _Server(config, metrics)


def _config(
    app: Any, settings: ServerSettings, limits: HttpLimits, *, lifespan: str = "on"
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol_class(limits),
        lifespan=lifespan,  # type: ignore[arg-type]
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


def _metrics_app(app: Any) -> ASGIApp:
    state = getattr(app, "state", None)
    metrics_app: ASGIApp | None = state.get(METRICS_APP_KEY) if state is not None else None
    if metrics_app is None:
        raise TypeError("metrics_port is set but this app has no metrics app (service_app)")
    return metrics_app


class _Server(uvicorn.Server):
    """uvicorn's server, plus the internal metrics listener in the same event loop."""

    def __init__(
        self, config: uvicorn.Config, metrics: tuple[socket.socket, uvicorn.Config] | None
    ) -> None:
        super().__init__(config)
        self._metrics = metrics
        self._metrics_state = ServerState()
        self._metrics_server: asyncio.base_events.Server | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._metrics is None or self.should_exit:
            return
        sock, config = self._metrics
        config.load()
        protocol: Any = config.http_protocol_class  # ours: LimitedHttpProtocol's signature
        factory = functools.partial(
            protocol,
            config=config,
            server_state=self._metrics_state,
            app_state={},
        )
        loop = asyncio.get_running_loop()
        self._metrics_server = await loop.create_server(factory, sock=sock, backlog=128)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
            for connection in list(self._metrics_state.connections):
                connection.shutdown()
        await super().shutdown(sockets)
        if self._metrics is not None:
            self._metrics[0].close()


def effective_max_connections(requested: int, fd_reserve: int) -> int:
    """`requested`, lowered if needed so connections never exhaust file descriptors.

    Raises the soft RLIMIT_NOFILE towards the hard one if `requested + fd_reserve` needs it;
    if the hard limit is still too low, returns what fits (soft limit minus `fd_reserve`, at
    least half the soft limit) and logs `max_connections_lowered`.
    """
    needed = requested + fd_reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return requested
    allowed = max(soft - fd_reserve, soft // 2, 1)
    _log.warning(
        "max_connections_lowered",
        requested=requested,
        allowed=allowed,
        rlimit_nofile=soft,
        fd_reserve=fd_reserve,
    )
    return allowed
