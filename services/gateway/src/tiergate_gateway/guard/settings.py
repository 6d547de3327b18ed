"""The guard's thresholds (`[tiers.<name>.guard]`) and its verdict, `Trip`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

__all__ = ["GuardSettings", "Trip", "TripKind"]

TripKind = Literal["sentence", "line", "ngram", "token_run", "char_run"]

_Repeats = Annotated[int, msgspec.Meta(ge=2, le=1000)]


class GuardSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When an answer counts as a loop and is cut (`[tiers.<name>.guard]`; rules: the package)."""

    enabled: bool = True
    """Watch answers for loops; false: never cut."""
    sentence_repeats: _Repeats = 3
    """Copies in a row of a sentence (or a cycle of up to 4) that end the answer: the original
    and two repeats. Three identical sentences in a row do not occur in prose."""
    min_sentence_words: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    """Words a repeated sentence (or cycle) must hold for `sentence_repeats`; shorter ones
    ("Yes. Yes. Yes.", "I see.") are left to the word rules, which wait longer."""
    line_repeats: _Repeats = 4
    """Copies in a row of a line (or a cycle of up to 8) without sentence punctuation: one
    more than sentences, because verse and lists repeat lines (a chorus: twice)."""
    code_line_repeats: _Repeats = 10
    """Lines a loop of fenced code, table rows or wordless lines (`---`, `}`) must cover (and
    `line_repeats` copies): code repeats lines on purpose, a model's code loop runs on."""
    ngram_repeats: _Repeats = 5
    """Copies in a row of a cycle of 2 to 64 words inside running text (no punctuation to go
    by, so more than for sentences)."""
    ngram_min_tokens: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 16
    """Words such a loop must cover: short cycles ("la di la di", "bye bye") recur in speech
    and lyrics, so a two-word cycle needs eight copies."""
    token_run: _Repeats = 8
    """Copies in a row of one word ("very very ..."); "ha ha ha", "No, no, no." stay."""
    char_run: Annotated[int, msgspec.Meta(ge=8, le=1_000_000)] = 160
    """Copies in a row of one character (all whitespace counts as one): longer than any
    horizontal rule, underline or banner comment (those stay within a 120-column line)."""


@dataclass(frozen=True, slots=True)
class Trip:
    """Where an answer was found looping: keep `text[:end]` of the whole answer.

    `end` is where the loop became certain (after the copy that proved it). Streaming, it
    lies within the delta that tripped: `fed_before <= end <= fed_before + len(delta)`.
    """

    kind: TripKind
    end: int
