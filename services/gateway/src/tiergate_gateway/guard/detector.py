"""`RepetitionGuard`: the rules of the package docstring, applied delta by delta."""

from __future__ import annotations

import re

from tiergate_gateway.guard.settings import GuardSettings, Trip
from tiergate_gateway.guard.units import MAX_NGRAM, UNIT_CAP, Cycles, Line, Ngrams, Sentence

__all__ = ["RepetitionGuard", "check_text"]

_MAX_SENTENCE_CYCLE = 4
_MAX_LINE_CYCLE = 8
_WORD_CAP = 64  # a longer word matches nothing (and makes its line match nothing)

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


class RepetitionGuard:
    """Watches one answer, delta by delta; `feed` returns a `Trip` once it loops."""

    def __init__(self, settings: GuardSettings) -> None:
        self._settings = settings
        self._trip: Trip | None = None
        self._fed = 0
        limit = settings.char_run
        self._long_run = re.compile(rf"\s{{{limit},}}|(\S)\1{{{limit - 1},}}")
        need = [
            max(settings.ngram_repeats * k, settings.ngram_min_tokens) for k in range(MAX_NGRAM + 1)
        ]
        need[1] = settings.token_run
        self._ngram_need = need
        self._run_char = ""  # the character the text ends in (" ": any whitespace) ...
        self._run_len = 0  # ... and how many times in a row
        self._word: list[str] = []  # a word still being read when the last delta ended
        self._word_len = 0
        self._in_code = False
        self._line = Line()
        self._sentence = Sentence()
        self._lines = Cycles(_MAX_LINE_CYCLE)
        self._sentences = Cycles(_MAX_SENTENCE_CYCLE)
        self._ngrams = Ngrams()

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
        self._sentence = Sentence()
        self._sentences = Cycles(_MAX_SENTENCE_CYCLE)
        self._ngrams = Ngrams()

    # -- sentences -----------------------------------------------------------------------------

    def _break_sentence(self) -> None:
        """A line ended inside a sentence ("Here is how:", a verse ending in a comma): its
        words are no sentence, and what comes next is no repeat of the sentence before."""
        if self._sentence.words or self._sentence.long:
            self._sentence = Sentence()
            self._sentences.push(None, 0)

    def _end_sentence(self, end: int) -> Trip | None:
        done, self._sentence = self._sentence, Sentence()
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
        done, self._line = self._line, Line()
        raw = "".join(done.parts)
        stripped = raw.strip()
        if not stripped:
            return None
        fence = stripped.startswith(_FENCES)
        strict = False
        key: str | None
        if done.long or done.text_size > UNIT_CAP:
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
