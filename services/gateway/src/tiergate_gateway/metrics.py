"""Gateway metrics: API requests, upstream calls, first tokens, routing, wakes, grounding,
feedback and records.

Labels are bounded by configuration: `model` is a configured public alias (unknown models are
rejected before any label is used), `backend` a configured backend name, `tier` a configured
tier (or `none`, see `NO_TIER`), `kind`, `outcome`, `decision` and `status` fixed sets.
`prepare` creates every configured combination at start, so each series is in a scrape at 0
before any traffic (the alert rules and the dashboard rely on it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tiergate_proto.records import FeedbackFlag, FeedbackRating
from tiergate_runtime.metrics import LATENCY_BUCKETS, HttpMetrics
from tiergate_state.limits import Verdict

__all__ = [
    "API_LABELS",
    "API_OUTCOMES",
    "DECISIONS",
    "GROUNDING_STATUSES",
    "NO_TIER",
    "WAKE_OUTCOMES",
    "ApiLabel",
    "ApiOutcome",
    "GatewayMetrics",
    "UpstreamErrorKind",
    "WakeOutcome",
    "api_outcome",
]

NAMESPACE = "tiergate_gateway"

# connect: refused/unreachable · timeout: no bytes in time · protocol: broken answer ·
# status: the upstream answered an error status · midstream: failed after the first byte.
UpstreamErrorKind = Literal["connect", "timeout", "protocol", "status", "midstream"]
# What a limit refused a request for (the limiter's verdicts but "ok"): `rate_limited` labels.
REFUSALS = tuple(verdict for verdict in get_args(Verdict) if verdict != "ok")
# queue_full: max_queue requests already wait · wait_timeout: none was free in max_queue_wait_s.
ShedReason = Literal["queue_full", "wait_timeout"]
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# A GPU wake: seconds (a sleeping engine) to minutes (a cold platform pulling weights).
_WAKE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)

FEEDBACK_RATINGS: tuple[str, ...] = get_args(FeedbackRating)
FEEDBACK_FLAGS: tuple[str, ...] = get_args(FeedbackFlag)
RECORDS_OUTCOMES = ("stored", "declined", "refused", "failed", "dropped")
ApiLabel = Literal["chat", "completions", "embeddings", "responses"]
"""The public API a request came to (`/v1/chat/completions` is `chat`)."""
API_LABELS: tuple[ApiLabel, ...] = ("chat", "completions", "embeddings", "responses")
ApiOutcome = Literal["ok", "rate_limited", "client_error", "unavailable", "error", "client_gone"]
API_OUTCOMES: tuple[ApiOutcome, ...] = (
    "ok",
    "rate_limited",
    "client_error",
    "unavailable",
    "error",
    "client_gone",
)
FilterDirection = Literal["input", "output", "moderation"]
FILTER_DIRECTIONS: tuple[FilterDirection, ...] = get_args(FilterDirection)
NO_TIER = "none"
"""The `tier` of a request that has no configured tier: a bad credential (401), a credential
whose tier this gateway does not configure (403), one that ended before identity."""
DECISIONS = ("first", "breaker_open", "all_open", "hold", "cpu_first", "waking")
"""`routing/decide.py`'s `Reason`s (a test keeps the two equal)."""
WakeOutcome = Literal["ready", "failed", "timeout"]
WAKE_OUTCOMES: tuple[WakeOutcome, ...] = ("ready", "failed", "timeout")
GROUNDING_STATUSES = ("grounded", "no_query", "not_relevant", "no_sources", "timeout", "error")
"""`grounding.py`'s statuses: grounded, or the reason a request went ungrounded."""


def api_outcome(status: int, *, client_gone: bool = False, broken: bool = False) -> ApiOutcome:
    """A finished API request's outcome from its final status.

    `client_gone`: the client left before the end (whatever status went out). `broken`: a
    2xx stream that failed after its first byte (an error event ended it) counts as `error`.
    """
    if client_gone:
        return "client_gone"
    if status == 429:
        return "rate_limited"
    if status == 503:
        return "unavailable"
    if status >= 500 or status < 200:  # below 200: nothing answered, our failure
        return "error"
    if status >= 400:
        return "client_error"
    return "error" if broken else "ok"


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
            "Streams: from the attempt's start to its first token relayed, by public model, "
            "backend and the caller's tier.",
            ["model", "backend", "tier"],
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

        self._api_families(registry)
        self._records_families(registry)
        self._filter_families(registry)
        self._tiers: frozenset[str] = frozenset()

    def _api_families(self, registry: CollectorRegistry) -> None:
        """The families of the request path: API requests, routing, wakes, grounding."""
        self.api_requests = Counter(
            "api_requests",
            "API requests through the pipeline, counted once when they end, by API (chat, "
            "completions, embeddings, responses), tier and outcome: ok (2xx), rate_limited "
            "(429), client_error (other 4xx), unavailable (503), error (other 5xx, or a stream "
            "that broke after its first byte), client_gone (the client left first). tier is "
            f"'{NO_TIER}' without a configured tier (a 401, or ended before identity).",
            ["api", "tier", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.in_flight_requests = Gauge(
            "in_flight_requests",
            "API requests in progress in this process, streams until their last byte.",
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.route_decisions = Counter(
            "route_decisions",
            "Routing decisions by tier and decision: first, breaker_open, all_open, hold, "
            "cpu_first (a smaller model answers while the plan's first wakes), waking (503).",
            ["tier", "decision"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.wakes = Counter(
            "wakes",
            "Wakes of a sleeping GPU backend this process sent, by outcome: ready, failed (no "
            "wake call went through), timeout (not ready within ready_timeout_s).",
            ["backend", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.wake_duration = Histogram(
            "wake_duration_seconds",
            "From the first wake call to the backend ready (wakes that became ready).",
            ["backend"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=_WAKE_BUCKETS,
        )
        self.grounding = Counter(
            "grounding",
            "Grounded requests by tier and status: grounded, or why not: no_query, "
            "not_relevant, no_sources, timeout, error.",
            ["tier", "status"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.rag_search_duration = Histogram(
            "rag_search_duration_seconds",
            "Searches of the retrieval service, from the call to its answer (or failure).",
            namespace=NAMESPACE,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    # --- content filter (content_filter/) ---------------------------------------------------

    def _filter_families(self, registry: CollectorRegistry) -> None:
        """What the content filter refused or ended."""
        self.content_filtered = Counter(
            "content_filtered",
            "Requests and answers the content filter stopped, by tier and direction: input "
            "(a 400), output (an answer ended), moderation (an input flagged).",
            ["tier", "direction"],
            namespace=NAMESPACE,
            registry=registry,
        )

    def filtered(self, tier: str, direction: FilterDirection) -> None:
        """One request (input), answer (output) or moderation input the filter flagged."""
        label = tier if tier in self._tiers else NO_TIER
        self.content_filtered.labels(label, direction).inc()

    def _records_families(self, registry: CollectorRegistry) -> None:
        """Feedback on answers and writes to the records (records/)."""
        self.feedback_ratings = Counter(
            "feedback_ratings",
            "Feedback given on answers, by public model and rating: up, down, none (a flag "
            "without a rating).",
            ["model", "rating"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.feedback_flags = Counter(
            "feedback_flags",
            "Answers flagged by whoever got them, by public model and flag: "
            + ", ".join(FEEDBACK_FLAGS)
            + ". The flag-rate alert divides it by the model's answers.",
            ["model", "flag"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.records_writes = Counter(
            "records_writes",
            "Writes to the auth service's records, by kind (chat, feedback) and outcome: "
            "stored, declined (no consent when it arrived), refused (4xx), failed (after "
            "retries), dropped (backlog full or too large; chat only).",
            ["kind", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )

    def prepare_records(self, models: Iterable[str]) -> None:
        """Feedback series of every public model, and every write outcome, at 0."""
        for model in models:
            for rating in (*FEEDBACK_RATINGS, "none"):
                self.feedback_ratings.labels(model, rating)
            for flag in FEEDBACK_FLAGS:
                self.feedback_flags.labels(model, flag)
        for kind in ("chat", "feedback"):
            for outcome in RECORDS_OUTCOMES:
                self.records_writes.labels(kind, outcome)

    def feedback(self, model: str, rating: str | None, flag: str | None) -> None:
        """Count one feedback (the model is a public alias the ledger recorded)."""
        self.feedback_ratings.labels(model, rating or "none").inc()
        if flag is not None:
            self.feedback_flags.labels(model, flag).inc()

    def records_write(self, kind: str, outcome: str) -> None:
        """Count one write to the records (`outcome`: one of RECORDS_OUTCOMES)."""
        self.records_writes.labels(kind, outcome).inc()

    def prepare(
        self,
        tiers: Iterable[str],
        streams: Iterable[tuple[str, str]],
        wakes: Iterable[str],
        backends: Iterable[str] = (),
    ) -> None:
        """Create every configured label combination at 0 (once, at start).

        `tiers`: the configured tiers; `streams`: (public model, backend) of the models that
        can stream (TTFT); `wakes`: the backends with wake settings; `backends`: every backend
        (breaker closed, no upstream error, nothing shed yet). Series that exist from the start
        let `rate()` and the alerts see the first event, and a dashboard show a 0, not nothing.
        """
        self._tiers = frozenset(tiers)
        for api in API_LABELS:
            for tier in (*sorted(self._tiers), NO_TIER):
                for outcome in API_OUTCOMES:
                    self.api_requests.labels(api, tier, outcome)
        streams = list(streams)
        for tier in self._tiers:
            self._prepare_tier(tier, streams)
        for tier in (*sorted(self._tiers), NO_TIER):
            for direction in FILTER_DIRECTIONS:
                self.content_filtered.labels(tier, direction)
        for backend in backends:
            self.breaker_state.labels(backend).set(0)
            for kind in get_args(UpstreamErrorKind):
                self.upstream_errors.labels(backend, kind)
            for reason in get_args(ShedReason):
                self.shed.labels(backend, reason)
        for backend in wakes:
            self.wake_duration.labels(backend)
            for wake in WAKE_OUTCOMES:
                self.wakes.labels(backend, wake)

    def _prepare_tier(self, tier: str, streams: list[tuple[str, str]]) -> None:
        for decision in DECISIONS:
            self.route_decisions.labels(tier, decision)
        for status in GROUNDING_STATUSES:
            self.grounding.labels(tier, status)
        for limit in REFUSALS:
            self.rate_limited.labels(tier, limit)
        for model, backend in streams:
            self.ttft.labels(model, backend, tier)

    def api_request(self, api: ApiLabel, tier: str | None, outcome: ApiOutcome) -> None:
        """Count one finished API request (a tier not configured here counts as `none`)."""
        label = tier if tier is not None and tier in self._tiers else NO_TIER
        self.api_requests.labels(api, label, outcome).inc()

    def route_decision(self, tier: str, decision: str) -> None:
        """Count one `decide()` result."""
        self.route_decisions.labels(tier, decision).inc()

    def wake_ended(self, backend: str, outcome: WakeOutcome, seconds: float | None) -> None:
        """Count one wake this process sent; `seconds` (call → ready) when it became ready."""
        self.wakes.labels(backend, outcome).inc()
        if seconds is not None:
            self.wake_duration.labels(backend).observe(seconds)

    def grounded(self, tier: str, status: str) -> None:
        """Count one request's grounding (`status`: one of GROUNDING_STATUSES)."""
        self.grounding.labels(tier, status).inc()

    def upstream_error(self, backend: str, kind: UpstreamErrorKind) -> None:
        """Count one upstream failure."""
        self.upstream_errors.labels(backend, kind).inc()

    def count_tokens(self, model: str, backend: str, prompt: int, completion: int) -> None:
        """Add one response's usage."""
        self.tokens.labels(model, backend, "prompt").inc(prompt)
        self.tokens.labels(model, backend, "completion").inc(completion)
