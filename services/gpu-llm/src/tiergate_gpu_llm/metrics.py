"""gpu-llm metric families: swaps, swap duration, engine state, restarts, proxied requests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tiergate_runtime.metrics import HttpMetrics

__all__ = ["GpuMetrics"]

NAMESPACE = "tiergate_gpu_llm"


class GpuMetrics:
    """All families, on the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.http = HttpMetrics(registry, NAMESPACE)
        self.swaps = Counter(
            "swaps",
            "GPU hand-overs, by the engine that had it (none: the GPU was free) and the next.",
            ["previous", "target"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.swap_seconds = Histogram(
            "swap_duration_seconds",
            "From the swap decision to the new engine ready (drain, release, start).",
            namespace=NAMESPACE,
            registry=registry,
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
        )
        self.state = Gauge(
            "engine_state",
            "1 for the state each engine is in: cold, starting, ready, stopping, failed.",
            ["engine", "state"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.restarts = Counter(
            "engine_restarts",
            "Restarts of the hot engine after failed health probes or an exit.",
            ["engine"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.unavailable = Counter(
            "requests_unavailable",
            "Requests answered 503 because their engine did not hold the GPU.",
            ["engine"],
            namespace=NAMESPACE,
            registry=registry,
        )
