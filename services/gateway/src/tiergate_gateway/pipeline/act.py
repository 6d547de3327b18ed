"""The act stage: carry out a Decision — wake, hold, ground, then the upstream attempts.

This is the only stage with side effects on other services (issue 11). In order:
1. `decision.wake`: the backend is woken (single-flight, one wake for all replicas).
2. `decision.hold_s`: wait that long for it (the request's concurrency lease is held: it was
   admitted before); still asleep → 503 `model_waking` with Retry-After. A held *stream* gets
   `: waking` comments meanwhile, its head sent with the first (`pipeline/hold.py`); it is
   grounded before the hold, so that the grounding headers are in that head. After an early
   head every failure — the wake timing out, each attempt failing before its first byte —
   ends the stream with the endpoint's error event (chat: the error envelope and `[DONE]`;
   Responses: `response.failed`); fallbacks and retries before the first answer byte work
   as before, the client leaving ends the wait at once.
3. Grounding (tiers with `grounding`, chat-shaped requests): one rag search, whose message
   goes into the upstream body.
4. The attempts, in the decision's order. Each takes a breaker permit for its backend (the
   half-open probe only when it is this request that probes), a load-shedding slot where the
   backend is bounded, and an attempt span; a 502/503 is retried on the same backend with
   backoff, then the next candidate answers — only before the first byte reached the client.
   Every ending settles the permit: success, failure (5xx before the first byte), neutral
   (the client's 4xx, shed, client gone, cancelled).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from litestar.types import Send
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from tiergate_gateway.breaker import BreakerPermit, Breakers
from tiergate_gateway.catalog import Route
from tiergate_gateway.grounding import Grounder
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.pipeline.body import upstream_body
from tiergate_gateway.pipeline.exchange import EndpointSpec, Exchange
from tiergate_gateway.pipeline.hold import StreamHead, hold_stream, sse_start
from tiergate_gateway.routing.decide import WAKING_RETRY_AFTER_S, Decision
from tiergate_gateway.upstream.admission import Admission, BackendOverloaded, BackendQueue
from tiergate_gateway.upstream.call import UpstreamCall
from tiergate_gateway.upstream.client import Upstream
from tiergate_gateway.wake import WakeCoordinator
from tiergate_runtime.edge import REQUEST_ID_HEADER
from tiergate_runtime.errors import ApiError, ServiceUnavailable
from tiergate_runtime.upstream import ClientGone, unless_client_leaves

__all__ = ["Act", "send_client_gone"]

_RETRY_STATUSES = frozenset({502, 503})


def _fallback_worthy(exc: ApiError) -> bool:
    """Failures another backend may not share: refused, dropped, 502/503/504 answers."""
    return exc.status in {502, 503, 504}


def _waking(route: Route, retry_after: int) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The model '{route.alias}' is waking up and nothing else can answer this request "
        "meanwhile; retry shortly.",
        retry_after=retry_after,
        code="model_waking",
    )


class Act:
    """Side effects of the pipeline, for one gateway process."""

    def __init__(
        self,
        upstreams: dict[str, Upstream],
        metrics: GatewayMetrics,
        *,
        wake: WakeCoordinator,
        breakers: Breakers,
        shedding: Admission | None,
        grounder: Grounder | None,
        retries: int,
        keepalive_s: float = 0.0,
    ) -> None:
        """`keepalive_s`: a held stream's `: waking` interval (0: none, the head waits)."""
        self.upstreams = upstreams
        self.metrics = metrics
        self.wake = wake
        self.breakers = breakers
        self.shedding = shedding
        self.grounder = grounder
        self.retries = retries
        self.keepalive_s = keepalive_s

    async def run(
        self, exchange: Exchange, endpoint: EndpointSpec, decision: Decision, send: Send
    ) -> None:
        """Carry out `decision` (see the module docstring)."""
        request = exchange.request
        waking = decision.waking
        if waking is not None:
            self.wake.wake(waking.backend)
            if not decision.attempts:
                raise _waking(waking, decision.retry_after_s)
            if (
                decision.hold_s > 0
                and exchange.parsed.stream
                and self.keepalive_s > 0
                and not self.wake.ready(waking.backend)
            ):
                if self._grounds(exchange):
                    await self._ground(exchange)
                await self._held(exchange, endpoint, decision, waking, StreamHead(send))
                return
            if decision.hold_s > 0:
                ready = await unless_client_leaves(
                    request, self.wake.wait_ready(waking.backend, decision.hold_s)
                )
                if not ready:
                    raise _waking(waking, WAKING_RETRY_AFTER_S)
        if decision.upgrade:
            exchange.record.add_header("x-tiergate-upgrade", "waking")
        if self._grounds(exchange):  # checked here: no coroutine when not (issue 3)
            await self._ground(exchange)
        await self._serve(exchange, endpoint, decision, send)

    def _grounds(self, exchange: Exchange) -> bool:
        """The tier has grounding and the request is chat-shaped."""
        return exchange.policy.grounding and self.grounder is not None and exchange.parsed.chat

    async def _ground(self, exchange: Exchange) -> None:
        """One rag search; its message goes into the upstream body, its verdict in headers."""
        grounder = self.grounder
        assert grounder is not None
        grounding = await grounder.ground(exchange.parsed.raw, exchange.policy.grounding_tokens)
        exchange.grounding = grounding
        self.metrics.grounded(exchange.principal.tier, grounding.reason)
        exchange.prompt_estimate += grounder.added_tokens(grounding)
        exchange.record.add_header("x-tiergate-grounding", grounding.status)
        if grounding.relevance is not None:
            exchange.span.set(grounding_relevance=grounding.relevance)
        if grounding.sources:
            ids = ", ".join(hit.id for hit in grounding.sources)
            exchange.record.add_header("x-tiergate-sources", ids)
            exchange.record.add_header("x-tiergate-source-list", grounding.source_list)

    async def _held(
        self,
        exchange: Exchange,
        endpoint: EndpointSpec,
        decision: Decision,
        waking: Route,
        head: StreamHead,
    ) -> None:
        """A stream held for `waking` with keep-alives, then served (module docstring, 2)."""
        record = exchange.record
        label(exchange, decision.attempts[0])  # its headers go out with an early head
        try:
            ready = await hold_stream(
                exchange.request,
                self.wake,
                waking.backend,
                hold_s=decision.hold_s,
                interval_s=self.keepalive_s,
                head=head,
            )
            if not ready:
                raise _waking(waking, WAKING_RETRY_AFTER_S)
            await self._serve(exchange, endpoint, decision, head)
        except ApiError as exc:
            if not head.started:
                raise  # nothing went out: the usual error response
            # The client has a 200 already: the failure is the stream's last event.
            record.outcome = "upstream_error" if exc.status >= 500 else "upstream_rejected"
            relay = endpoint.relay(exchange, record.model or waking.alias, frozenset())
            await head.end(relay.error(exc.message, exc.code or "upstream_error"))
        except ClientGone:
            if not head.started:
                raise
            record.outcome = "client_disconnected"
            await head.end()  # nobody reads it; the edge finishes the record

    async def _serve(
        self, exchange: Exchange, endpoint: EndpointSpec, decision: Decision, send: Send
    ) -> None:
        """Try the decision's routes in order until one answers."""
        attempts = decision.attempts
        for index, target in enumerate(attempts):
            last = index == len(attempts) - 1
            force = (decision.force_first and index == 0) or last
            permit = self.breakers.acquire(target.backend, force=force)
            if permit is None:  # its probe was taken by another request meanwhile
                continue
            label(exchange, target)
            try:
                await self._on_permit(exchange, endpoint, target, permit, send)
            except ApiError as exc:
                # Nothing reached the client yet (after the first byte, failures are stream
                # events, not exceptions): the next candidate may answer.
                if not _fallback_worthy(exc):
                    raise  # the client's fault (a 4xx): says nothing of the backend
                if last:
                    raise
                exchange.record.set_header("x-tiergate-fallback-from", target.backend)
                continue
            finally:
                permit.close()
            return

    async def _on_permit(
        self,
        exchange: Exchange,
        endpoint: EndpointSpec,
        target: Route,
        permit: BreakerPermit,
        send: Send,
    ) -> None:
        """One candidate under its breaker permit, settled by how the attempt ended."""
        upstream = self.upstreams[target.backend]
        call = UpstreamCall(self.metrics, exchange, endpoint, target, upstream.settings.keep_extras)
        exchange.calls.append(call)
        body = upstream_body(exchange, target, upstream.adapter, endpoint.upstream)
        queue = self.shedding.queue(target.backend) if self.shedding else None
        try:
            if queue is None:  # unbounded: no slot to hold (one coroutine less, issue 3)
                await self._attempt(call, upstream, body, send)
            else:
                await self._slotted(queue, call, upstream, body, send)
        except ApiError as exc:
            if not _fallback_worthy(exc) or isinstance(exc, BackendOverloaded):
                permit.neutral()  # a 4xx, or shed: says nothing of the backend (issue 10)
            else:
                permit.failure()
                if exc.status == 503:
                    self.wake.mark_cold(target.backend)  # wake it before trusting it again
            raise
        if call.record.outcome == "client_disconnected":
            permit.neutral()
        else:
            permit.success()

    async def _slotted(
        self,
        queue: BackendQueue,
        call: UpstreamCall,
        upstream: Upstream,
        body: bytes,
        send: Send,
    ) -> None:
        """`_attempt` holding one of the backend's slots (upstream/admission.py).

        Waits in line for a free slot (the client leaving ends the wait) or raises
        BackendOverloaded before the engine sees anything; the slot is given back however
        the call ends, a stream after its last byte.
        """
        request = call.exchange.request
        try:
            # A free slot is taken without a disconnect watcher (the hot path, issue 3).
            slot = queue.try_acquire()
            if slot is None:
                slot = await unless_client_leaves(request, queue.acquire())
        except BackendOverloaded:
            call.finish("overloaded")
            raise
        except ClientGone:
            call.finish("client_disconnected")
            raise
        call.record.set_header("x-tiergate-queue-wait-ms", str(round(slot.waited_s * 1000)))
        served = False
        try:
            await self._attempt(call, upstream, body, send)
            served = call.record.outcome == "ok"
        finally:
            slot.release(served=served)

    async def _attempt(
        self, call: UpstreamCall, upstream: Upstream, body: bytes, send: Send
    ) -> None:
        """The call, and on a 502/503 before the first byte a retry with backoff (tenacity,
        only on this failure path: the hot path creates no retry object)."""
        try:
            await self._call(call, upstream, body, send)
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
                await self._call(call, upstream, body, send)

    async def _call(self, call: UpstreamCall, upstream: Upstream, body: bytes, send: Send) -> None:
        request = call.exchange.request
        record = call.record
        headers = {REQUEST_ID_HEADER: record.request_id}
        call.span.inject(headers)
        try:
            if call.sse is not None:
                await self._stream(call, upstream, body, headers, send)
                return
            content = await unless_client_leaves(request, call.complete(upstream, body, headers))
        except ApiError as exc:
            call.finish("upstream_rejected" if exc.status < 500 else "upstream_error")
            raise
        except ClientGone:
            if call.sse is not None:
                return  # the relay finished the call and the record on its way out
            call.finish("client_disconnected")
            await send_client_gone(send)
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

    async def _stream(
        self,
        call: UpstreamCall,
        upstream: Upstream,
        body: bytes,
        headers: dict[str, str],
        send: Send,
    ) -> None:
        request = call.exchange.request
        try:
            response = await unless_client_leaves(
                request, upstream.open(call.endpoint.upstream, body, headers, stream=True)
            )
            raw = response.aiter_raw()
            lead = b""
            first_token_s = upstream.settings.first_token_timeout_s
            if first_token_s is not None:
                lead = await unless_client_leaves(
                    request, call.lead_in(response, raw, first_token_s)
                )
        except ClientGone:
            # Before the relay (which settles the call itself); a held stream's head may
            # be out already, so "has a status" cannot tell the two apart.
            call.finish("client_disconnected")
            await send_client_gone(send)
            return
        await send(sse_start())
        await unless_client_leaves(request, _send_all(send, call.relay(response, raw, lead)))
        # Only now end the body: once a response is complete, the server answers `receive()`
        # with a disconnect, which the watcher would take for the client leaving.
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def label(exchange: Exchange, route: Route) -> None:
    """Say which model and backend this attempt goes to (record, headers, span)."""
    record = exchange.record
    record.model = route.alias
    record.backend = route.backend
    record.set_header("x-tiergate-model", route.alias)
    record.set_header("x-tiergate-backend", route.backend)
    exchange.span.set(model=route.alias, backend=route.backend, stream=exchange.parsed.stream)


async def send_client_gone(send: Send) -> None:
    """Nobody reads this; it makes the access log say what happened (nginx's 499)."""
    await send({"type": "http.response.start", "status": 499, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_all(send: Send, chunks: AsyncGenerator[bytes, None]) -> None:
    """Send every chunk as it comes; close the generator in any case."""
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        await chunks.aclose()
