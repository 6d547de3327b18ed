"""The pipeline: every OpenAI endpoint's request through the same fixed stages.

```
identity → read and validate → policy → plan → admit → decide → act → account
```

- **identity** (`Gate.principal`): who is asking; 401 for a bad credential.
- **read** (`Endpoint.read`): the endpoint's proto Struct, 400/413/415; the model (404) and
  whether it serves this API (400).
- **policy** (`apply_policy`): the tier may use the model and tools (403); the answer's
  tokens clamped.
- **plan** (`Router.plan`, `fitting`): the candidates, best first, that can serve it.
- **admit** (`GatewayLimits.admit`): requests, tokens (the reservation includes the
  grounding allowance) and the concurrency lease — 429 here, **before any side effect**:
  a refused request wakes nothing, searches nothing and reaches no engine.
- **filter** (`content_filter/check.py`): the tier's content filter reads the prompt — 400
  `content_policy_violation` on a flagged word, the lease returned like any refusal.
- **decide** (`routing/decide.py`, pure): which routes to try now, whether to wake, hold or
  answer CPU-first.
- **act** (`pipeline/act.py`): wake, hold (holding the lease), ground, the upstream attempts.
- **account**: the lease returned and tokens charged at the real usage, however the request
  ended; the answer's id remembered for feedback and, for a user who consented, the exchange
  sent to the history (`records/`); the request span ended once with its outcome; the
  request counted once (`api_requests_total`, by its final status) and taken off
  `in_flight_requests`.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from litestar import Request
from litestar.exceptions import MethodNotAllowedException
from litestar.types import ASGIApp, Receive, Scope, Send
from opentelemetry.trace import Tracer

from tiergate_gateway.catalog import Catalog, Route
from tiergate_gateway.content_filter import check_input
from tiergate_gateway.gate import Gate
from tiergate_gateway.metrics import ApiOutcome, api_outcome
from tiergate_gateway.pipeline.act import Act, send_client_gone
from tiergate_gateway.pipeline.exchange import EndpointSpec, Exchange, Parsed
from tiergate_gateway.policy import apply_policy, estimate_tokens
from tiergate_gateway.records.service import Records
from tiergate_gateway.routing.decide import AWAKE, BackendState, decide
from tiergate_gateway.routing.router import Plan, Router, fitting
from tiergate_gateway.tracing import RequestSpan
from tiergate_runtime.edge import AccessRecord, request_record
from tiergate_runtime.errors import ApiError, InvalidRequest, NotFound
from tiergate_runtime.upstream import ClientGone

__all__ = ["Pipeline"]

ASLEEP = BackendState(sleeps=True, ready=False)
WOKEN = BackendState(sleeps=True, ready=True)

_log = structlog.get_logger("tiergate.gateway.pipeline")


class Pipeline:
    """The stages, built once in `create_app`; `handler(endpoint)` mounts one endpoint."""

    def __init__(
        self,
        catalog: Catalog,
        gate: Gate,
        router: Router,
        act: Act,
        *,
        max_body_bytes: int,
        tracer: Tracer | None = None,
        records: Records | None = None,
    ) -> None:
        """`records`: feedback and consented history (None: answers are not remembered)."""
        self.catalog = catalog
        self.gate = gate
        self.router = router
        self.act = act
        self.max_body_bytes = max_body_bytes
        self.tracer = tracer
        self.records = records
        self.metrics = act.metrics
        self._grounder = act.grounder

    def handler(self, endpoint: EndpointSpec) -> ASGIApp:
        """The raw ASGI handler of `POST endpoint.path`.

        A raw ASGI route rather than a Litestar handler: the framework's per-request argument
        resolution and response objects were ~14% of the gateway's CPU (issue 3). Errors
        raised before the response starts still go through the app's exception handlers.
        """

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope.get("method") != "POST":
                raise MethodNotAllowedException(headers={"Allow": "POST"})
            request: Request[Any, Any, Any] = Request(scope, receive)
            record = request_record(scope)
            span = RequestSpan(self.tracer, endpoint.span_name, request.headers)
            record.trace_id = span.trace_id
            metrics = self.metrics
            metrics.in_flight_requests.inc()
            outcome: ApiOutcome = "error"  # an exception that is not an ApiError: a 500
            try:
                await self._run(endpoint, request, record, span, send)
            except ClientGone:  # left while still sending the request body, or waiting
                outcome = "client_gone"
                record.outcome = "client_disconnected"
                span.end("client_disconnected", 499)
                await send_client_gone(send)
            except ApiError as exc:
                outcome = api_outcome(exc.status)
                span.end("rejected" if exc.status < 500 else "upstream_error", exc.status)
                raise
            except BaseException:
                span.end("failed", 500)
                raise
            else:
                outcome = api_outcome(
                    record.status,
                    client_gone=record.outcome == "client_disconnected",
                    broken=record.outcome == "upstream_error",
                )
                span.end(record.outcome or "ok", record.status or None)
            finally:
                metrics.in_flight_requests.dec()
                metrics.api_request(endpoint.public_api, record.tier, outcome)

        return handle

    async def _run(
        self,
        endpoint: EndpointSpec,
        request: Request[Any, Any, Any],
        record: AccessRecord,
        span: RequestSpan,
        send: Send,
    ) -> None:
        # identity
        principal = await self.gate.principal(request.scope, record)
        # read and validate
        parsed = await endpoint.read(request, self.max_body_bytes, principal)
        route = self._model(parsed.model, endpoint)
        # policy
        policy = self.gate.policy(principal)
        cap = apply_policy(
            policy, route.alias, parsed.raw, tools=parsed.tools, cap_fields=parsed.cap_fields
        )
        exchange = Exchange(request, record, span, principal, parsed, policy, cap)
        if cap is not None:
            record.add_header("x-tiergate-max-tokens", str(cap))
        # plan
        plan = self._plan(exchange, route)
        # admit: nothing below runs for a refused request
        grounder = self._grounder
        grounding_chars = (
            grounder.max_added_chars(policy.grounding_tokens)
            if grounder is not None and policy.grounding and parsed.chat
            else 0
        )
        reserve = estimate_tokens(parsed.size + grounding_chars, cap, self.gate.chars_per_token)
        exchange.prompt_estimate = int(parsed.size / self.gate.chars_per_token)
        # The limit entry's id is ours, never the caller's x-request-id: a reused id would
        # overwrite its own entry instead of counting again.
        admission, limit_headers = await self.gate.limits.admit(
            principal, policy, os.urandom(12).hex(), reserve
        )
        for name, value in limit_headers:
            record.add_header(name, value)
        records = self.records
        tap = None
        try:
            # the content filter reads the prompt: after admit, so its CPU is bounded by the
            # tier's limits; before decide, so a refused prompt reaches no engine
            if policy.content_filter is not None:  # no coroutine when not (issue 3)
                await self._filter_input(endpoint, exchange)
            # decide
            breakers = self.act.breakers
            decision = decide(
                plan,
                {r.backend: self._state(r.backend) for r in plan.routes},
                {r.backend: breakers.snapshot(r.backend) for r in plan.routes},
                breakers.now(),
            )
            self.metrics.route_decision(principal.tier, decision.reason)
            # act (the records watch the answer go out: its id, and with consent its text)
            if records is not None and records.answers(endpoint.public_api):
                tap = records.tap(send, principal, endpoint.public_api, record)
                send = tap
            await self.act.run(exchange, endpoint, decision, send)
        finally:
            # account
            await self.gate.limits.finish(admission, exchange.used_tokens)
            if tap is not None and records is not None:
                await records.finish(tap, exchange)
            # Each call holds the exchange: break the cycle, or every request's objects would
            # wait for the cyclic garbage collector (measured: +10 % CPU per request).
            exchange.calls.clear()

    async def _filter_input(self, endpoint: EndpointSpec, exchange: Exchange) -> None:
        """400 `content_policy_violation` for a prompt the tier's filter flags."""
        content_filter = exchange.policy.content_filter
        if content_filter is None or not content_filter.input:
            return
        if endpoint.public_api == "embeddings":
            return  # nothing is generated from it
        try:
            await check_input(
                content_filter.words,
                content_filter.cache,
                exchange.parsed.raw,
                endpoint.public_api,
                content_filter.max_input_chars,
            )
        except InvalidRequest:
            self.metrics.filtered(exchange.principal.tier, "input")
            raise

    def _model(self, model: str, endpoint: EndpointSpec) -> Route:
        route = self.catalog.route(model)
        if route is None:
            raise NotFound(
                f"The model '{model[:128]}' does not exist.", param="model", code="model_not_found"
            )
        if endpoint.api not in route.endpoints:
            served = ", ".join(sorted(route.endpoints))
            raise InvalidRequest(
                f"The model '{model[:128]}' does not serve {endpoint.path} (it serves: {served}).",
                param="model",
                code="model_not_supported",
            )
        return route

    def _plan(self, exchange: Exchange, route: Route) -> Plan:
        parsed: Parsed = exchange.parsed
        if not parsed.chat:
            return Plan([route])
        workload = self.router.workload(exchange.principal.tier, parsed.raw)
        exchange.record.add_header("x-tiergate-workload", workload.header)
        plan = self.router.plan(route, exchange.principal.tier, workload, exchange.policy)
        return fitting(plan, parsed.needs)

    def _state(self, backend: str) -> BackendState:
        wake = self.act.wake
        if not wake.sleeps(backend):
            return AWAKE
        return WOKEN if wake.ready(backend) else ASLEEP
