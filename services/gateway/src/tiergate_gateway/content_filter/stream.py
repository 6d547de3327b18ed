"""The output filter while an answer streams: no flagged word ever reaches the client.

Per choice (`ChoiceFilter.feed(delta) -> released text`):

1. The trailing partial word is held back: text is released only up to the last whitespace,
   because only the character after a word shows it complete ("ass" may become
   "assistant"). Text without whitespace (CJK, a long URL) is held up to `MAX_HOLD`
   characters, then released but the last `CONTEXT`.
2. The newly completed text is checked together with up to `CONTEXT` characters released
   before it (from a word start), so a phrase or a disguise split over deltas ("f", "u",
   "c", "k" …) is judged as one text; the check costs ~70 µs plus ~5 µs a character, so
   the context is what bounds it.
   After the first release, completed text waits until `batch` characters of it are
   there (`stream_batch_chars`): fewer, longer checks, the same verdicts.
3. Clean: released. Flagged: the text before the flagged word's start is released (when it
   is clean by itself) and the choice is over (`hit`): the stream ends with
   `finish_reason: "content_filter"` (`upstream/sse.py`).
4. `flush()` at the choice's finish (or the stream's end): the held-back rest, checked.

Verdicts and released text do not depend on how the answer was split into deltas for a
flagged word within one whitespace-delimited word (the usual case). A disguise spread over
several words ("f u c k") is caught too, but what was released before its last letter
arrived ("f u c ") depends on the split: the word never appears whole.
"""

from __future__ import annotations

from tiergate_gateway.content_filter.words import WordFilter

__all__ = ["CONTEXT", "MAX_HOLD", "ChoiceFilter"]

CONTEXT = 32
"""Characters of released text checked again with new text (longer than the dictionaries'
phrases as disguised over deltas)."""
MAX_HOLD = 64
"""Characters held without a whitespace before some are released anyway."""


def _trim_context(text: str) -> str:
    """The last CONTEXT characters of `text`, starting at a word start (or empty)."""
    if len(text) <= CONTEXT:
        return text
    tail = text[-CONTEXT:]
    if text[-CONTEXT - 1].isspace():
        return tail
    for i, char in enumerate(tail):
        if char.isspace():
            return tail[i + 1 :]
    return ""


class ChoiceFilter:
    """One choice's output filter; see the module docstring."""

    __slots__ = ("_batch", "_context", "_pending", "_words", "hit", "released")

    def __init__(self, words: WordFilter, batch: int = 0) -> None:
        self._words = words
        self._batch = batch
        self._pending = ""
        self._context = ""
        self.hit = False
        """The answer held a flagged word: nothing more is released."""
        self.released = 0
        """Characters released so far."""

    def feed(self, delta: str) -> str:
        """Add the next content delta; the text to send now (after a hit: always "")."""
        if self.hit:
            return ""
        text = self._pending + delta
        cut = len(text)
        while cut > 0 and not text[cut - 1].isspace():
            cut -= 1
        if cut == 0 and len(text) > MAX_HOLD:
            cut = len(text) - CONTEXT
        if cut == 0 or (self.released and cut < self._batch):
            self._pending = text
            return ""
        self._pending = text[cut:]
        return self._release(text[:cut])

    def flush(self) -> str:
        """The held-back rest, checked: the text to send before the choice's finish."""
        if self.hit or not self._pending:
            return ""
        text, self._pending = self._pending, ""
        return self._release(text)

    def _release(self, text: str) -> str:
        context = self._context
        window = context + text
        if not self._words.flagged(window):
            self._context = _trim_context(window)
            self.released += len(text)
            return text
        self.hit = True
        self._pending = ""
        keep = (self._words.first_hit(window) or 0) - len(context)
        if keep <= 0:
            return ""
        self.released += keep
        return text[:keep]
