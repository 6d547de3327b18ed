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

from tiergate_gateway.guard.detector import RepetitionGuard, check_text
from tiergate_gateway.guard.settings import GuardSettings, Trip, TripKind
from tiergate_gateway.guard.watch import AnswerGuard, check_answer

__all__ = [
    "AnswerGuard",
    "GuardSettings",
    "RepetitionGuard",
    "Trip",
    "TripKind",
    "check_answer",
    "check_text",
]
