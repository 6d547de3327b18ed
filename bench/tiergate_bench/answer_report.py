"""The answer scenario's report: Markdown from the run's summaries (`answer.py` measures)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tiergate_bench.answer_score import Question

__all__ = ["markdown"]

ROOT = Path(__file__).resolve().parents[2]
# The targets (issue 12).
TARGET_GROUNDED_MS = 1500.0
TARGET_UNGROUNDED_MS = 400.0
TARGET_DECISION_PCT = 90.0


def _shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _pct(rate: dict[str, Any]) -> str:
    return "-" if rate["pct"] is None else f"{rate['pct']:.0f}% ({rate['ok']}/{rate['n']})"


def _verdict(value: float | None, target: float, *, at_most: bool = True) -> str:
    if value is None:
        return "n/a"
    return "MET" if (value <= target if at_most else value >= target) else "MISS"


def _model_section(info: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    g, u = summary["classes"]["grounded"], summary["classes"]["ungrounded"]
    decision = summary["grounding_decision"]
    size = info.get("size_mib")
    lines = [
        f"### {info['model']} ({info['licence']}, {'-' if size is None else f'{size:.0f} MiB'})",
        "",
        "| class | answers | TTFT p50 ms | TTFT p90 ms | target | prompt tokens (median) "
        "| warm-cache TTFT p50 / p90 ms |",
        "|---|--:|--:|--:|--|--:|--:|",
    ]
    for name, cls, target in (
        ("grounded", g, TARGET_GROUNDED_MS),
        ("ungrounded", u, TARGET_UNGROUNDED_MS),
    ):
        lines.append(
            f"| {name} | {cls['answers']} | {_ms(cls['ttft_ms']['p50'])} | "
            f"{_ms(cls['ttft_ms']['p90'])} | ≤ {target:,.0f}: "
            f"{_verdict(cls['ttft_ms']['p50'], target)} | {_ms(cls['prompt_tokens_median'])} | "
            f"{_ms(cls['warm_ttft_ms']['p50'])} / {_ms(cls['warm_ttft_ms']['p90'])} |"
        )
    tps = summary["tokens_per_s_median"]
    lines += [
        "",
        f"- grounding decision: {_pct(decision)} correct (target ≥ {TARGET_DECISION_PCT:.0f}%: "
        f"{_verdict(decision['pct'], TARGET_DECISION_PCT, at_most=False)}); wrong: "
        f"{', '.join(decision['wrong']) or 'none'}",
        f"- fact {_pct(summary['fact'])}, citation {_pct(summary['citation'])} (grounded "
        f"answers), looped {_pct(summary['looped'])} (guard cut {summary['guard_cut']}; "
        f"finish_reason length {summary['finish_length']}), right language "
        f"{_pct(summary['language'])} ({summary['language_undetermined']} undetermined)",
        f"- tokens/s median {'-' if tps is None else f'{tps:.1f}'}; failed requests "
        f"{summary['failed']} (+{summary['failed_warm']} in the warm pass)",
        "",
    ]
    return lines


def _comparison(models: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    lines = [
        "| model | licence | size MiB | grounded TTFT p50 ms | ungrounded TTFT p50 ms | tok/s "
        "| decision % | fact % | citation % | loop % | language % |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for info, s in models:
        c = s["classes"]

        def pct(rate: dict[str, Any]) -> str:
            return "-" if rate["pct"] is None else f"{rate['pct']:.0f}"

        size = info.get("size_mib")
        tps = s["tokens_per_s_median"]
        lines.append(
            f"| {info['model']} | {info['licence']} | {'-' if size is None else f'{size:.0f}'} | "
            f"{_ms(c['grounded']['ttft_ms']['p50'])} | {_ms(c['ungrounded']['ttft_ms']['p50'])} | "
            f"{'-' if tps is None else f'{tps:.1f}'} | {pct(s['grounding_decision'])} | "
            f"{pct(s['fact'])} | {pct(s['citation'])} | {pct(s['looped'])} | "
            f"{pct(s['language'])} |"
        )
    return [*lines, ""]


def markdown(
    stamp: str,
    args: argparse.Namespace,
    models: list[tuple[dict[str, Any], dict[str, Any]]],
    questions: list[Question],
) -> str:
    """The report of one run: the header, the comparison (several models), each model."""
    grounded = sum(q.ground for q in questions)
    lines = [
        f"# The anonymous answer — {stamp}",
        "",
        f'`make bench ARGS="answer {" ".join(args.argv)}"`: {len(questions)} questions '
        f"({grounded} that the corpus answers, {len(questions) - grounded} that it does not; "
        f"`{_shown(args.questions)}`), {args.rounds} round(s), cpu-llm and the gateway restarted "
        f"each round (empty prompt cache), 1 engine thread, streamed, temperature 0, seed 0, "
        f"max_tokens {args.max_tokens}. TTFT: median over rounds of each round's p50 / p90, "
        "by what the gateway did (grounded or not); warm cache: each question asked right "
        "after the same question. rag's first search after its start (before the set, "
        f"not counted): {args.rag_first_search_ms:,.0f} ms.",
        "",
    ]
    if len(models) > 1:
        lines += ["## Comparison", "", *_comparison(models)]
    for info, summary in models:
        lines += _model_section(info, summary)
    return "\n".join(lines) + "\n"
