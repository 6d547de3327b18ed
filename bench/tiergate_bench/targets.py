"""The issue's targets, checked against the summary: one PASS / MISS / SKIP line each."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from tiergate_bench.options import Options
from tiergate_bench.slow_streams import SlowStreams
from tiergate_bench.summary import Row

__all__ = ["Target", "evaluate"]

CPU_FACTOR = 10.0  # CPU per request at 64 connections ≤ 1/10 of the reference's
ADDED_P50_MS = 1.0  # latency added over direct at 1 connection, p50
IDLE_RSS_MIB = 120.0
SLOW_STREAMS = 1000
SCALING = 1.8  # "roughly doubles": workers = 2 at >= 1.8x the throughput of one

Verdict = Literal["PASS", "MISS", "SKIP"]


@dataclass(frozen=True)
class Target:
    """One target and how the run did against it."""

    verdict: Verdict
    name: str
    detail: str

    def line(self) -> str:
        """`PASS name: detail`."""
        return f"{self.verdict} {self.name}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _row(rows: list[Row], system: str, scenario: str) -> Row | None:
    return next((r for r in rows if r.system == system and r.scenario == scenario), None)


def _verdict(ok: bool) -> Verdict:
    return "PASS" if ok else "MISS"


def _cpu(rows: list[Row], options: Options, mode: str) -> Target:
    roles, key = options.roles, f"{mode}-c64"
    name = f"CPU/request {key} <= 1/{CPU_FACTOR:.0f} of {roles.reference}"
    mine, ref = _row(rows, roles.gateway, key), _row(rows, roles.reference, key)
    if mine is None or ref is None or mine.cpu_us is None or ref.cpu_us is None:
        return Target("SKIP", name, f"needs {roles.gateway} and {roles.reference} at {key}")
    ratio = ref.cpu_us / mine.cpu_us
    return Target(
        _verdict(ratio >= CPU_FACTOR),
        name,
        f"{roles.gateway} {mine.cpu_us:.0f} us vs {roles.reference} {ref.cpu_us:.0f} us "
        f"= 1/{ratio:.1f}",
    )


def _added(rows: list[Row], options: Options, mode: str) -> Target:
    roles, key = options.roles, f"{mode}-c1"
    name = f"added p50 latency {key} over {roles.baseline} <= {ADDED_P50_MS:.1f} ms"
    mine = _row(rows, roles.gateway, key)
    if mine is None or mine.added_p50_ms is None:
        return Target("SKIP", name, f"needs {roles.gateway} and {roles.baseline} at {key}")
    return Target(
        _verdict(mine.added_p50_ms <= ADDED_P50_MS),
        name,
        f"{roles.gateway} +{mine.added_p50_ms:.3f} ms (p50 {mine.p50_ms:.3f} ms)",
    )


def _idle_rss(idle_rss: dict[str, float], options: Options) -> Target:
    gateway = options.roles.gateway
    name = f"{gateway} RSS at idle <= {IDLE_RSS_MIB:.0f} MiB"
    if gateway not in idle_rss:
        return Target("SKIP", name, f"{gateway} did not run")
    rss = idle_rss[gateway]
    return Target(_verdict(rss <= IDLE_RSS_MIB), name, f"{rss:.1f} MiB")


def _streams(slow: list[SlowStreams], options: Options) -> Target:
    gateway = options.roles.gateway
    name = f"{SLOW_STREAMS} concurrent slow streams through {gateway} without error"
    result = next((s for s in slow if s.system == gateway), None)
    if result is None:
        return Target("SKIP", name, "not run (--slow-streams 0, or the gateway did not start)")
    ok = (
        result.streams >= SLOW_STREAMS
        and result.completed == result.streams
        and result.peak_open == result.streams
    )
    return Target(
        _verdict(ok),
        name,
        f"{result.completed}/{result.streams} complete, {result.peak_open} open at once, "
        f"{result.errors} errors, {result.incomplete} incomplete, "
        f"RSS peak {result.rss_peak_mib:.1f} MiB",
    )


def _scaling(rows: list[Row], options: Options, mode: str) -> Target:
    roles, key = options.roles, f"{mode}-c64"
    name = f"{roles.gateway_scaled} throughput {key} >= {SCALING}x {roles.gateway}"
    one, two = _row(rows, roles.gateway, key), _row(rows, roles.gateway_scaled, key)
    if one is None or two is None or not one.rps or two.rps is None:
        return Target("SKIP", name, f"not measured (add it: --systems +{roles.gateway_scaled})")
    ratio = two.rps / one.rps
    return Target(
        _verdict(ratio >= SCALING),
        name,
        f"{two.rps:.0f} vs {one.rps:.0f} rps = {ratio:.2f}x",
    )


def evaluate(
    rows: list[Row], idle_rss: dict[str, float], slow: list[SlowStreams], options: Options
) -> list[Target]:
    """Every target of the issue, in its order."""
    return [
        _cpu(rows, options, "json"),
        _cpu(rows, options, "sse"),
        _added(rows, options, "json"),
        _added(rows, options, "sse"),
        _idle_rss(idle_rss, options),
        _streams(slow, options),
        _scaling(rows, options, "json"),
        _scaling(rows, options, "sse"),
    ]
