"""`POST /v1/chat/completions`: resolve the public model, call its backend, relay the answer.

Streaming answers are relayed event by event as they arrive (see `upstream/sse.py`). Nothing is
retried or re-routed once the first byte went to the client; a failure after that point ends
the stream with an error event. When the client goes away the upstream request is closed at
once — mid-stream, and also while a non-streaming answer is still being generated — so the
engine stops spending compute on it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import structlog
from litestar import Request
from litestar.exceptions import MethodNotAllowedException
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send
from opentelemetry.trace import Tracer
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from tiergate_gateway.breaker import Breakers
from tiergate_gateway.catalog import Catalog, Route
from tiergate_gateway.chat_request import parse_chat_request
from tiergate_gateway.gate import Gate
from tiergate_gateway.grounding import Grounder
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.policy import apply_policy, estimate_tokens
from tiergate_gateway.routing.router import Plan, Router, fitting
from tiergate_gateway.tracing import ChatSpan
from tiergate_gateway.upstream.admission import Admission, BackendOverloaded
from tiergate_gateway.upstream.call import UpstreamCall
from tiergate_gateway.upstream.client import Upstream
from tiergate_gateway.upstream.sse import (
    SseTransformer,
)
from tiergate_gateway.wake import WakeCoordinator
from tiergate_runtime.edge import REQUEST_ID_HEADER, AccessRecord, request_record
from tiergate_runtime.errors import (
    ApiError,
    NotFound,
    ServiceUnavailable,
)
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


class ChatService:
    """Everything `POST /v1/chat/completions` needs, built once in `create_app`."""

    def __init__(
        self,
        catalog: Catalog,
        upstreams: dict[str, Upstream],
        metrics: GatewayMetrics,
        gate: Gate,
        *,
        router: Router,
        wake: WakeCoordinator,
        breakers: Breakers,
        retries: int = 2,
        grounder: Grounder | None = None,
        max_body_bytes: int,
        tracer: Tracer | None = None,
        shedding: Admission | None = None,
    ) -> None:
        self.tracer = tracer
        self.shedding = shedding
        """Per-backend slots and wait queues (issue 10); None: nothing is bounded."""
        self.gate = gate
        self.router = router
        self.wake = wake
        self.breakers = breakers
        self.grounder = grounder
        self.retries = retries
        """Attempts after a 502/503 before the next backend (0: go to the next at once)."""
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
        principal = await self.gate.principal(request.scope, record)
        parsed = await parse_chat_request(request, self.max_body_bytes)
        route = self.catalog.route(parsed.request.model)
        if route is None:
            raise NotFound(
                f"The model '{parsed.request.model[:128]}' does not exist.",
                param="model",
                code="model_not_found",
            )
        raw = parsed.raw
        policy = self.gate.policy(principal)
        max_tokens = apply_policy(policy, route.alias, raw)
        workload = self.router.workload(principal.tier, raw)
        record.add_header("x-tiergate-workload", workload.header)
        plan = fitting(self.router.plan(route, principal.tier, workload, policy), parsed.needs)
        attempts = await self._choose(request, plan, record)
        route = attempts[0]
        self._label(record, span, route, stream=parsed.request.stream)
        record.add_header("x-tiergate-max-tokens", str(max_tokens))
        sources_field = b""
        if policy.grounding and self.grounder is not None:
            grounding = await self.grounder.ground(raw)
            record.add_header("x-tiergate-grounding", grounding.status)
            if grounding.sources:
                ids = [hit.id for hit in grounding.sources]
                record.add_header("x-tiergate-sources", ", ".join(ids))
                sources_field = b',"tiergate_sources":' + msgspec.json.encode(grounding.sources)
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
        body = msgspec.json.encode(raw)
        reserve = estimate_tokens(len(body), max_tokens, self.gate.chars_per_token)
        # The limit entry's id is ours, never the caller's x-request-id: a reused id would
        # overwrite its own entry instead of counting again.
        admission, limit_headers = await self.gate.limits.admit(
            principal, policy, os.urandom(12).hex(), reserve
        )
        for name, value in limit_headers:
            record.add_header(name, value)
        calls: list[UpstreamCall] = []
        try:
            await self._serve(
                request,
                record=record,
                span=span,
                attempts=attempts,
                raw=raw,
                body=body,
                send=send,
                calls=calls,
                wants_usage=client_wants_usage,
                sources_field=sources_field,
            )
        finally:
            await self.gate.limits.finish(admission, calls[-1].used_tokens if calls else None)

    async def _serve(
        self,
        request: Request[Any, Any, Any],
        *,
        record: AccessRecord,
        span: ChatSpan,
        attempts: list[Route],
        raw: dict[str, Any],
        body: bytes,
        send: Send,
        calls: list[UpstreamCall],
        wants_usage: bool,
        sources_field: bytes,
    ) -> None:
        """Try the routes in order until one answers (each call is appended to `calls`)."""
        stream = bool(raw.get("stream"))
        for index, target in enumerate(attempts):
            if index:
                raw["model"] = target.engine_model
                body = msgspec.json.encode(raw)
                self._label(record, span, target, stream=stream)
            call = UpstreamCall(self.metrics, record, target, span, stream=stream)
            call.extra_field = sources_field
            calls.append(call)
            try:
                await self._admitted(request, call, body, send, wants_usage)
            except ApiError as exc:
                # Nothing reached the client yet (after the first byte, failures are stream
                # events, not exceptions): the next candidate may answer.
                if not _fallback_worthy(exc):
                    # The client's fault (a 4xx): says nothing of the backend (issue 10).
                    self.breakers.neutral(target.backend)
                    raise
                if isinstance(exc, BackendOverloaded):  # overload is not failure (issue 10)
                    self.breakers.neutral(target.backend)
                else:
                    self.breakers.failure(target.backend)
                    if exc.status == 503:
                        self.wake.mark_cold(target.backend)  # wake it before trusting it again
                if index == len(attempts) - 1:
                    raise
                record.set_header("x-tiergate-fallback-from", target.backend)
                continue
            self.breakers.success(target.backend)
            return

    def _label(self, record: AccessRecord, span: ChatSpan, route: Route, *, stream: bool) -> None:
        record.model = route.alias
        record.backend = route.backend
        record.set_header("x-tiergate-model", route.alias)
        record.set_header("x-tiergate-backend", route.backend)
        span.set(model=route.alias, backend=route.backend, stream=stream)

    # --- load shedding (issue 10): the backend's slot is held around every attempt ---------
    async def _admitted(
        self,
        request: Request[Any, Any, Any],
        call: UpstreamCall,
        body: bytes,
        send: Send,
        wants_usage: bool,
    ) -> None:
        """`_attempt` holding one of the backend's slots (upstream/admission.py), if bounded.

        Waits in line for a free slot (the client leaving ends the wait) or raises
        BackendOverloaded before the engine sees anything; the slot is given back however
        the call ends, a stream after its last byte.
        """
        queue = self.shedding.queue(call.route.backend) if self.shedding else None
        if queue is None:
            await self._attempt(request, call, body, send, wants_usage)
            return
        try:
            # A free slot is taken without a disconnect watcher (the hot path, issue 3).
            permit = queue.try_acquire()
            if permit is None:
                permit = await unless_client_leaves(request, queue.acquire())
        except BackendOverloaded:
            call.finish("overloaded")
            raise
        except ClientGone:
            self.breakers.neutral(call.route.backend)
            call.finish("client_disconnected")
            raise
        call.record.set_header("x-tiergate-queue-wait-ms", str(round(permit.waited_s * 1000)))
        served = False
        try:
            await self._attempt(request, call, body, send, wants_usage)
            served = call.record.outcome == "ok"
        finally:
            permit.release(served=served)

    # --- end of load shedding ----------------------------------------------------------------

    async def _attempt(
        self,
        request: Request[Any, Any, Any],
        call: UpstreamCall,
        body: bytes,
        send: Send,
        wants_usage: bool,
    ) -> None:
        """One backend: the call, and on a 502/503 before the first byte a retry with backoff
        (tenacity, only on this failure path: the hot path creates no retry object)."""
        upstream = self.upstreams[call.route.backend]
        try:
            await self._call(request, call, upstream, body, send, wants_usage=wants_usage)
        except ApiError as exc:
            if exc.status not in _RETRY_STATUSES or self.retries == 0:
                raise
        else:
            return
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries),
            wait=wait_exponential_jitter(multiplier=0.1, max=1.0),
            retry=retry_if_exception(
                lambda e: isinstance(e, ApiError) and e.status in _RETRY_STATUSES
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._call(request, call, upstream, body, send, wants_usage=wants_usage)

    async def _choose(
        self, request: Request[Any, Any, Any], plan: Plan, record: AccessRecord
    ) -> list[Route]:
        """The routes to try, in order: the plan's first if its backend is awake; else wake it
        and, per the plan, answer from the next awake route (CPU-first), or hold, or 503.
        Backends whose breaker is open are skipped while another candidate remains."""
        awake = [
            r for r in plan.routes if not self.wake.sleeps(r.backend) or self.wake.ready(r.backend)
        ]
        usable = [r for r in awake if self.breakers.allows(r.backend)] or awake
        first = plan.routes[0]
        if usable and usable[0] is first:
            return usable
        if self.wake.sleeps(first.backend) and not self.wake.ready(first.backend):
            self.wake.wake(first.backend)
            if (
                plan.when_cold == "hold"
                and plan.hold_s > 0
                and await unless_client_leaves(
                    request, self.wake.wait_ready(first.backend, plan.hold_s)
                )
            ):
                return [first]
            if plan.when_cold == "cpu_first" and usable:
                record.add_header("x-tiergate-upgrade", "waking")
                return usable
        elif usable:
            return usable
        raise ServiceUnavailable(
            f"The model '{first.alias}' is waking up and nothing else can answer this request "
            "meanwhile; retry shortly.",
            retry_after=10,
            code="model_waking",
        )

    async def _call(
        self,
        request: Request[Any, Any, Any],
        call: UpstreamCall,
        upstream: Upstream,
        body: bytes,
        send: Send,
        *,
        wants_usage: bool,
    ) -> None:
        record = call.record
        stream = call.mode == "stream"
        headers = {REQUEST_ID_HEADER: record.request_id}
        call.span.inject(headers)
        try:
            if stream:
                response = await unless_client_leaves(
                    request, upstream.open_chat(body, headers, stream=True)
                )
                raw = response.aiter_raw()
                call.sse = SseTransformer(
                    call.route.alias,
                    client_wants_usage=wants_usage,
                    keep_extras=upstream.settings.keep_extras,
                )
                lead = b""
                first_token_s = upstream.settings.first_token_timeout_s
                if first_token_s is not None:
                    lead = await unless_client_leaves(
                        request, call.lead_in(response, raw, first_token_s)
                    )
                await send(_sse_start())
                await unless_client_leaves(
                    request, _send_all(send, call.relay(response, raw, lead))
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


_RETRY_STATUSES = frozenset({502, 503})


def _fallback_worthy(exc: ApiError) -> bool:
    """Failures another backend may not share: refused, dropped, 502/503/504 answers."""
    return exc.status in {502, 503, 504}
