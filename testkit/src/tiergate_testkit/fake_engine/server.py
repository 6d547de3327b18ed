"""HTTP/1.1 over raw asyncio sockets with h11, so handlers control every byte and close."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

import h11

__all__ = ["ClientGone", "Exchange", "Handler", "HttpServer"]

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024

Header = tuple[str, str]


class ClientGone(Exception):
    """The client closed (or reset) the connection while we were answering."""


class Exchange:
    """One request and its response on a connection.

    A handler either sends a whole response (`respond`), or streams one
    (`start`, `write`..., `end`), or cuts the connection (`drop`). While the
    handler runs the connection's reader is watched, so `client_gone` is set
    as soon as the client closes its socket, even if we are not writing.
    """

    def __init__(self, conn: _Connection, request: h11.Request, body: bytes) -> None:
        self._conn = conn
        self.connection_id = conn.id
        self.method = request.method.decode("ascii")
        target = request.target.decode("latin-1")
        self.path, _, self.query = target.partition("?")
        headers: dict[str, str] = {}
        for raw_name, raw_value in request.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        self.body = body
        self.headers_sent = False
        self.dropped = False

    @property
    def client_gone(self) -> asyncio.Event:
        return self._conn.gone

    async def respond(self, status: int, headers: Sequence[Header], body: bytes) -> None:
        """Send a complete response with a Content-Length."""
        await self.start(status, [*headers, ("Content-Length", str(len(body)))])
        if body:
            await self.write(body)
        await self.end()

    async def start(self, status: int, headers: Sequence[Header]) -> None:
        """Send the status line and headers; without Content-Length the body is chunked."""
        self.headers_sent = True
        await self._conn.send(h11.Response(status_code=status, headers=list(headers)))

    async def write(self, data: bytes) -> None:
        """Send body bytes (one chunk when chunked); raise ClientGone if the client left."""
        await self._conn.send(h11.Data(data=data))

    async def end(self) -> None:
        """Finish the body (the terminating chunk when chunked)."""
        await self._conn.send(h11.EndOfMessage())

    async def pause(self, seconds: float) -> None:
        """Sleep, but raise ClientGone as soon as the client goes away."""
        if self.client_gone.is_set():
            raise ClientGone
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self.client_gone.wait()
        except TimeoutError:
            return
        raise ClientGone

    async def wait_client_gone(self) -> None:
        """Wait (forever, if need be) until the client goes away."""
        await self.client_gone.wait()

    async def drop(self) -> None:
        """Close the connection now, mid-message: what was written is flushed, nothing more."""
        self.dropped = True
        await self._conn.close()


Handler = Callable[[Exchange], Awaitable[None]]


class _Connection:
    """One TCP connection: a loop of request/response cycles (keep-alive)."""

    def __init__(self, id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.id = id
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.SERVER)
        self.gone = asyncio.Event()
        # Bytes the watcher read past the current request (a pipelined next request).
        self._pending = b""
        self._eof = False

    async def serve(self, handler: Handler) -> None:
        while True:
            request = await self._read_request()
            if request is None:
                return
            exchange = Exchange(self, *request)
            watcher = asyncio.create_task(self._watch())
            try:
                await handler(exchange)
            except ClientGone:
                return
            except Exception:
                logger.exception("fake engine handler failed for %s", exchange.path)
                await self._fail(exchange)
                return
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if exchange.dropped or self._h11.our_state is not h11.DONE:
                return
            if self._h11.their_state is not h11.DONE:
                return
            self._h11.start_next_cycle()

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                await self._reject(exc.error_status_hint, str(exc))
                return None
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    await self._reject(413, "request body too large")
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None
            elif event is h11.NEED_DATA:
                if not await self._receive():
                    return None
            else:  # PAUSED cannot happen between cycles; treat it as the end.
                return None

    async def _receive(self) -> bool:
        if self._pending:
            data, self._pending = self._pending, b""
        elif self._eof:
            data = b""
        else:
            try:
                data = await self._reader.read(_READ_SIZE)
            except ConnectionError:
                return False
        self._h11.receive_data(data)  # b"" tells h11 the client closed
        return True

    async def _watch(self) -> None:
        # Runs while a handler answers: EOF here is the client going away, which
        # handlers must see promptly even while they sleep or stall.
        try:
            while data := await self._reader.read(_READ_SIZE):
                self._pending += data
        except ConnectionError:
            pass
        self._eof = True
        self.gone.set()

    async def send(self, event: h11.Event) -> None:
        if self.gone.is_set():
            raise ClientGone
        data = self._h11.send(event)
        if not data:
            return
        self._writer.write(data)
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise ClientGone from exc

    async def _reject(self, status: int, message: str) -> None:
        if self._h11.our_state is not h11.SEND_RESPONSE and self._h11.our_state is not h11.IDLE:
            return
        body = message.encode()
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        headers.append(("Connection", "close"))
        with contextlib.suppress(ClientGone, h11.LocalProtocolError):
            await self.send(h11.Response(status_code=status, headers=headers))
            await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())

    async def _fail(self, exchange: Exchange) -> None:
        if exchange.headers_sent:
            return  # mid-response: closing the connection is the only honest signal
        body = b'{"error":{"message":"fake engine internal error","type":"server_error"}}'
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        with contextlib.suppress(ClientGone, h11.LocalProtocolError):
            await self.send(h11.Response(status_code=500, headers=headers))
            await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())

    def abort(self) -> None:
        """Close the socket at once, discarding anything not yet sent."""
        self._writer.transport.abort()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class HttpServer:
    """Listens on host:port (0 = ephemeral) and runs `handler` for every request."""

    def __init__(self, handler: Handler, *, host: str, port: int) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_Connection] = set()
        self._ids = itertools.count(1)

    @property
    def port(self) -> int:
        """The bound port; only valid after `start`."""
        if self._server is None:
            raise RuntimeError("server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self._host, self._port)

    async def close(self) -> None:
        """Stop listening and cut every open connection (idle or mid-response)."""
        if self._server is None:
            return
        self._server.close()
        # Abort rather than cancel: each connection then winds down through the
        # same EOF path as a departing client. (Cancelling is not an option on
        # 3.11: start_server's done-callback calls task.exception(), which
        # raises CancelledError for a cancelled connection task.)
        for conn in list(self._connections):
            conn.abort()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._server.wait_closed()
        self._server = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Connection(next(self._ids), reader, writer)
        self._tasks.add(task)
        self._connections.add(conn)
        try:
            await conn.serve(self._handler)
        finally:
            self._connections.discard(conn)
            self._tasks.discard(task)
            await conn.close()
