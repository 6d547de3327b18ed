"""What the detector remembers: recent sentences and lines and how their cycles repeat,
recent words and their periods, the words of the sentence or line being read."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

__all__ = ["MAX_NGRAM", "UNIT_CAP", "Cycles", "Line", "Ngrams", "Sentence", "Words"]

MAX_NGRAM = 64
"""The longest word cycle watched (and the words kept to watch it)."""
UNIT_CAP = 2000
"""Characters kept of the current line and sentence; longer ones match nothing."""


class Cycles:
    """Recent units (sentences, lines) and how far each cycle of 1..`longest` units repeats."""

    __slots__ = ("_keys", "_runs", "_weights")

    def __init__(self, longest: int) -> None:
        self._keys: deque[str | None] = deque(maxlen=longest)
        self._weights: deque[int] = deque(maxlen=longest)
        self._runs = [0] * (longest + 1)  # _runs[k]: units in a row equal to the one k before

    def push(self, key: str | None, weight: int) -> None:
        """Add a unit; a None key (too long to compare) matches nothing."""
        keys, runs = self._keys, self._runs
        held = len(keys)
        for k in range(1, len(runs)):
            match = key is not None and k <= held and keys[-k] == key
            runs[k] = runs[k] + 1 if match else 0
        keys.append(key)
        self._weights.append(weight)

    def repeats(self) -> Iterator[tuple[int, int]]:
        """(cycle length k, units the repeating cycle covers) for each k that repeats."""
        for k in range(1, len(self._runs)):
            if self._runs[k]:
                yield k, self._runs[k] + k

    def weight(self, k: int) -> int:
        """The total weight of the last `k` units (one cycle)."""
        return sum(self._weights[-i] for i in range(1, k + 1))


class Ngrams:
    """The last `MAX_NGRAM` words, and for each period k how many words in a row equal the
    word k before them (only periods that currently repeat are kept)."""

    __slots__ = ("_count", "_runs", "_where", "_window")

    def __init__(self) -> None:
        self._window: deque[str | None] = deque()
        self._where: dict[str, list[int]] = {}  # word -> its indexes within the window
        self._runs: dict[int, int] = {}
        self._count = 0

    def push(self, word: str | None) -> dict[int, int]:
        """Add a word; the repeating periods and their runs (None matches nothing)."""
        index = self._count
        runs: dict[int, int] = {}
        if word is not None:
            positions = self._where.setdefault(word, [])
            for position in positions:
                period = index - position
                runs[period] = self._runs.get(period, 0) + 1
            positions.append(index)
        self._runs = runs
        self._window.append(word)
        self._count += 1
        if len(self._window) > MAX_NGRAM:
            old = self._window.popleft()
            if old is not None:
                held = self._where[old]
                del held[0]
                if not held:
                    del self._where[old]
        return runs


class Words:
    """The words of the sentence or line being read, up to `UNIT_CAP` characters."""

    __slots__ = ("long", "size", "words")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.size = 0
        self.long = False  # longer than the cap, or a word too long: matches nothing

    def add_word(self, word: str) -> None:
        if self.size > UNIT_CAP:
            self.long = True
        else:
            self.words.append(word)
            self.size += len(word) + 1

    def drop_word(self, word: str) -> None:
        if self.words and self.words[-1] == word:
            self.words.pop()
            self.size -= len(word) + 1


class Line(Words):
    """The line being read: also its text, and what it opened with."""

    __slots__ = ("other", "parts", "started", "table", "text_size")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.text_size = 0
        self.started = False  # anything but whitespace yet
        self.other = False  # punctuation yet (then "1." is no list marker)
        self.table = False  # a table row: opens with "|"

    def add(self, text: str) -> None:
        if self.text_size <= UNIT_CAP:
            self.parts.append(text[: UNIT_CAP + 1 - self.text_size])
        self.text_size += len(text)


class Sentence(Words):
    """The sentence being read: also whether an end mark ("end") or a list marker ("marker")
    waits for the whitespace that confirms it."""

    __slots__ = ("end_at", "pending")

    def __init__(self) -> None:
        super().__init__()
        self.pending = ""
        self.end_at = 0  # with "end": the offset after the end mark and its closers
