"""Runaway-repetition guard: spots an answer that loops instead of stopping, while it streams.

Small models (SmolLM2-135M) often miss their end-of-sequence token and repeat themselves
until `max_tokens`: "The server uses a custom configuration. " five times over. The guard
reads the answer delta by delta (`RepetitionGuard.feed`) or whole (`check_text`) and says
where to cut it: the answer becomes `text[:Trip.end]`. Five rules, over recent text only:

1. `sentence`: one sentence, or a cycle of up to 4 (A B A B A B), `sentence_repeats` (3)
   times in a row. Sentences are compared by their words, case-folded, so spacing, case and
   punctuation do not make copies differ, and a list marker opening a line ("1.", "2)", "-",
   "*") is no part of them. A sentence ends at `.` `!` `?` or an ellipsis followed by
   whitespace (closing quotes, brackets or `**` may come between), or at once at a CJK full
   stop, exclamation or question mark. A line that ends inside a sentence ("Here is how:",
   a verse ending in a comma) breaks the chain. The cycle must hold `min_sentence_words` (3)
   words: "Yes. Yes. Yes." is left to the word rules.
2. `line`: one line, or a cycle of up to 8, `line_repeats` (4) times in a row (lists and
   answers without sentence punctuation). Blank lines are skipped. Lines of fenced code
   (``` or ~~~), table rows and lines without a word (`---`, `}`, `|---|`) are compared
   exactly and the loop must also cover `code_line_repeats` (10) lines.
3. `ngram`: a cycle of 2 to 64 words `ngram_repeats` (5) times in a row, covering at least
   `ngram_min_tokens` (16) words: a run-on line without punctuation.
4. `token_run`: one word `token_run` (8) times in a row ("very very very ...").
5. `char_run`: one character `char_run` (160) times in a row (all whitespace counts as one).

Words are runs of letters and digits; in scripts written without spaces (Chinese, Japanese,
Thai) each character is a word, so a phrase looping without spaces is an `ngram` loop.
Rules 1, 3 and 4 skip fenced code and table rows: `[0, 0, 0, 0, 0, 0, 0, 0]` is data.

The defaults would rather let a loop run a little longer than cut a good answer: a loop
left alone costs tokens up to `max_tokens`, a wrong cut loses the answer. Three copies in a
row of a sentence of three or more words do not occur in prose; a line needs a fourth copy,
because verse and lists repeat lines; a run-on phrase, with no punctuation to go by, a fifth;
code repeats lines on purpose, so its loops must run on for ten lines. Deliberately not cut:
near-repetition (list items that share words, templated lines whose number changes), a
refrain with other lines between or twice in a row, "No, no, no.", "ha ha ha", an ellipsis,
Markdown rules and underlines, a loop inside one long word ("ababab..."), and a loop whose
copies change a little each time.

A decision depends only on the text up to the character that makes it, so every split of
a text into deltas gives the `Trip` that `check_text` gives for the whole; the end of the
text is never taken for the end of a sentence or line (a stream cannot know it ended). The
work per delta is linear in its length, and memory is bounded: the last 64 words, 8 lines
and 4 sentences, and the current line and sentence up to 2,000 characters.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

__all__ = ["GuardSettings", "RepetitionGuard", "Trip", "TripKind", "check_text"]

TripKind = Literal["sentence", "line", "ngram", "token_run", "char_run"]

_MAX_SENTENCE_CYCLE = 4
_MAX_LINE_CYCLE = 8
_MAX_NGRAM = 64
_WORD_CAP = 64  # a longer word matches nothing (and makes its line match nothing)
_UNIT_CAP = 2000  # characters kept of the current line and sentence; longer ones match nothing

# Scripts written without spaces: each character is a word (kana, CJK ideographs, Thai).
_NOSPACE = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_TOKEN = re.compile(
    rf"(?P<word>[^\W{_NOSPACE}]+)|(?P<single>[{_NOSPACE}])|(?P<nl>\n)|(?P<space>[^\S\n]+)|.",
    re.DOTALL,
)
_WORD = re.compile(rf"[^\W{_NOSPACE}]+")
_ENDS = frozenset(".!?…")  # end a sentence when whitespace follows
_CJK_ENDS = frozenset("\u3002\uff01\uff1f")  # CJK full stop, ! and ?: end a sentence at once
# Closing quotes, brackets and emphasis may stand between an end mark and the whitespace.
_CLOSERS = frozenset("\"')]}*`\u00bb\u201d\u2019")
_FENCES = ("```", "~~~")

_Repeats = Annotated[int, msgspec.Meta(ge=2, le=1000)]


class GuardSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When an answer counts as a loop and is cut (`[tiers.<name>.guard]`; rules in guard.py)."""

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


class _Cycles:
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


class _Ngrams:
    """The last `_MAX_NGRAM` words, and for each period k how many words in a row equal the
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
        if len(self._window) > _MAX_NGRAM:
            old = self._window.popleft()
            if old is not None:
                held = self._where[old]
                del held[0]
                if not held:
                    del self._where[old]
        return runs


class _Words:
    """The words of the sentence or line being read, up to `_UNIT_CAP` characters."""

    __slots__ = ("long", "size", "words")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.size = 0
        self.long = False  # longer than the cap, or a word too long: matches nothing

    def add_word(self, word: str) -> None:
        if self.size > _UNIT_CAP:
            self.long = True
        else:
            self.words.append(word)
            self.size += len(word) + 1

    def drop_word(self, word: str) -> None:
        if self.words and self.words[-1] == word:
            self.words.pop()
            self.size -= len(word) + 1


class _Line(_Words):
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
        if self.text_size <= _UNIT_CAP:
            self.parts.append(text[: _UNIT_CAP + 1 - self.text_size])
        self.text_size += len(text)


class _Sentence(_Words):
    """The sentence being read: also whether an end mark ("end") or a list marker ("marker")
    waits for the whitespace that confirms it."""

    __slots__ = ("end_at", "pending")

    def __init__(self) -> None:
        super().__init__()
        self.pending = ""
        self.end_at = 0  # with "end": the offset after the end mark and its closers


class RepetitionGuard:
    """Watches one answer, delta by delta; `feed` returns a `Trip` once it loops."""

    def __init__(self, settings: GuardSettings) -> None:
        self._settings = settings
        self._trip: Trip | None = None
        self._fed = 0
        limit = settings.char_run
        self._long_run = re.compile(rf"\s{{{limit},}}|(\S)\1{{{limit - 1},}}")
        need = [
            max(settings.ngram_repeats * k, settings.ngram_min_tokens)
            for k in range(_MAX_NGRAM + 1)
        ]
        need[1] = settings.token_run
        self._ngram_need = need
        self._run_char = ""  # the character the text ends in (" ": any whitespace) ...
        self._run_len = 0  # ... and how many times in a row
        self._word: list[str] = []  # a word still being read when the last delta ended
        self._word_len = 0
        self._in_code = False
        self._line = _Line()
        self._sentence = _Sentence()
        self._lines = _Cycles(_MAX_LINE_CYCLE)
        self._sentences = _Cycles(_MAX_SENTENCE_CYCLE)
        self._ngrams = _Ngrams()

    @property
    def tripped(self) -> Trip | None:
        """The trip, once the answer was found looping; None before."""
        return self._trip

    def feed(self, delta: str) -> Trip | None:
        """Read the next piece of the answer; the `Trip` once (and after) it loops."""
        if self._trip is not None or not delta or not self._settings.enabled:
            return self._trip
        base = self._fed
        self._fed += len(delta)
        char_at = self._char_runs(delta, base)
        trip = self._scan(delta, base, char_at if char_at >= 0 else self._fed + 1)
        if trip is None and char_at >= 0:
            trip = Trip("char_run", char_at + 1)
        self._trip = trip
        return trip

    # -- characters ----------------------------------------------------------------------------

    def _char_runs(self, delta: str, base: int) -> int:
        """The offset of the character that completes a `char_run`, or -1."""
        limit, char = self._settings.char_run, self._run_char
        lead = 0  # how far the run the text ended in goes on
        if char:
            rest = delta.lstrip() if char == " " else delta.lstrip(char)
            lead = len(delta) - len(rest)
        if lead:
            if self._run_len + lead >= limit:
                return base + limit - self._run_len - 1
            if lead == len(delta):
                self._run_len += lead
                return -1
        found = self._long_run.search(delta, lead)
        if found is not None:
            return base + found.start() + limit - 1
        last = delta[-1]
        self._run_char = " " if last.isspace() else last
        rest = delta.rstrip() if last.isspace() else delta.rstrip(last)
        self._run_len = len(delta) - len(rest)
        return -1

    # -- tokens: words, whitespace, newlines, punctuation --------------------------------------

    def _scan(self, delta: str, base: int, stop: int) -> Trip | None:
        """Read the tokens of `delta` decided before offset `stop` (a `char_run` there comes
        first). A word is decided by the character after it, the rest at once."""
        start = line_from = 0  # delta[line_from:] is not yet in the current line's text
        if self._word_len:
            start, trip = self._continue_word(delta, base, stop)
            if trip is not None or start < 0:
                return trip
        for m in _TOKEN.finditer(delta, start):
            kind, text = m.lastgroup, m.group()
            if kind == "word" and m.end() == len(delta):
                self._carry(text)  # it may go on in the next delta
                break
            at = base + (m.end() if kind == "word" else m.start())
            if at >= stop:
                return None
            if kind == "nl":
                self._line.add(delta[line_from : m.start()])
                line_from = m.end()
            trip = self._token(kind, text, at)
            if trip is not None:
                return trip
        self._line.add(delta[line_from:])
        return None

    def _continue_word(self, delta: str, base: int, stop: int) -> tuple[int, Trip | None]:
        """The last delta ended inside a word: read its rest. Where the next token starts
        (-1: nothing more to read in `delta`), and a trip."""
        head = _WORD.match(delta)
        start = 0 if head is None else head.end()
        if head is not None:
            self._carry(head.group())
        if start == len(delta):
            self._line.add(delta)
            return -1, None
        if base + start >= stop:
            return -1, None
        return start, self._end_word("".join(self._word), self._word_len, base + start)

    def _carry(self, text: str) -> None:
        if self._word_len <= _WORD_CAP:
            self._word.append(text[: _WORD_CAP + 1 - self._word_len])
        self._word_len += len(text)

    def _token(self, kind: str | None, text: str, at: int) -> Trip | None:
        """One token, decided at offset `at`."""
        if kind == "word":
            return self._end_word(text, len(text), at)
        if kind == "space":
            return self._resolve()
        if kind == "nl":
            trip = self._resolve()
            self._break_sentence()
            return trip or self._end_line(at)
        if kind == "single":
            self._line.started = True
            return self._on_word(text, at + 1)
        return self._on_punct(text, at)

    def _end_word(self, text: str, length: int, end: int) -> Trip | None:
        self._word, self._word_len = [], 0
        self._line.started = True
        if length <= _WORD_CAP:
            return self._on_word(text, end)
        self._line.long, self._sentence.pending = True, ""  # so long a word matches nothing
        if self._skip:
            return None
        self._sentence.long = True
        return self._on_ngram(None, end)

    def _on_word(self, text: str, end: int) -> Trip | None:
        """A word (or one character of a script without spaces) that ends at `end`."""
        self._sentence.pending = ""  # a word right after an end mark: "3.14", "e.g"
        word = text.casefold()
        self._line.add_word(word)
        if self._skip:
            return None
        self._sentence.add_word(word)
        return self._on_ngram(word, end)

    def _on_ngram(self, word: str | None, end: int) -> Trip | None:
        need, shortest = self._ngram_need, 0
        for period, run in self._ngrams.push(word).items():
            if run + period >= need[period] and (not shortest or period < shortest):
                shortest = period
        if not shortest:
            return None
        return Trip("token_run" if shortest == 1 else "ngram", end)

    def _on_punct(self, char: str, at: int) -> Trip | None:
        line, sentence = self._line, self._sentence
        if not line.started:
            line.started = True
            if char == "|" and not self._in_code:
                line.table = True
                self._reset_prose()
                sentence = self._sentence
        if sentence.pending == "end" and (char in _ENDS or char in _CLOSERS):
            sentence.end_at = at + 1
            return None
        sentence.pending = ""
        other, line.other = line.other, True
        if self._skip:
            return None
        if char in ".)" and not other and len(line.words) == 1 and _is_list_number(line.words[0]):
            sentence.pending = "marker"  # "1." or "2)" opening a line, if whitespace follows
        elif char in _ENDS:
            sentence.pending, sentence.end_at = "end", at + 1
        elif char in _CJK_ENDS:
            return self._end_sentence(at + 1)
        return None

    def _resolve(self) -> Trip | None:
        """Whitespace came: a pending end mark ends the sentence, a pending "1." is a marker."""
        sentence = self._sentence
        pending, sentence.pending = sentence.pending, ""
        if pending == "end":
            return self._end_sentence(sentence.end_at)
        if pending == "marker":
            number = self._line.words[-1]
            self._line.drop_word(number)
            sentence.drop_word(number)
        return None

    @property
    def _skip(self) -> bool:
        """Inside fenced code or a table row: no sentences, no word rules."""
        return self._in_code or self._line.table

    def _reset_prose(self) -> None:
        self._sentence = _Sentence()
        self._sentences = _Cycles(_MAX_SENTENCE_CYCLE)
        self._ngrams = _Ngrams()

    # -- sentences -----------------------------------------------------------------------------

    def _break_sentence(self) -> None:
        """A line ended inside a sentence ("Here is how:", a verse ending in a comma): its
        words are no sentence, and what comes next is no repeat of the sentence before."""
        if self._sentence.words or self._sentence.long:
            self._sentence = _Sentence()
            self._sentences.push(None, 0)

    def _end_sentence(self, end: int) -> Trip | None:
        done, self._sentence = self._sentence, _Sentence()
        if not done.words and not done.long:
            return None  # "..." alone, "!!!"
        sentences, settings = self._sentences, self._settings
        sentences.push(None if done.long else " ".join(done.words), len(done.words))
        for k, covered in sentences.repeats():
            long_enough = sentences.weight(k) >= settings.min_sentence_words
            if covered >= settings.sentence_repeats * k and long_enough:
                return Trip("sentence", end)
        return None

    # -- lines ---------------------------------------------------------------------------------

    def _end_line(self, at: int) -> Trip | None:
        done, self._line = self._line, _Line()
        raw = "".join(done.parts)
        stripped = raw.strip()
        if not stripped:
            return None
        fence = stripped.startswith(_FENCES)
        strict = False
        key: str | None
        if done.long or done.text_size > _UNIT_CAP:
            key = None
        elif fence or self._in_code:
            key = "code:" + raw.rstrip()
        elif done.table:
            key = "table:" + " ".join(stripped.split())
        elif not done.words:
            key = "mark:" + stripped
        else:
            key, strict = "text:" + " ".join(done.words), True
        if fence:
            self._in_code = not self._in_code
            if self._in_code:
                self._reset_prose()
        lines, settings = self._lines, self._settings
        lines.push(key, int(strict))
        for k, covered in lines.repeats():
            need = settings.line_repeats * k
            if not lines.weight(k):  # no line of prose in the cycle
                need = max(need, settings.code_line_repeats)
            if covered >= need:
                return Trip("line", at)
        return None


def _is_list_number(word: str) -> bool:
    return len(word) <= 3 and word.isdigit()


def check_text(text: str, settings: GuardSettings) -> Trip | None:
    """The verdict on a whole answer: the same `Trip` as feeding it in any pieces."""
    return RepetitionGuard(settings).feed(text)
