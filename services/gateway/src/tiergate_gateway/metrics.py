"""Gateway metrics: chat completions, time to first token, tokens, upstream errors, shedding.

Labels are bounded by configuration: `model` is a configured public alias (unknown models are
rejected before any label is used), `backend` a configured backend name, `kind` a fixed set.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tiergate_runtime.metrics import LATENCY_BUCKETS, HttpMetrics

__all__ = ["GatewayMetrics", "UpstreamErrorKind"]

NAMESPACE = "tiergate_gateway"

# connect: refused/unreachable · timeout: no bytes in time · protocol: broken answer ·
# status: the upstream answered an error status · midstream: failed after the first byte.
UpstreamErrorKind = Literal["connect", "timeout", "protocol", "status", "midstream"]
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """All gateway metric families, registered on the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.http = HttpMetrics(registry, NAMESPACE)
        self.calls = Counter(
            "upstream_calls",
            "Upstream attempts (a fallback makes two), by API, public model, backend, mode and "
            "outcome.",
            ["api", "model", "backend", "mode", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.call_duration = Histogram(
            "upstream_call_duration_seconds",
            "From the attempt's start to the last byte relayed.",
            ["api", "model", "backend", "mode"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.ttft = Histogram(
            "time_to_first_token_seconds",
            "From request received to the first content chunk relayed (streaming).",
            ["model", "backend"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=_TTFT_BUCKETS,
        )
        self.tokens = Counter(
            "tokens",
            "Tokens reported by the upstream's usage, by public model, backend and kind.",
            ["model", "backend", "kind"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "upstream_errors",
            "Upstream failures by backend and kind: connect, timeout, protocol, status, midstream.",
            ["backend", "kind"],
            namespace=NAMESPACE,
            registry=registry,
        )

        self.limits_degraded = Counter(
            "limits_degraded_decisions",
            "Requests whose limits were decided in this process because the store was down.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.breaker_state = Gauge(
            "breaker_state",
            "Circuit breaker per backend: 0 closed, 1 open, 2 half-open (one probe allowed).",
            ["backend"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.rate_limited = Counter(
            "rate_limited",
            "Requests refused by a limit, by tier and limit (requests, tokens, concurrency).",
            ["tier", "limit"],
            namespace=NAMESPACE,
            registry=registry,
        )
        # Load shedding per backend (upstream/admission.py). Gauges are per process; with
        # several workers the scrape sums the live ones (the bound is per process too).
        self.queue_depth = Gauge(
            "backend_queue_depth",
            "Requests waiting in this gateway for a free slot of the backend.",
            ["backend"],
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "backend_in_flight",
            "Requests holding one of the backend's slots (at the engine), streams included.",
            ["backend"],
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.backend_slots = Gauge(
            "backend_slots",
            "The backend's slots this gateway uses (configured, or learned from the engine).",
            ["backend"],
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue_wait = Histogram(
            "backend_queue_wait_seconds",
            "How long admitted requests waited for a slot of the backend (0: one was free).",
            ["backend"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.shed = Counter(
            "shed",
            "Requests refused before the engine because the backend was overloaded, by "
            "reason: queue_full, wait_timeout.",
            ["backend", "reason"],
            namespace=NAMESPACE,
            registry=registry,
        )

        self.guard_cuts = Counter(
            "guard_cuts",
            "Answers the runaway guard ended because they degenerated, by model and kind: "
            "sentence, line, ngram, token_run, char_run.",
            ["model", "kind"],
            namespace=NAMESPACE,
            registry=registry,
        )

    def upstream_error(self, backend: str, kind: UpstreamErrorKind) -> None:
        """Count one upstream failure."""
        self.upstream_errors.labels(backend, kind).inc()

    def count_tokens(self, model: str, backend: str, prompt: int, completion: int) -> None:
        """Add one response's usage."""
        self.tokens.labels(model, backend, "prompt").inc(prompt)
        self.tokens.labels(model, backend, "completion").inc(completion)
