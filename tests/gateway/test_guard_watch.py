"""`AnswerGuard`: the detector's verdicts, split-invariant, without reading prose that never
repeats itself (what keeps the guard cheap on the relay's hot path)."""

from __future__ import annotations

import random

import pytest

from tiergate_gateway.guard import AnswerGuard, GuardSettings, Trip, check_answer, check_text

from .test_guard import FUZZ, LOOPS, NEAR_MISSES, PROSE

DEFAULT = GuardSettings()
TEXTS = [loop.text for loop in LOOPS] + list(NEAR_MISSES.values()) + FUZZ


def _pieces(text: str, rng: random.Random) -> list[str]:
    deltas, at = [], 0
    while at < len(text):
        size = rng.choice((1, 2, 3, 4, 5, 8, 13, 40))
        deltas.append(text[at : at + size])
        at += size
    return deltas


def _stream(deltas: list[str]) -> Trip | None:
    guard, trip = AnswerGuard(DEFAULT), None
    for delta in deltas:
        result = guard.feed(delta)
        trip = trip or result
        assert result is trip  # once tripped, the same Trip
    return trip


@pytest.mark.parametrize("loop", LOOPS, ids=[loop.id for loop in LOOPS])
def test_loops_get_the_detectors_verdict(loop: object) -> None:
    text = loop.text  # type: ignore[attr-defined]
    assert check_answer(text, DEFAULT) == check_text(text, DEFAULT)


def test_any_split_gives_the_whole_answers_verdict() -> None:
    rng = random.Random(99)
    for text in TEXTS:
        whole = check_answer(text, DEFAULT)
        assert _stream(list(text)) == whole, text
        for _ in range(8):
            assert _stream(_pieces(text, rng)) == whole, text


def test_near_misses_stay_near_misses() -> None:
    for name, text in NEAR_MISSES.items():
        assert check_answer(text, DEFAULT) is None, name


def test_prose_that_never_repeats_is_not_read_by_the_detector() -> None:
    guard = AnswerGuard(DEFAULT)
    for word in PROSE.split(" "):
        assert guard.feed(word + " ") is None
    # PROSE repeats short phrases ("of the") but no 16-character run.
    assert not guard.reading


def test_a_repeat_starts_the_detector_from_the_answers_start() -> None:
    sentence = "The gateway answers every visitor from the small model. "
    guard = AnswerGuard(DEFAULT)
    trip = None
    for word in ("Intro text first. " + sentence * 4).split(" "):
        trip = trip or guard.feed(word + " ")
    assert guard.reading
    assert trip is not None
    assert trip == check_text("Intro text first. " + sentence * 4, DEFAULT)
