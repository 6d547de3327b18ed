"""Spans: one per API request, ended once, and a child per upstream attempt (issue 11).

The request span continues the caller's W3C trace and ends when the answer is complete — for
a stream, after its last event — with the request's outcome: a fallback that succeeds is an
OK request span with two attempt spans under it, the failed one marked as an error. Each
attempt span is what the engine's own work continues (`traceparent` sent upstream). Spans
record route, tokens and outcome, never prompt or answer text. Without a tracer every method
is a no-op that costs a few attribute checks.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["AttemptSpan", "RequestSpan"]

_propagator = TraceContextTextMapPropagator()


class _Span:
    __slots__ = ("_ended", "_span")

    def __init__(self, span: trace.Span | None) -> None:
        self._ended = False
        self._span = span

    def set(self, **attributes: str | int | float | bool) -> None:
        """Add attributes (`tiergate.` prefixed)."""
        if self._span is not None:
            for key, value in attributes.items():
                self._span.set_attribute(f"tiergate.{key}", value)

    def end(self, outcome: str, status: int | None = None) -> None:
        """End the span once; an outcome other than ok marks it as an error."""
        if self._span is None or self._ended:
            return
        self._ended = True
        self._span.set_attribute("tiergate.outcome", outcome)
        if status is not None:
            self._span.set_attribute("http.response.status_code", status)
        if outcome != "ok":
            self._span.set_status(Status(StatusCode.ERROR, outcome))
        self._span.end()


class RequestSpan(_Span):
    """The server span of one API request, or a no-op."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: Tracer | None, name: str, headers: Mapping[str, str]) -> None:
        self._tracer = tracer
        span = None
        if tracer is not None:
            parent = _propagator.extract(headers)
            span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        super().__init__(span)

    @property
    def trace_id(self) -> str | None:
        """The trace id as 32 hex digits, for the access log; None when not tracing."""
        if self._span is None:
            return None
        context = self._span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    def attempt(self, backend: str, model: str) -> AttemptSpan:
        """A child span for one upstream attempt."""
        if self._tracer is None or self._span is None:
            return NO_ATTEMPT_SPAN
        span = self._tracer.start_span(
            "upstream",
            context=trace.set_span_in_context(self._span),
            kind=SpanKind.CLIENT,
            attributes={"tiergate.backend": backend, "tiergate.model": model},
        )
        return AttemptSpan(span)


class AttemptSpan(_Span):
    """The client span of one upstream attempt, or a no-op."""

    __slots__ = ()

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add `traceparent` for the upstream call, making the engine's work a child span."""
        if self._span is not None:
            _propagator.inject(headers, context=trace.set_span_in_context(self._span))


NO_ATTEMPT_SPAN = AttemptSpan(None)
"""The attempt span when not tracing: shared, it never ends anything."""
