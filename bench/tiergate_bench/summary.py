"""From raw runs to one row per (system, scenario): medians over rounds and derived figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

from tiergate_bench.options import Options
from tiergate_bench.schedule import Run

__all__ = ["Row", "summarize"]


@dataclass
class Row:
    """One system in one scenario, over all its rounds."""

    system: str
    scenario: str
    mode: str
    connections: int
    rounds: int  # rounds that produced a result
    requests: int  # summed over rounds
    errors: int  # summed over rounds (non-2xx + socket errors)
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    added_p50_ms: float | None = None  # median over rounds of (this - baseline), same round
    added_p99_ms: float | None = None
    cpu_us: float | None = None
    cpu_us_min: float | None = None
    cpu_us_max: float | None = None
    cpu_us_run: float | None = None  # whole-run CPU ÷ wrk's completed requests (edge-skewed)
    wrk_rps: float | None = None  # wrk's own requests per second over the whole run
    reference_over_this: float | None = None  # reference's CPU/request ÷ this one's
    rss_after_mib: float | None = None
    load_cpu_busy: float | None = None  # load generator's CPU busy share: ~1 = load-bound
    failed_runs: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return median(present) if present else None


def _paired(runs: list[Run], base: dict[tuple[str, int], Run], attr: str) -> float | None:
    """Median over rounds of this run's `attr` minus the baseline's in the same round."""
    deltas = []
    for run in runs:
        other = base.get((run.scenario, run.round))
        mine, theirs = getattr(run, attr), getattr(other, attr) if other else None
        if mine is not None and theirs is not None:
            deltas.append(mine - theirs)
    return median(deltas) if deltas else None


def _load_busy(run: Run, cpus: list[int]) -> float | None:
    shares = [run.cores_busy[cpu] for cpu in cpus if cpu < len(run.cores_busy)]
    return sum(shares) / len(shares) if shares else None


def summarize(runs: list[Run], options: Options) -> list[Row]:
    """Rows in scenario order, systems in the order listed."""
    roles = options.roles
    load_cpus = [int(cpu) for cpu in options.load_cpus.split(",")]
    base = {(r.scenario, r.round): r for r in runs if r.system == roles.baseline and not r.error}
    rows: list[Row] = []
    for scenario in options.scenarios():
        for variant in options.variants:
            mine = [r for r in runs if r.system == variant.name and r.scenario == scenario.key]
            if not mine:
                continue
            good = [r for r in mine if not r.error]
            cpus = [r.cpu_us_per_req for r in good if r.cpu_us_per_req is not None]
            rows.append(
                Row(
                    system=variant.name,
                    scenario=scenario.key,
                    mode=scenario.mode,
                    connections=scenario.connections,
                    rounds=len(good),
                    requests=sum(r.requests for r in good),
                    errors=sum(r.errors for r in good),
                    rps=_med([r.rps for r in good]),
                    p50_ms=_med([r.p50_ms for r in good]),
                    p99_ms=_med([r.p99_ms for r in good]),
                    added_p50_ms=_paired(good, base, "p50_ms"),
                    added_p99_ms=_paired(good, base, "p99_ms"),
                    cpu_us=median(cpus) if cpus else None,
                    cpu_us_min=min(cpus) if cpus else None,
                    cpu_us_max=max(cpus) if cpus else None,
                    cpu_us_run=_med([r.cpu_us_per_req_run for r in good]),
                    wrk_rps=_med([r.wrk_rps for r in good]),
                    rss_after_mib=_med([r.rss_after_mib for r in good]),
                    load_cpu_busy=_med([_load_busy(r, load_cpus) for r in good]),
                    failed_runs=len(mine) - len(good),
                )
            )
    reference = {row.scenario: row.cpu_us for row in rows if row.system == roles.reference}
    for row in rows:
        ref = reference.get(row.scenario)
        if ref is not None and row.cpu_us:
            row.reference_over_this = ref / row.cpu_us
    return rows
