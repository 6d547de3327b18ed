"""The run from start to end: start everything, measure, report, and stop everything."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from tiergate_bench.loadgen import run_wrk
from tiergate_bench.options import BENCH_DIR, Options, Scenario, parse_options
from tiergate_bench.procs import stop_all
from tiergate_bench.procstat import sample_tree
from tiergate_bench.report import SystemInfo, markdown, run_document, write_results
from tiergate_bench.schedule import Run, run_matrix
from tiergate_bench.slow_streams import SlowStreams, hold_slow_streams
from tiergate_bench.summary import summarize
from tiergate_bench.systems import LITELLM_BIN, System, start_system
from tiergate_bench.targets import evaluate
from tiergate_bench.upstream import Upstream, start_upstream

__all__ = ["main"]


def say(message: str) -> None:
    """Progress on stderr, so stdout can be the report alone."""
    print(message, file=sys.stderr, flush=True)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _prepare_process(options: Options) -> None:
    """Pin the harness next to the load generator; allow enough fds for the slow streams."""
    os.sched_setaffinity(0, {int(cpu) for cpu in options.load_cpus.split(",")})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, min(hard, 65536)) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # children inherit it
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Ctrl-C even when started in the background by a shell that ignores SIGINT there.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _check_machine(options: Options) -> None:
    missing = [tool for tool in ("nginx", "wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"bench: missing {missing}; run bench/setup.sh (make bench does)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench: needs 2 CPUs (system under test on CPU 1, load on CPU 0)")
    wanted = options.slow_streams + 64
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * wanted:
        raise SystemExit(f"bench: fd limit {soft} is too low for {options.slow_streams} streams")


def _output(argv: list[str]) -> str:
    """The first line a command prints (stdout or stderr), or "?"."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def _meta(options: Options) -> dict[str, Any]:
    repo = BENCH_DIR.parent
    head = _output(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    changed = _output(["git", "-C", str(repo), "status", "--porcelain", "--", "services", "libs"])
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    version = "import importlib.metadata as m; print(m.version('litellm'))"
    litellm_python = str(LITELLM_BIN.parent / "python")
    litellm = _output([litellm_python, "-c", version]) if LITELLM_BIN.exists() else "absent"
    return {
        "utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": f"{os.cpu_count()} x {cpu}, Linux {platform.release()}",
        "git": head + (" + uncommitted changes in services/ or libs/" if changed != "?" else ""),
        "python": platform.python_version(),
        "nginx": _output(["nginx", "-v"]),
        "wrk": _output(["wrk", "-v"]),
        "litellm": litellm,
        "litellm_line": f"LiteLLM {litellm}",
        "argv": sys.argv[1:],
    }


def _start_all(
    options: Options, upstream: Upstream, workdir: Path, systems: list[System]
) -> list[SystemInfo]:
    """Start every variant (appending to `systems`); one that fails is reported, not fatal."""
    infos = []
    for variant in options.variants:
        info = SystemInfo(variant.name, variant.kind, variant.cpus or "any", variant.note)
        if variant.kind == "direct":
            info.cpus = options.load_cpus
        infos.append(info)
        say(f"starting {variant.name} ({variant.kind}, CPUs {info.cpus})")
        started = time.monotonic()
        try:
            systems.append(start_system(variant, upstream, workdir, options.slow_streams))
        except Exception as exc:  # report it and measure the others
            info.start_error = str(exc)
            say(f"  {variant.name} did not start: {exc}")
            continue
        info.started = True
        info.start_s = time.monotonic() - started
    return infos


def _idle(systems: list[System], infos: list[SystemInfo], idle_s: float) -> None:
    """RSS after start and one request per mode, and CPU burnt while idle."""
    by_name = {info.name: info for info in infos}
    before = {s.name: sample_tree(s.root.pid) for s in systems}
    time.sleep(idle_s)
    for system in systems:
        after = sample_tree(system.root.pid)
        info = by_name[system.name]
        info.rss_idle_mib = after.rss / 2**20
        info.idle_cpu_ms_per_s = (after.cpu_s - before[system.name].cpu_s) / idle_s * 1000


def _prime(systems: list[System], options: Options) -> None:
    """Load every system for a while before any measured run.

    Python servers get faster over their first thousands of requests (lazy imports, caches,
    the adaptive interpreter): LiteLLM by about a third in its first ~30 s of load, which the
    short warm-up before each run does not cover.
    """
    if options.prime_s <= 0:
        return
    say(f"priming every system: {options.prime_s:g} s of load per mode at 16 connections")
    for system in systems:
        for mode in options.modes:
            with contextlib.suppress(RuntimeError):  # a failure shows in the measured runs
                run_wrk(
                    system.endpoints[mode],
                    Scenario(mode, 16),
                    options.prime_s,
                    options.load_cpus,
                    options.wrk_timeout_s,
                )


def _slow(systems: list[System], options: Options) -> list[SlowStreams]:
    results = []
    for system in systems:
        if not system.variant.slow_streams or options.slow_streams <= 0:
            continue
        say(f"holding {options.slow_streams} slow streams through {system.name} ...")
        result = hold_slow_streams(system, options.slow_streams, options.drip_seconds)
        say(
            f"  {result.completed}/{result.streams} complete, {result.peak_open} open at once, "
            f"{result.errors} errors {result.error_kinds or ''}, {result.incomplete} incomplete, "
            f"RSS peak {result.rss_peak_mib:.1f} MiB"
        )
        results.append(result)
    return results


def _finish_infos(systems: list[System], infos: list[SystemInfo], runs: list[Run]) -> None:
    by_name = {info.name: info for info in infos}
    for system in systems:
        info = by_name[system.name]
        after = [r.rss_after_mib for r in runs if r.system == system.name and r.rss_after_mib]
        info.rss_max_after_load_mib = max(after) if after else None
        info.rss_end_mib = sample_tree(system.root.pid).rss / 2**20


def _run(options: Options, workdir: Path) -> int:
    meta = _meta(options)
    say(f"bench: work dir {workdir}")
    systems: list[System] = []
    try:
        upstream = start_upstream(workdir, options.load_cpus, options.drip_seconds)
        infos = _start_all(options, upstream, workdir, systems)
        _idle(systems, infos, options.idle_s)
        _prime(systems, options)
        runs = run_matrix(systems, upstream, options, say)
        slow = _slow(systems, options)
        _finish_infos(systems, infos, runs)
    finally:
        stop_all()
    rows = summarize(runs, options)
    idle_rss = {i.name: i.rss_idle_mib for i in infos if i.rss_idle_mib is not None}
    targets = evaluate(rows, idle_rss, slow, options)
    report = markdown(
        meta=meta, runs=runs, rows=rows, infos=infos, slow=slow, targets=targets, options=options
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = run_document(
        meta=meta, options=options, runs=runs, rows=rows, infos=infos, slow=slow, targets=targets
    )
    json_path, md_path = write_results(options.results_dir, stamp, report, document)
    print(report)
    say(f"bench: wrote {json_path} and {md_path}")
    broken = [i.name for i in infos if not i.started] + sorted({r.system for r in runs if r.error})
    if broken:
        say(f"bench: did not start or had failed runs: {', '.join(dict.fromkeys(broken))}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; every process it started is stopped however it ends."""
    options = parse_options(argv)
    _prepare_process(options)
    _check_machine(options)
    workdir = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    workdir.chmod(0o755)  # nginx's workers run as nobody and read the answer files from here
    code = 1
    try:
        code = _run(options, workdir)
    except KeyboardInterrupt:
        say("bench: interrupted; everything it started is stopped")
        code = 130
    finally:
        stop_all()
        if code == 0 and not options.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"bench: configs and logs kept in {workdir}")
    return code
