"""The report: markdown tables and target lines, results/<UTC time>.json and results/latest.md."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tiergate_bench.options import Options
from tiergate_bench.schedule import Run
from tiergate_bench.slow_streams import SlowStreams
from tiergate_bench.summary import Row
from tiergate_bench.targets import Target

__all__ = ["SystemInfo", "markdown", "run_document", "write_results"]


@dataclass
class SystemInfo:
    """One system's start and memory, outside the measured runs."""

    name: str
    kind: str
    cpus: str
    note: str
    started: bool = False
    start_error: str | None = None
    start_s: float | None = None
    rss_idle_mib: float | None = None  # after start and one request per mode, then idle
    idle_cpu_ms_per_s: float | None = None  # CPU it burns doing nothing
    rss_max_after_load_mib: float | None = None
    rss_end_mib: float | None = None  # after everything, slow streams included


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else ("+" if value >= 0 else "") + _ms(value)


def _pct(share: float | None) -> float | None:
    return None if share is None else share * 100


def _scenario_table(rows: list[Row], reference: str) -> list[str]:
    lines = [
        f"| scenario | system | req/s | p50 ms | p99 ms | +p50 ms | +p99 ms "
        f"| CPU µs/req | (min-max) | {reference} ÷ this | RSS after MiB | load CPU % "
        "| errors / requests |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    previous = None
    for row in rows:
        scenario = row.scenario if row.scenario != previous else ""
        previous = row.scenario
        spread = (
            f"{row.cpu_us_min:,.0f}-{row.cpu_us_max:,.0f}" if row.cpu_us_min is not None else "-"
        )
        errors = f"{row.errors} / {row.requests}"
        if row.failed_runs:
            errors += f" ({row.failed_runs} runs failed)"
        lines.append(
            f"| {scenario} | {row.system} | {_f(row.rps, 0)} | {_ms(row.p50_ms)} "
            f"| {_ms(row.p99_ms)} | {_signed(row.added_p50_ms)} | {_signed(row.added_p99_ms)} "
            f"| {_f(row.cpu_us, 0)} | {spread} | {_f(row.reference_over_this, 1)} "
            f"| {_f(row.rss_after_mib)} | {_f(_pct(row.load_cpu_busy), 0)} | {errors} |"
        )
    return lines


def _systems_table(infos: list[SystemInfo]) -> list[str]:
    lines = [
        "| system | kind | CPUs | start s | RSS idle MiB | idle CPU ms/s "
        "| RSS max after load MiB | RSS at end MiB | what |",
        "|---|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for info in infos:
        what = info.note if info.started else f"did not start: {info.start_error}"
        lines.append(
            f"| {info.name} | {info.kind} | {info.cpus} | {_f(info.start_s)} "
            f"| {_f(info.rss_idle_mib)} | {_f(info.idle_cpu_ms_per_s, 2)} "
            f"| {_f(info.rss_max_after_load_mib)} | {_f(info.rss_end_mib)} "
            f"| {what.splitlines()[0] if what else ''} |"
        )
    return lines


def _slow_table(slow: list[SlowStreams]) -> list[str]:
    lines = [
        "| system | streams | complete | open at once | errors | incomplete | stream p50 s "
        "| stream max s | RSS before MiB | RSS peak MiB | RSS after MiB | CPU s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in slow:
        errors = str(s.errors)
        if s.error_kinds:
            errors += " (" + ", ".join(f"{k}: {v}" for k, v in s.error_kinds.items()) + ")"
        lines.append(
            f"| {s.system} | {s.streams} | {s.completed} | {s.peak_open} | {errors} "
            f"| {s.incomplete} | {_f(s.stream_p50_s)} | {_f(s.stream_max_s)} "
            f"| {_f(s.rss_idle_mib)} | {_f(s.rss_peak_mib)} | {_f(s.rss_after_mib)} "
            f"| {_f(s.cpu_s, 2)} |"
        )
    return lines


def markdown(
    *,
    meta: dict[str, Any],
    runs: list[Run],
    rows: list[Row],
    infos: list[SystemInfo],
    slow: list[SlowStreams],
    targets: list[Target],
    options: Options,
) -> str:
    """The whole report as markdown."""
    roles = options.roles
    rounds = f"{options.rounds} round{'s' if options.rounds != 1 else ''}"
    out = [
        f"# tiergate benchmark — {meta['utc']}",
        "",
        f"{meta['machine']}; git {meta['git']}; {meta['litellm_line']}. {rounds} of "
        f"{options.duration_s:g} s (after {options.warmup_s:g} s of warm-up) per system and "
        "scenario, the systems interleaved in a rotating order; medians over rounds. Systems "
        f"under test on CPU 1 (taskset) unless listed otherwise; wrk (1 thread) and the "
        f"upstream on CPU {options.load_cpus}.",
        "",
        "- **req/s**: requests relayed per second in the middle of the run (steady state, "
        "counted at the upstream); **p50/p99**: wrk's latency to the last byte;",
        f"- **+p50/+p99**: latency added over `{roles.baseline}` (median over rounds of the "
        "difference within a round);",
        "- **CPU µs/req**: user+system CPU of the system's whole process tree in that middle "
        "window ÷ requests relayed in it (min-max over rounds);",
        f"- **{roles.reference} ÷ this**: how many times less CPU per request than "
        f"`{roles.reference}`; **load CPU %**: how busy the load generator's CPU was "
        "(~100: the row is bound by the load generator, not by the system).",
        f"- {_noise(runs, rows)}",
        "",
        *_scenario_table(rows, options.roles.reference),
        "",
        "## Systems",
        "",
        *_systems_table(infos),
    ]
    if slow:
        out += [
            "",
            f"## Slow streams (each ~{options.drip_seconds:g} s, all opened at once)",
            "",
            *_slow_table(slow),
        ]
    out += _identity_cost(rows, options)
    out += ["", "## Targets", "", "```", *(t.line() for t in targets), "```", ""]
    return "\n".join(out)


def _identity_cost(rows: list[Row], options: Options) -> list[str]:
    """What an API key plus Redis-backed limits add per request, next to the same relay."""
    plain, keyed = options.roles.gateway, options.roles.gateway_identity
    lines = []
    for row in rows:
        if row.system != keyed:
            continue
        base = next((r for r in rows if r.system == plain and r.scenario == row.scenario), None)
        if base is None or base.cpu_us is None or row.cpu_us is None:
            continue
        extra_p50 = (
            f"{row.added_p50_ms - base.added_p50_ms:+.3f}"
            if row.added_p50_ms is not None and base.added_p50_ms is not None
            else "-"
        )
        lines.append(
            f"| {row.scenario} | {base.cpu_us:,.0f} | {row.cpu_us:,.0f} | "
            f"{row.cpu_us - base.cpu_us:+,.0f} | {row.cpu_us / base.cpu_us:.2f}x | {extra_p50} |"
        )
    if not lines:
        return []
    return [
        "",
        f"## Identity + limits (`{keyed}` vs `{plain}`)",
        "",
        f"Gateway CPU per request with an agent API key looked up in Redis and its requests, "
        f"tokens and concurrency limits decided in Redis, against `{plain}` (anonymous, "
        "limits off), same run; redis-server's own CPU is not included.",
        "",
        f"| scenario | {plain} CPU µs/req | {keyed} CPU µs/req | added µs/req | ratio | "
        "added p50 ms |",
        "|---|--:|--:|--:|--:|--:|",
        *lines,
    ]


def _noise(runs: list[Run], rows: list[Row]) -> str:
    """One sentence on how steady the run was."""
    spreads = sorted(
        ((r.cpu_us_max - r.cpu_us_min) / r.cpu_us, f"{r.system} {r.scenario}")
        for r in rows
        if r.cpu_us and r.cpu_us_max is not None and r.cpu_us_min is not None and r.rounds > 1
    )
    steal = max((max(r.cores_steal, default=0.0) for r in runs), default=0.0)
    text = f"Noise: the host stole up to {steal * 100:.1f} % of a CPU in a measured window"
    if spreads:
        mid = spreads[len(spreads) // 2][0]
        worst, where = spreads[-1]
        text += (
            f"; CPU/request spread over rounds (max-min)/median: median {mid * 100:.0f} %, "
            f"worst {worst * 100:.0f} % ({where})"
        )
    return text + "."


def write_results(
    results_dir: Path,
    stamp: str,
    report: str,
    document: dict[str, Any],
) -> tuple[Path, Path]:
    """Write `<stamp>.json` and `latest.md` under `results_dir`; return both paths."""
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{stamp}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    tmp.replace(json_path)
    md_path = results_dir / "latest.md"
    md_path.write_text(report)
    return json_path, md_path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def run_document(
    *,
    meta: dict[str, Any],
    options: Options,
    runs: list[Run],
    rows: list[Row],
    infos: list[SystemInfo],
    slow: list[SlowStreams],
    targets: list[Target],
) -> dict[str, Any]:
    """Everything about the run, raw and summarized, for results/<stamp>.json."""
    return {
        "meta": meta,
        "options": asdict(options),
        "systems": infos,
        "summary": rows,
        "slow_streams": slow,
        "targets": targets,
        "runs": runs,
    }
