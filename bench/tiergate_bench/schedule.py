"""The measured runs: every scenario, several rounds, every system once per round, rotated."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tiergate_bench.loadgen import Wrk, WrkResult, run_wrk
from tiergate_bench.options import Options, Scenario
from tiergate_bench.procstat import core_busy, core_times, sample_tree
from tiergate_bench.systems import System
from tiergate_bench.upstream import Upstream

__all__ = ["Run", "measure", "run_matrix"]


@dataclass
class Run:
    """One measured wrk run of one system in one scenario and round."""

    system: str
    scenario: str
    mode: str
    connections: int
    round: int
    position: int  # place in this round's order
    started_at: float
    requests: int = 0  # completed, as wrk counts them (whole run)
    errors: int = 0  # non-2xx + socket errors (whole run)
    rps: float = 0.0  # steady state: upstream requests per second in the middle window
    wrk_rps: float = 0.0  # wrk's: successful requests ÷ run duration
    p50_ms: float | None = None
    p99_ms: float | None = None
    window_s: float = 0.0
    window_requests: int = 0
    cpu_us_per_req: float | None = None  # middle window: CPU ÷ requests relayed
    cpu_us_per_req_run: float | None = None  # whole run: CPU ÷ wrk's completed requests
    cpu_window_by_pid: dict[str, float] = field(default_factory=dict)  # seconds, per process
    cores_busy: list[float] = field(default_factory=list)  # each CPU's busy share, in the window
    cores_steal: list[float] = field(default_factory=list)  # ... of which stolen by the host
    rss_after_mib: float | None = None
    pids: int = 0
    error: str | None = None
    wrk: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def measure(
    system: System, upstream: Upstream, scenario: Scenario, options: Options, run: Run
) -> Run:
    """Warm up, then one wrk run with CPU time and upstream requests read around its middle.

    The middle window (a margin cut from both ends) is steady state: every connection is busy,
    so CPU ÷ requests there is not skewed by requests still in flight when wrk stops, which
    at high concurrency on a slow system is a large share of a short run.
    """
    endpoint = system.endpoints[scenario.mode]
    if not system.root.alive():
        run.error = f"{system.name} is not running (exit {system.root.returncode()})"
        return run
    args = (endpoint, scenario)
    margin = max(0.5, 0.15 * options.duration_s)
    wrk: Wrk | None = None
    try:
        if options.warmup_s > 0:
            run_wrk(*args, options.warmup_s, options.load_cpus, options.wrk_timeout_s)
        first = sample_tree(system.root.pid)
        wrk = Wrk(*args, options.duration_s, options.load_cpus, options.wrk_timeout_s)
        started = time.monotonic()
        _sleep_until(started + margin)
        cores1 = core_times()
        tree1, count1, t1 = sample_tree(system.root.pid), upstream.requests(), time.monotonic()
        _sleep_until(started + wrk.duration_s - margin)
        tree2, count2, t2 = sample_tree(system.root.pid), upstream.requests(), time.monotonic()
        shares = core_busy(cores1, core_times())
        run.cores_busy = [round(busy, 3) for busy, _ in shares]
        run.cores_steal = [round(steal, 3) for _, steal in shares]
        result: WrkResult = wrk.result()
        last = sample_tree(system.root.pid)
    except (RuntimeError, OSError) as exc:
        run.error = str(exc)
        return run
    finally:
        if wrk is not None:
            wrk.stop()
    run.requests = result.requests
    run.errors = result.errors
    run.wrk_rps = result.rps
    run.window_s = t2 - t1
    run.window_requests = count2 - count1 - 1  # less the second status query itself
    run.rps = run.window_requests / run.window_s
    run.cpu_window_by_pid = {
        str(pid): round(cpu - tree1.cpu_by_pid.get(pid, 0.0), 2)
        for pid, cpu in tree2.cpu_by_pid.items()
    }
    if run.window_requests > 0:
        run.cpu_us_per_req = (tree2.cpu_s - tree1.cpu_s) / run.window_requests * 1e6
    if result.requests:
        run.p50_ms = result.p50_us / 1000
        run.p99_ms = result.p99_us / 1000
        run.cpu_us_per_req_run = (last.cpu_s - first.cpu_s) / result.requests * 1e6
    run.rss_after_mib = last.rss / 2**20
    run.pids = last.pids
    run.wrk = result.raw
    return run


def _for(system: System, scenario: Scenario) -> bool:
    allowed = system.variant.connections
    return allowed is None or scenario.connections in allowed


def run_matrix(
    systems: list[System], upstream: Upstream, options: Options, report: Callable[[str], None]
) -> list[Run]:
    """All runs; within a round the systems run back to back, the order rotating each round."""
    scenarios = options.scenarios()
    plan = [
        (index, scenario, round_, [s for s in systems if _for(s, scenario)])
        for index, scenario in enumerate(scenarios)
        for round_ in range(options.rounds)
    ]
    total = sum(len(members) for *_, members in plan)
    per_run = options.duration_s + options.warmup_s + 1.5
    report(f"{total} runs of ~{per_run:.0f} s each: about {total * per_run / 60:.0f} min")
    runs: list[Run] = []
    for index, scenario, round_, members in plan:
        shift = (round_ + index) % len(members) if members else 0
        for position, system in enumerate(members[shift:] + members[:shift]):
            run = Run(
                system=system.name,
                scenario=scenario.key,
                mode=scenario.mode,
                connections=scenario.connections,
                round=round_,
                position=position,
                started_at=time.time(),
            )
            runs.append(measure(system, upstream, scenario, options, run))
            report(_progress(len(runs), total, run))
    return runs


def _progress(done: int, total: int, run: Run) -> str:
    head = f"[{done:>3}/{total}] {run.scenario:<9} r{run.round} {run.system:<14}"
    if run.error:
        return f"{head} ERROR {run.error}"
    p50 = f"{run.p50_ms:.2f}" if run.p50_ms is not None else "-"
    p99 = f"{run.p99_ms:.2f}" if run.p99_ms is not None else "-"
    cpu = f"{run.cpu_us_per_req:.0f}" if run.cpu_us_per_req is not None else "-"
    cores = "/".join(f"{share * 100:.0f}" for share in run.cores_busy)
    return (
        f"{head} {run.rps:>8.0f} rps  p50 {p50:>7} ms  p99 {p99:>7} ms  "
        f"cpu {cpu:>6} us/req  rss {run.rss_after_mib or 0:.0f} MiB  errors {run.errors}  "
        f"cores busy {cores} %"
    )
