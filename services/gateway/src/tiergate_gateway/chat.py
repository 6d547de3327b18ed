"""`POST /v1/chat/completions`: resolve the public model, call its backend, relay the answer.

Streaming answers are relayed event by event as they arrive (see `upstream/sse.py`). Nothing is
retried or re-routed once the first byte went to the client; a failure after that point ends
the stream with an error event. When the client goes away the upstream request is closed at
once — mid-stream, and also while a non-streaming answer is still being generated — so the
engine stops spending compute on it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import msgspec
import structlog
from litestar import Request
from litestar.exceptions import MethodNotAllowedException
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send
from opentelemetry.trace import Tracer

from tiergate_gateway.catalog import Catalog, Route
from tiergate_gateway.chat_request import parse_chat_request
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.tracing import ChatSpan
from tiergate_gateway.upstream.client import Upstream
from tiergate_gateway.upstream.sse import (
    MAX_PENDING_BYTES,
    SseOverflow,
    SseTransformer,
    error_event,
    model_field,
    rewrite_model,
)
from tiergate_proto.openai import Usage
from tiergate_runtime.edge import REQUEST_ID_HEADER, AccessRecord, request_record
from tiergate_runtime.errors import ApiError, BadGateway, GatewayTimeout, NotFound
from tiergate_runtime.upstream import ClientGone, unless_client_leaves

__all__ = ["ChatService"]

_log = structlog.get_logger("tiergate.gateway.chat")
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx in front not to buffer the stream
)


def _sse_start() -> HTTPResponseStartEvent:
    # A new message every time: the edge hook adds this response's own headers to it.
    return {"type": "http.response.start", "status": 200, "headers": list(_SSE_HEADERS)}


class _UsageOnly(msgspec.Struct):
    usage: Usage | None = None


_usage_decoder = msgspec.json.Decoder(_UsageOnly)


class ChatService:
    """Everything `POST /v1/chat/completions` needs, built once in `create_app`."""

    def __init__(
        self,
        catalog: Catalog,
        upstreams: dict[str, Upstream],
        metrics: GatewayMetrics,
        max_body_bytes: int,
        tracer: Tracer | None = None,
    ) -> None:
        self.tracer = tracer
        self.catalog = catalog
        self.upstreams = upstreams
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI handler of `POST /v1/chat/completions`: validate, route and relay.

        A raw ASGI route rather than a Litestar handler: the framework's per-request argument
        resolution and response objects were ~14% of the gateway's CPU (issue 3). Errors
        raised before the response starts still go through the app's exception handlers.
        """
        if scope.get("method") != "POST":
            raise MethodNotAllowedException(headers={"Allow": "POST"})
        request: Request[Any, Any, Any] = Request(scope, receive)
        record = request_record(scope)
        span = ChatSpan(self.tracer, request.headers)
        record.trace_id = span.trace_id
        try:
            await self._handle(request, record, span, send)
        except ClientGone:  # left while still sending the request body
            span.end("client_disconnected", 499)
            record.outcome = "client_disconnected"
            await _send_client_gone(send)
        except ApiError as exc:
            span.end("rejected" if exc.status < 500 else "upstream_error", exc.status)
            raise
        except Exception:
            span.end("failed", 500)
            raise

    async def _handle(
        self, request: Request[Any, Any, Any], record: AccessRecord, span: ChatSpan, send: Send
    ) -> None:
        parsed = await parse_chat_request(request, self.max_body_bytes)
        route = self.catalog.route(parsed.request.model)
        if route is None:
            raise NotFound(
                f"The model '{parsed.request.model[:128]}' does not exist.",
                param="model",
                code="model_not_found",
            )
        record.model = route.alias
        record.backend = route.backend
        record.add_header("x-tiergate-model", route.alias)
        record.add_header("x-tiergate-backend", route.backend)
        span.set(model=route.alias, backend=route.backend, stream=parsed.request.stream)

        raw = parsed.raw
        raw["model"] = route.engine_model
        stream = parsed.request.stream
        client_wants_usage = bool(
            parsed.request.stream_options and parsed.request.stream_options.include_usage
        )
        if stream:
            # Always ask for usage so tokens are counted; the transformer drops the usage
            # chunk again if the client did not ask for it.
            options = raw.get("stream_options")
            raw["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        upstream = self.upstreams[route.backend]
        body = msgspec.json.encode(raw)
        call = _Call(self.metrics, record, route, span, stream=stream)
        headers = {REQUEST_ID_HEADER: record.request_id}
        span.inject(headers)
        try:
            if stream:
                response = await unless_client_leaves(
                    request, upstream.open_chat(body, headers, stream=True)
                )
                await send(_sse_start())
                await unless_client_leaves(
                    request, _send_all(send, call.relay(response, client_wants_usage))
                )
                # Only now end the body: once a response is complete, the server answers
                # `receive()` with a disconnect, which the watcher would take for the client
                # leaving.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            content = await unless_client_leaves(request, call.complete(upstream, body, headers))
        except ApiError as exc:
            call.finish("upstream_rejected" if exc.status < 500 else "upstream_error")
            raise
        except ClientGone:
            if stream and record.status:
                return  # the relay finished the call and the record on its way out
            call.finish("client_disconnected")
            await _send_client_gone(send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content, "more_body": False})


async def _send_client_gone(send: Send) -> None:
    # Nobody reads this; it makes the access log say what happened (nginx's 499).
    await send({"type": "http.response.start", "status": 499, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_all(send: Send, chunks: AsyncGenerator[bytes, None]) -> None:
    """Send every chunk as it comes; close the generator in any case."""
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        await chunks.aclose()


class _Call:
    """One relayed completion: its metrics, its log record, its outcome."""

    __slots__ = ("metrics", "mode", "record", "route", "span", "started")

    def __init__(
        self,
        metrics: GatewayMetrics,
        record: AccessRecord,
        route: Route,
        span: ChatSpan,
        *,
        stream: bool,
    ) -> None:
        self.span = span
        self.metrics = metrics
        self.record = record
        self.route = route
        self.mode = "stream" if stream else "json"
        self.started = time.perf_counter()

    def count_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        self.record.prompt_tokens = usage.prompt_tokens
        self.record.completion_tokens = usage.completion_tokens
        self.span.set(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        self.metrics.count_tokens(
            self.route.alias, self.route.backend, usage.prompt_tokens, usage.completion_tokens
        )

    def finish(self, outcome: str) -> None:
        labels = (self.route.alias, self.route.backend, self.mode)
        self.metrics.chat.labels(*labels, outcome).inc()
        self.metrics.chat_duration.labels(*labels).observe(time.perf_counter() - self.started)
        self.record.outcome = outcome
        self.span.end(outcome, self.record.status or None)

    async def complete(self, upstream: Upstream, body: bytes, headers: dict[str, str]) -> bytes:
        """A whole non-streaming answer: call, read, rewrite, count."""
        response = await upstream.open_chat(body, headers, stream=False)
        return await self.read_whole(response)

    async def read_whole(self, response: httpx.Response) -> bytes:
        """Read a non-streaming answer; rewrite its model; count its usage."""
        try:
            content = await response.aread()
        except httpx.TimeoutException as exc:
            self.metrics.upstream_error(self.route.backend, "timeout")
            raise GatewayTimeout(
                f"The {self.route.backend} backend did not answer in time."
            ) from exc
        except httpx.HTTPError as exc:
            self.metrics.upstream_error(self.route.backend, "protocol")
            raise BadGateway(f"The {self.route.backend} backend broke off its answer.") from exc
        finally:
            await response.aclose()
        try:
            self.count_usage(_usage_decoder.decode(content).usage)
        except msgspec.DecodeError as exc:
            self.metrics.upstream_error(self.route.backend, "protocol")
            raise BadGateway(f"The {self.route.backend} backend sent an invalid answer.") from exc
        self.finish("ok")
        return rewrite_model(content, model_field(self.route.alias))

    async def relay(
        self, response: httpx.Response, client_wants_usage: bool
    ) -> AsyncGenerator[bytes, None]:
        """Relay the upstream's SSE stream; see the module docstring for failure handling."""
        sse = SseTransformer(self.route.alias, client_wants_usage=client_wants_usage)
        outcome = "client_disconnected"
        try:
            try:
                async for chunk in response.aiter_raw():
                    out = sse.feed(chunk)
                    if out:
                        yield out
            except httpx.HTTPError as exc:
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "protocol"
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                yield error_event(
                    f"The {self.route.backend} backend broke off the stream ({kind}).",
                    code="upstream_stream_error",
                )
                return
            except SseOverflow:
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                yield error_event(
                    f"The {self.route.backend} backend sent an event larger than "
                    f"{MAX_PENDING_BYTES} bytes.",
                    code="upstream_stream_error",
                )
                return
            if sse.saw_error:
                outcome = "upstream_error"
            elif sse.saw_done:
                outcome = "ok"
            elif sse.saw_finish:
                outcome = "ok"  # complete answer, engine omitted the terminator: add it
                yield b"data: [DONE]\n\n"
            else:
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                yield error_event(
                    f"The {self.route.backend} backend ended the stream before the answer was "
                    "complete.",
                    code="upstream_stream_error",
                )
        finally:
            await response.aclose()
            self._account_stream(sse, outcome)

    def _account_stream(self, sse: SseTransformer, outcome: str) -> None:
        """Metrics, span and log for a finished stream; must not raise (it runs in `finally`)."""
        try:
            if sse.first_token_at is not None:
                self.metrics.ttft.labels(self.route.alias, self.route.backend).observe(
                    sse.first_token_at - self.started
                )
            self.count_usage(sse.usage)
            self.finish(outcome)
        except Exception:
            _log.exception("stream_accounting_failed", backend=self.route.backend)
        if outcome == "client_disconnected":
            # No last body message will go out, so the edge cannot finish the record.
            self.record.finish()
