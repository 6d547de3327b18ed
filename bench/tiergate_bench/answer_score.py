"""Scoring and summing up the answer scenario's rows (pure: no I/O, no clock).

A row is one streamed answer as the client saw it (`Row`). Each is scored against its
question (`Question`, from `evals/answer.toml`):

- grounding decision correct: `x-tiergate-grounding` starts with `grounded` exactly when the
  question's `ground` is true;
- fact correct: the answer contains one of `facts` (case-insensitive); None when the question
  lists none (a greeting, a poem);
- citation valid (grounded answers only): cites at least one `[n]`, and every `[n]` is between
  1 and the number of sources in `x-tiergate-sources`;
- looped: the gateway's guard cut it (`tiergate_guard` in a chunk), or, after the fact, one
  sentence of 20+ characters occurs 3+ times or a phrase repeats back to back;
- right language (answers of 20+ characters): lingua, as the gateway builds it, finds the
  question's language.

`summarize` turns one model's rows into the report's figures: time to first token by class
(the class is what the gateway did: grounded or not), medians over rounds of each round's p50
and p90, and the rates over every scored row. Prompt tokens and tokens/s leave out answers the
guard cut: their usage is the gateway's estimate, not the engine's count.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Question",
    "Row",
    "cited_numbers",
    "looped_after_the_fact",
    "percentile",
    "score",
    "summarize",
]

_CITATION = re.compile(r"\[(\d{1,3})\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
MIN_REPEATED_CHARS = 20
REPEATS_FOR_A_LOOP = 3
MIN_LANGUAGE_CHARS = 20
MIN_RUN_CHARS = 40
_RUN = re.compile(r"(.{2,60}?)\1{3,}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Question:
    """One entry of `evals/answer.toml` (the file's header documents the fields)."""

    id: str
    lang: str
    question: str
    ground: bool
    facts: tuple[str, ...] = ()
    source: str | None = None
    note: str | None = None


@dataclass(slots=True)
class Row:
    """One request: what was sent, what came back, and its scores (filled by `score`)."""

    model: str
    round: int
    """0, 1, …; -1 for the warm-cache pass."""
    id: str
    lang: str
    expected_ground: bool
    status: int | None = None
    error: str | None = None
    ttft_s: float | None = None
    total_s: float | None = None
    grounding: str | None = None
    sources: list[str] = field(default_factory=list)
    answer: str = ""
    finish_reason: str | None = None
    guard: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None
    grounded: bool | None = None
    grounding_correct: bool | None = None
    fact_correct: bool | None = None
    citation_valid: bool | None = None
    looped: bool | None = None
    detected_lang: str | None = None
    language_correct: bool | None = None


def cited_numbers(text: str) -> list[int]:
    """Every `[n]` in `text`, in order."""
    return [int(n) for n in _CITATION.findall(text)]


def looped_after_the_fact(text: str) -> bool:
    """One sentence (or line) of 20+ characters occurring 3+ times, or a run: a piece of
    text (2 to 60 characters, two of them letters or digits) repeated back to back 4+ times over
    40+ characters (`Aufwahl: "Aufwahl: "…`, `la femme, la femme, …`), which has no sentence
    end to split on."""
    for run in _RUN.finditer(" ".join(text.split())):
        if len(run[0]) >= MIN_RUN_CHARS and sum(c.isalnum() for c in run[1]) >= 2:
            return True
    counts: dict[str, int] = {}
    for sentence in _SENTENCE_END.split(text):
        key = " ".join(sentence.split()).lower()
        if len(key) >= MIN_REPEATED_CHARS:
            counts[key] = counts.get(key, 0) + 1
            if counts[key] >= REPEATS_FOR_A_LOOP:
                return True
    return False


def score(row: Row, question: Question, detect: Callable[[str], str | None]) -> Row:
    """Fill `row`'s scores from its answer and headers; returns `row`."""
    if row.status != 200 or row.error is not None:
        return row
    row.grounded = (row.grounding or "").startswith("grounded")
    row.grounding_correct = row.grounded == question.ground
    text = row.answer.casefold()
    if question.facts:
        row.fact_correct = any(fact.casefold() in text for fact in question.facts)
    if row.grounded:
        cited = cited_numbers(row.answer)
        row.citation_valid = bool(cited) and all(1 <= n <= len(row.sources) for n in cited)
    row.looped = row.guard is not None or looped_after_the_fact(row.answer)
    if len(row.answer.strip()) >= MIN_LANGUAGE_CHARS:
        row.detected_lang = detect(row.answer)
        row.language_correct = row.detected_lang == question.lang
    return row


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _rate(values: Sequence[bool | None]) -> dict[str, Any]:
    scored = [v for v in values if v is not None]
    good = sum(1 for v in scored if v)
    return {"n": len(scored), "ok": good, "pct": 100 * good / len(scored) if scored else None}


def _ttft_by_round(rows: Sequence[Row], grounded: bool) -> dict[str, float | None]:
    """Median over rounds of each round's p50 and p90 time to first token, in ms."""
    p50s, p90s = [], []
    for number in sorted({r.round for r in rows}):
        ttfts = [
            r.ttft_s * 1000
            for r in rows
            if r.round == number and r.grounded is grounded and r.ttft_s is not None
        ]
        if ttfts:
            p50s.append(statistics.median(ttfts))
            p90s.append(percentile(ttfts, 0.9) or 0.0)
    return {"p50": _median(p50s), "p90": _median(p90s), "rounds": float(len(p50s))}


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """One model's figures from its measured rows (rounds ≥ 0) and warm-pass rows (-1)."""
    measured = [r for r in rows if r.round >= 0]
    warm = [r for r in rows if r.round < 0]
    ok = [r for r in measured if r.grounded is not None]
    wrong = sorted({r.id for r in ok if not r.grounding_correct})
    by_class: dict[str, Any] = {}
    for name, grounded in (("grounded", True), ("ungrounded", False)):
        mine = [r for r in ok if r.grounded is grounded]
        warm_ttft = [r.ttft_s * 1000 for r in warm if r.grounded is grounded and r.ttft_s]
        by_class[name] = {
            "answers": len(mine),
            "ttft_ms": _ttft_by_round(measured, grounded),
            "prompt_tokens_median": _median(
                [r.prompt_tokens for r in mine if r.prompt_tokens and r.guard is None]
            ),
            "warm_ttft_ms": {"p50": _median(warm_ttft), "p90": percentile(warm_ttft, 0.9)},
        }
    return {
        "requests": len(measured),
        "failed": len([r for r in measured if r.grounded is None]),
        "failed_warm": len([r for r in warm if r.grounded is None]),
        "classes": by_class,
        "grounding_decision": {**_rate([r.grounding_correct for r in ok]), "wrong": wrong},
        "fact": _rate([r.fact_correct for r in ok]),
        "citation": _rate([r.citation_valid for r in ok]),
        "looped": _rate([r.looped for r in ok]),
        "guard_cut": len([r for r in ok if r.guard is not None]),
        "finish_length": len([r for r in ok if r.finish_reason == "length"]),
        "language": _rate([r.language_correct for r in ok]),
        "language_undetermined": len(
            [r for r in ok if r.language_correct is False and r.detected_lang is None]
        ),
        "tokens_per_s_median": _median(
            [r.tokens_per_s for r in ok if r.tokens_per_s and r.guard is None]
        ),
    }
