"""Content filter: a per-tier profanity filter on requests and answers, and moderation.

The words are glin-profanity's (MIT; English, French and German dictionaries by default,
obfuscation-aware: "f.u.c.k", "f u c k", "fück", "sh1t", "@ss"; "Scunthorpe", "assistant",
"cocktail" are not flagged), plus a tier's `extra_words` and `word_files`, minus its
`allow_words` (`settings.py`, `words.py`). Compiled once per tier at start (`filters.py`).

- **Input** (`check.py`), after admission and before decide: the text the model would read;
  a hit is a 400 `content_policy_violation`, and no engine, wake or search sees it.
- **Output, streaming** (`stream.py`, used by `upstream/sse.py`): no flagged word reaches
  the client; the stream ends with `finish_reason: "content_filter"`.
- **Output, whole** (`check.cut_text`): the answer cut before the flagged word.
- **Moderation** (`moderation.py`): `POST /v1/moderations` answered by the same filter.
"""

from tiergate_gateway.content_filter.check import VerdictCache, check_input, cut_text
from tiergate_gateway.content_filter.filters import (
    ContentFilter,
    compile_filters,
    default_filter,
    tier_filter,
)
from tiergate_gateway.content_filter.settings import ContentFilterSettings
from tiergate_gateway.content_filter.stream import ChoiceFilter
from tiergate_gateway.content_filter.words import WordFilter

__all__ = [
    "ChoiceFilter",
    "ContentFilter",
    "ContentFilterSettings",
    "VerdictCache",
    "WordFilter",
    "check_input",
    "compile_filters",
    "cut_text",
    "default_filter",
    "tier_filter",
]
