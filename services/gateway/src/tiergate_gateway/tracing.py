"""A span per chat completion, continuing the caller's W3C trace and passed on to the engine.

`ChatSpan` does nothing when tracing is off (no tracer): the relay calls it unconditionally and
pays a few attribute checks. The span lives until the answer is complete — for a stream, the
last event — and records route, tokens and outcome; never prompt or answer text.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["ChatSpan"]

_propagator = TraceContextTextMapPropagator()


class ChatSpan:
    """The span of one chat completion, or a no-op."""

    __slots__ = ("_ended", "_span")

    def __init__(self, tracer: Tracer | None, headers: Mapping[str, str]) -> None:
        self._ended = False
        self._span: trace.Span | None = None
        if tracer is not None:
            parent = _propagator.extract(headers)
            self._span = tracer.start_span("chat.completions", context=parent, kind=SpanKind.SERVER)

    @property
    def trace_id(self) -> str | None:
        """The trace id as 32 hex digits, for the access log; None when not tracing."""
        if self._span is None:
            return None
        context = self._span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    def set(self, **attributes: str | int | bool) -> None:
        """Add attributes (`tiergate.` prefixed)."""
        if self._span is not None:
            for key, value in attributes.items():
                self._span.set_attribute(f"tiergate.{key}", value)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add `traceparent` for the upstream call, making the engine's work a child span."""
        if self._span is not None:
            _propagator.inject(headers, context=trace.set_span_in_context(self._span))

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
