"""`AnswerGuard`: the detector, run only on answers that repeat themselves at all.

The detector reads every word (~7 µs a delta in Python): on a 20-chunk stream that is a
fifth of the relay's own CPU, for answers that almost never loop. So an answer is first
watched cheaply: at every `PROBE_EVERY` characters of it (at fixed offsets, whatever the
deltas), the `PROBE` characters before that offset are looked for in the `WINDOW` before them
(`str.find` over a shadow of the text with digits, punctuation and ASCII case made alike;
C speed, ~1 µs). Any loop the detector trips on repeats far more than that:
three copies of a sentence, eight of a word, 160 of a character. Prose that repeats no
16-character run never meets the detector; at the first probe that finds one, the detector
reads the whole answer so far and then every delta, as it would have from the start.

Verdicts are the detector's, at the same `end`, and split-invariant: where the probes fall
depends on offsets only, and the detector reads the same text whichever way it arrived. A
loop that repeats less than a probe can see (copies that end within `PROBE_EVERY` characters
of where they began) is caught at the next probe instead.
"""

from __future__ import annotations

from tiergate_gateway.guard.detector import RepetitionGuard
from tiergate_gateway.guard.settings import GuardSettings, Trip

__all__ = ["PROBE", "PROBE_EVERY", "WINDOW", "AnswerGuard", "check_answer"]

_SHADOW = str.maketrans(
    {
        **dict.fromkeys("123456789", "0"),
        **dict.fromkeys(".,;:!?\t\r\n*-…", " "),
        **{chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)},
    }
)
"""What the probes compare: digits alike (list numbers), punctuation and line breaks as
spaces, ASCII case folded; one character for one (`str.lower` is not: "İ" becomes two), so
offsets and splits do not change."""

PROBE = 16
"""Characters looked for (fewer than any loop the detector trips on repeats)."""
PROBE_EVERY = 16
WINDOW = 4096
"""How far back a probe looks (past the detector's longest unit, 2,000 characters)."""


class AnswerGuard:
    """One answer's guard: `feed(delta) -> Trip | None`, as `RepetitionGuard`'s."""

    __slots__ = ("_detector", "_length", "_next_probe", "_parts", "_settings", "_tail", "tripped")

    def __init__(self, settings: GuardSettings) -> None:
        self._settings = settings
        self._parts: list[str] = []
        """Every delta so far: what the detector reads first if it starts."""
        self._tail = ""
        """The last characters of the answer, enough for the next probe."""
        self._length = 0
        self._next_probe = PROBE_EVERY
        self._detector: RepetitionGuard | None = None
        self.tripped: Trip | None = None

    def feed(self, delta: str) -> Trip | None:
        """Add the next delta; the Trip once the answer loops (then always the same)."""
        if self.tripped is not None:
            return self.tripped
        if self._detector is not None:
            self.tripped = self._detector.feed(delta)
            return self.tripped
        self._parts.append(delta)
        self._length += len(delta)
        tail = self._tail + delta.translate(_SHADOW)
        base = self._length - len(tail)  # the answer's offset of tail[0]
        while self._next_probe <= self._length:
            at = self._next_probe - base
            self._next_probe += PROBE_EVERY
            if tail.find(tail[at - PROBE : at], max(at - WINDOW, 0), at - 1) >= 0:
                return self._start()
        keep = WINDOW + PROBE_EVERY  # the next probe looks this far back at most
        self._tail = tail[-keep:] if len(tail) > 2 * keep else tail
        return None

    @property
    def reading(self) -> bool:
        """Whether a probe found a repeat and the detector reads the answer."""
        return self._detector is not None

    def _start(self) -> Trip | None:
        """A probe found a repeat: the detector reads the whole answer, then every delta."""
        self._detector = detector = RepetitionGuard(self._settings)
        text = "".join(self._parts)
        self._parts, self._tail = [], ""
        self.tripped = detector.feed(text)
        return self.tripped


def check_answer(text: str, settings: GuardSettings) -> Trip | None:
    """The verdict on a whole answer: the same `Trip` as feeding it in any pieces."""
    return AnswerGuard(settings).feed(text)
