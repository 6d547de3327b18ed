"""Command-line options: durations, rounds, connection counts, scenarios and systems to run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tiergate_bench.variants import Roles, Variant, load_variants

__all__ = ["BENCH_DIR", "Mode", "Options", "Scenario", "parse_options"]

BENCH_DIR = Path(__file__).resolve().parent.parent
Mode = Literal["json", "sse"]
MODES: tuple[Mode, ...] = ("json", "sse")


@dataclass(frozen=True)
class Scenario:
    """One load shape: non-streaming or streaming, at a number of connections."""

    mode: Mode
    connections: int

    @property
    def key(self) -> str:
        """Short name, e.g. `sse-c64`."""
        return f"{self.mode}-c{self.connections}"


@dataclass(frozen=True)
class Options:
    """Everything one benchmark run is told."""

    rounds: int
    duration_s: float
    warmup_s: float
    connections: tuple[int, ...]
    modes: tuple[Mode, ...]
    variants: tuple[Variant, ...]
    roles: Roles
    slow_streams: int
    drip_seconds: float
    idle_s: float
    prime_s: float
    wrk_timeout_s: float
    load_cpus: str
    results_dir: Path
    keep_workdir: bool
    quick: bool

    def scenarios(self) -> list[Scenario]:
        """Every (mode, connections) pair, streaming after non-streaming."""
        return [Scenario(mode, c) for mode in self.modes for c in self.connections]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _pick(variants: list[Variant], wanted: str | None) -> tuple[Variant, ...]:
    """Enabled variants, or those named in `wanted` (`+name` adds one to the enabled ones)."""
    by_name = {variant.name: variant for variant in variants}
    enabled = [variant for variant in variants if variant.enabled]
    if not wanted:
        return tuple(enabled)
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    extra = [name[1:] for name in names if name.startswith("+")]
    only = [name for name in names if not name.startswith("+")]
    unknown = [name for name in extra + only if name not in by_name]
    if unknown:
        raise SystemExit(f"bench: unknown systems {unknown}; listed: {sorted(by_name)}")
    chosen = [by_name[name] for name in only] if only else enabled
    chosen += [by_name[name] for name in extra if by_name[name] not in chosen]
    return tuple(chosen)


def parse_options(argv: list[str] | None = None) -> Options:
    """Options from the command line (see `--help`)."""
    parser = argparse.ArgumentParser(
        prog="python -m tiergate_bench",
        description="Measure tiergate's gateway against direct, nginx and LiteLLM.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 3 s, c=1,64")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 8)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each run (2)")
    parser.add_argument("--connections", type=_ints, help="e.g. 1,16,64,256 (the default)")
    parser.add_argument("--modes", help="json,sse (the default)")
    parser.add_argument("--systems", help="names from systems.toml; +name adds a disabled one")
    parser.add_argument("--systems-file", type=Path, default=BENCH_DIR / "systems.toml")
    parser.add_argument("--slow-streams", type=int, default=1000, help="0 skips them (1000)")
    parser.add_argument("--drip-seconds", type=float, help="length of one slow stream (15)")
    parser.add_argument("--idle", type=float, default=3.0, help="idle seconds before RSS/CPU")
    parser.add_argument(
        "--prime", type=float, help="seconds of load per mode on each system before runs (8)"
    )
    parser.add_argument("--wrk-timeout", type=float, default=20.0, help="wrk --timeout seconds")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)

    variants, roles = load_variants(args.systems_file)
    modes = tuple(m.strip() for m in (args.modes or "json,sse").split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad:
        parser.error(f"unknown modes {bad}; known: {MODES}")
    quick = bool(args.quick)
    default_connections = (1, 64) if quick else (1, 16, 64, 256)
    return Options(
        rounds=args.rounds or (1 if quick else 3),
        duration_s=args.duration or (3.0 if quick else 8.0),
        warmup_s=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        connections=args.connections or default_connections,
        modes=tuple(m for m in MODES if m in modes),
        variants=_pick(variants, args.systems),
        roles=roles,
        slow_streams=args.slow_streams,
        drip_seconds=args.drip_seconds or (6.0 if quick else 15.0),
        idle_s=args.idle,
        prime_s=args.prime if args.prime is not None else (3.0 if quick else 8.0),
        wrk_timeout_s=args.wrk_timeout,
        load_cpus="0",
        results_dir=args.results_dir,
        keep_workdir=bool(args.keep_workdir),
        quick=quick,
    )
