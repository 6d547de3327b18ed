"""OpenTelemetry tracing: off by default, OTLP/HTTP export when configured, W3C propagation.

With `[tracing] enabled = true` a service exports spans in batches to `otlp_endpoint` (an
OpenTelemetry collector). Disabled, `configure_tracing` returns None and the services skip
span work entirely, so the hot path pays nothing.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

__all__ = ["TracingSettings", "configure_tracing"]


class TracingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where spans go. `sample_ratio` applies to new traces; callers' sampling is respected."""

    enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    sample_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    export_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0


def configure_tracing(settings: TracingSettings, service: str) -> TracerProvider | None:
    """A tracer provider exporting to the collector, or None when tracing is off."""
    if not settings.enabled:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"tiergate-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    exporter = OTLPSpanExporter(
        endpoint=settings.otlp_endpoint, timeout=int(settings.export_timeout_s)
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
