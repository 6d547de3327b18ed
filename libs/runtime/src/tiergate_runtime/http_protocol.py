"""uvicorn's httptools protocol, with slow clients bounded and the server's own errors as envelopes.

Issue 10, defects 4 and 5. uvicorn 0.54 closes no connection that sends a partial request head
or stalls its body, bounds neither header size nor count, and writes its own plain-text 400
(parse errors), 500 (the app raised before responding) and 503 (`limit_concurrency`). The
subclass here adds, per process:

- `head_timeout_s`: from the connection's start (or a keep-alive request's first byte) to the
  end of its head. A head begun and not finished gets a 408 envelope; a connection that sent
  nothing at all is closed without a word (a client's pre-opened connection is not an error).
- `body_timeout_s`: the longest the app waits in `receive()` without a body byte arriving; then
  a 408 envelope if no response started, and the connection is closed either way.
- `max_header_bytes` (request line and headers, raw bytes) and `max_headers`: past either, 431.
- `max_connections`: a connection past it gets a 503 envelope with `Retry-After` written at
  once and is closed; it never joins the others (server.py keeps the cap below the fd limit;
  `_refuse` says which refused ones linger).

Every answer written here is `{"error": {...}}` (tiergate_runtime.http_answers), JSON, with
`connection: close`. After writing one the connection half-closes and discards what the client
still sends for up to `_LINGER_S` (so a client mid-upload reads the answer instead of a reset),
then closes. The uvicorn internals overridden are copied from 0.54 (pinned in uv.lock); the
tests in tests/runtime/test_http_limits.py pin the behaviour on real sockets.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from asyncio import TimerHandle
from typing import Any

import httptools
import msgspec
import structlog
from uvicorn._types import ASGIReceiveEvent, HTTPRequestEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from tiergate_runtime.edge import request_record
from tiergate_runtime.errors import InvalidRequest
from tiergate_runtime.http_answers import (
    BODY_TIMEOUT,
    HEAD_TIMEOUT,
    HEADER_TOO_LARGE,
    INTERNAL_ERROR_BODY,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_HEADERS,
    parse_error,
    raw_error_response,
)
from tiergate_runtime.metrics import METRICS_ELSEWHERE

__all__ = ["HttpLimits", "LimitedHttpProtocol", "protocol_class"]

_log = structlog.get_logger("tiergate.http")

# How long a connection we answered with an error may keep sending before we close it.
_LINGER_S = 2.0
_REFUSAL_LINGER_S = 1.0


class HttpLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The limits one listener enforces; see the module docstring for what each one does."""

    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_connections: int = 10000
    # Refused connections left to linger at once (the rest are closed at once; see _refuse).
    refusals_lingering: int = 512
    # True on a public listener whose /metrics is served on an internal port (see metrics.py).
    metrics_elsewhere: bool = False


class _Refusals:
    """Connections refused at the cap, logged at most once per `_REFUSAL_LOG_S` with a count."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = float("-inf")
        self.lingering = 0  # refused connections not yet closed

    def note(self, now: float, cap: int) -> None:
        self.count += 1
        if now - self.logged_at >= _REFUSAL_LOG_S:
            _log.warning("connections_refused", refused=self.count, max_connections=cap)
            self.count = 0
            self.logged_at = now


_REFUSAL_LOG_S = 10.0
_refusals = _Refusals()


class _HeadRejected(Exception):
    """Raised from a parser callback to stop parsing; `response` is what to answer."""

    def __init__(self, response: bytes) -> None:
        super().__init__()
        self.response = response


class LimitedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection; `protocol_class(limits)` makes the subclass uvicorn is given."""

    limits: HttpLimits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.limits
        self._head_timeout_s = limits.head_timeout_s
        self._body_timeout_s = limits.body_timeout_s
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        if limits.metrics_elsewhere:
            self.app_state = {**self.app_state, METRICS_ELSEWHERE: True}
        self._head_timer: TimerHandle | None = None
        self._in_head = True  # the bytes that come next belong to a request head
        self._head_begun = False  # ... and at least one of them has arrived
        self._head_bytes = 0
        self._header_count = 0
        self._heads_done = 0
        self._answered = False  # we wrote an error; discard input until closed
        self._lingering_refusal = False

    # Connection life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 at once; it never joins the connections the cap counts.

        It lingers (half-closed, input discarded, at most `_REFUSAL_LINGER_S`) so the client
        reads the 503 rather than a reset when its request arrives after our close; but only
        up to `limits.refusals_lingering` at once: a flood past the cap must not pile up
        file descriptors, so beyond that a refused connection is closed at once.
        """
        self.transport = transport
        self._answered = True
        transport.write(TOO_MANY_CONNECTIONS)
        if _refusals.lingering < self.limits.refusals_lingering and transport.can_write_eof():
            _refusals.lingering += 1
            self._lingering_refusal = True
            transport.write_eof()
            self.timeout_keep_alive_task = self.loop.call_later(_REFUSAL_LINGER_S, transport.close)
        else:
            transport.close()
        _refusals.note(self.loop.time(), self.limits.max_connections)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lingering_refusal:
            self._lingering_refusal = False
            _refusals.lingering -= 1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _answer_and_close(self, response: bytes) -> None:
        """Write `response`, half-close, discard input for at most `_LINGER_S`, close.

        A response already going out is never interrupted by ours: that connection is just
        closed. An app still waiting on this request is told the client left (its receive()
        answers http.disconnect), and the request is logged with our answer — not with the
        500 the app may then render for nobody, which must not count as a server failure.
        """
        transport = self.transport
        if self._answered or transport.is_closing():
            return
        self._answered = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._unset_keepalive_if_required()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                transport.close()
                return
            if not cycle.disconnected:
                status = int(response[9:12])  # "HTTP/1.1 408 ..."
                record = request_record(cycle.scope)
                record.status = status
                record.finish(outcome="client_timeout" if status == 408 else None)
                cycle.disconnected = True
                cycle.message_event.set()
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        self.flow.resume_reading()
        self.timeout_keep_alive_task = self.loop.call_later(_LINGER_S, transport.close)

    def shutdown(self) -> None:
        # Server shutdown: a connection we already answered has nothing left to finish.
        if self._answered:
            self.transport.close()
        else:
            super().shutdown()

    def eof_received(self) -> None:
        # The peer finished sending: after an error answer there is nothing left to wait for.
        if self._answered:
            self.transport.close()

    # Reading

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        try:
            if self._in_head:
                if len(data) > self._max_header_bytes - self._head_bytes:
                    self._feed_big_head(data)
                else:  # the usual case: the whole head (and perhaps a body) fits
                    self._head_bytes += len(data)
                    self.parser.feed_data(data)
            else:
                self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._unparseable(exc)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        # A head this left open gets its deadline now (a keep-alive request's; the first one
        # has had its own since connection_made). Heads that arrive whole, the usual case,
        # never arm a timer.
        if self._head_begun and self._head_timer is None and not self._answered:
            self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _unparseable(self, exc: httptools.HttpParserError) -> None:
        cause = exc.__context__
        if isinstance(cause, _HeadRejected):  # raised by a callback of ours
            self._answer_and_close(cause.response)
            return
        # debug: a client's garbage, one line each, would let anyone flood the log.
        _log.debug("http_parse_error", error=str(exc))
        self._answer_and_close(parse_error(exc))

    def _feed_big_head(self, data: bytes) -> None:
        """Feed `data`, more than the open head may still take: never over-buffer one head."""
        view = memoryview(data)
        while view:
            if not self._in_head:
                self.parser.feed_data(view)
                return
            allowance = max(self._max_header_bytes - self._head_bytes, 0)
            if len(view) <= allowance:
                self._head_bytes += len(view)
                self.parser.feed_data(view)
                return
            heads_done = self._heads_done
            self.parser.feed_data(view[:allowance])
            view = view[allowance:]
            if self._answered:
                return
            if self._in_head:
                if self._heads_done == heads_done:  # one head, open all along: too large
                    self._answer_and_close(HEADER_TOO_LARGE)
                    return
                # A pipelined head began inside that slice, at an unknown offset: count it
                # from here (it can reach at most twice the limit this way).
                self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own callers of this (none left after `data_received` above) get ours.
        self._answer_and_close(raw_error_response(InvalidRequest(msg, code="invalid_http_request")))

    def on_message_begin(self) -> None:
        # uvicorn 0.54's, inlined (once per request), plus `_head_begun`.
        self._head_begun = True
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._max_headers:
            raise _HeadRejected(TOO_MANY_HEADERS)
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_begun = False
        self._heads_done += 1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        # uvicorn 0.54's on_headers_complete, with our request cycle and without
        # `limit_concurrency` (never configured: `max_connections` replaces it).
        parser = self.parser
        http_version = parser.get_http_version()
        self.scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            self.scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        self.scope["path"] = self.root_path + path
        self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        self.scope["query_string"] = parsed_url.query or b""

        existing_cycle = self.cycle
        self.cycle = _LimitedCycle(
            scope=self.scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        self.cycle.protocol = self
        if existing_cycle is None or existing_cycle.response_complete:
            self._start_asgi_task(self.cycle, self.app)
        else:
            # Pipelined HTTP requests need to be queued up.
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        # uvicorn 0.54's, inlined.
        if (
            self.parser.should_upgrade() and self._should_upgrade()
        ) or self.cycle.response_complete:
            return
        self.cycle.more_body = False
        self.cycle.message_event.set()

    # Timers

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._answered or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head stalled behind a response still going out: finish that one,
            # then close, rather than cut it or write into its middle.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        if self._head_begun:
            self._answer_and_close(HEAD_TIMEOUT)
        else:  # nothing sent at all: not a request, just an idle connection
            self.transport.close()

    def body_stalled(self, cycle: _LimitedCycle) -> None:
        """The app waited `body_timeout_s` for body bytes that did not come: 408, close."""
        if cycle is self.cycle and not cycle.response_complete and not cycle.disconnected:
            self._answer_and_close(BODY_TIMEOUT)


class _LimitedCycle(RequestResponseCycle):
    """One request/response: a stalled body times out; uvicorn's own 500 is our envelope."""

    protocol: LimitedHttpProtocol

    async def receive(self) -> ASGIReceiveEvent:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False

        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            event = self.message_event
            if not event.is_set():
                if self.more_body:
                    protocol = self.protocol
                    timer = protocol.loop.call_later(
                        protocol._body_timeout_s, protocol.body_stalled, self
                    )
                    try:
                        await event.wait()
                    finally:
                        timer.cancel()
                else:
                    # The body is complete: a wait here is the app listening for a disconnect
                    # (streams do, for minutes), never a stall.
                    await event.wait()
            event.clear()

        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        message: HTTPRequestEvent = {
            "type": "http.request",
            "body": bytes(self.body),
            "more_body": self.more_body,
        }
        self.body = bytearray()
        return message

    async def send_500_response(self) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(INTERNAL_ERROR_BODY)).encode("ascii")),
                    (b"connection", b"close"),
                ],
            }
        )
        await self.send(
            {"type": "http.response.body", "body": INTERNAL_ERROR_BODY, "more_body": False}
        )


def protocol_class(limits: HttpLimits) -> type[LimitedHttpProtocol]:
    """The protocol class to pass as uvicorn's `http=`, enforcing `limits`."""
    return type("ConfiguredHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})
