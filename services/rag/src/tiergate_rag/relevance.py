"""How much of a query a hit answers (`relevance`), and the passage of the hit that matched.

BM25 scores are not normalized: their scale moves with the corpus, the query's length and
the words in it, so no fixed score separates "about this corpus" from "not". Relevance is
calibrated per query instead, against the most the query could match:

    relevance(hit) = Σ idf(t) over the query's content terms t that the hit contains
                     ─────────────────────────────────────────────────────────────────
                     Σ idf(t) over all of the query's content terms

- Content terms: the query analysed like the hit's language field (lowercased, stemmed), with
  function words dropped — English, French and German stop words, question words ("what",
  "how", "which"), greetings ("hello", "bonjour", "hallo") — and so are numbers and one-letter
  tokens. "What is the capital of France?" has two content terms: `capit`, `franc`.
- idf is BM25's, `ln(1 + (N - df + 0.5) / (df + 0.5))` over the chunks of that field: a term
  the corpus lacks weighs most (the query asks about something the corpus does not know), a
  term in every chunk weighs nearly nothing.
- The search itself ranks by the content terms too (`content_words`): function words, rare
  in reference text, would otherwise outweigh the topic in BM25.
- So relevance is the share of the query's information the hit holds: 1.0 when the hit has
  every content term, 0.0 when it has none of them or the query has no content term at all.
  It does not depend on the corpus' size or on BM25's scale, so one threshold holds across
  corpora (the gateway's `rag.min_relevance`).
- A question in another language than the chunk's (detected by the service) is foreign to
  it: its words the corpus has never seen are foreign words, not evidence that the corpus
  lacks the topic, so they weigh nothing, and at least two of its content terms must match
  (one shared word such as "simple" or "port" is chance). "Sur quel port écoute le service
  rag de tiergate ?" is then judged by `port`, `servic`, `rag`, `tiergat`.

The passage: a chunk is up to ~1,200 characters, most of them beside the point. `passage()`
splits it into lines and sentences and keeps the window of consecutive ones, at most
`max_chars` long, that holds the most distinct query weight (earliest on a tie), so a small
model's prompt gets the sentences that matched rather than the whole chunk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import tantivy

from tiergate_runtime.text import clip_words

__all__ = ["FUNCTION_WORDS", "QueryTerms", "Relevance", "together"]

# Words that carry no topic, in the languages the index stems. Lucene's short English list
# and tantivy's French and German lists are applied too; these add English question and
# pronoun words (Lucene's list keeps "what", "how", "me") and greetings, so "Hello!" or "Tell
# me a joke" is not matched against a corpus that happens to contain "hello" or "tell".
FUNCTION_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    either else ever every few for from further get gets got had has have having he her here
    hers herself him himself his how however i if in into is it its itself just let like many may
    me might mine more most much must my myself need no nor not now of off on once one only
    or other ought our ours ourselves out over own please quite rather really same shall she
    should so some such than that the their theirs them themselves then there these they
    this those though through thus to too under until up upon us very was we were what
    whatever when whenever where which while who whom whose why will with within without
    would yes yet you your yours yourself yourselves tell explain describe show give know
    times plus minus
    want wanted hello hi hey hiya thanks thank cheers bye goodbye ok okay bonjour salut
    merci coucou hallo moin servus danke tschüss ciao hola
    """.split()  # noqa: SIM905 (a list literal of 200 words is harder to read)
)
_STEMMERS = {"en": "english", "de": "german", "fr": "french"}
_STOP_LANGUAGES = ("english", "french", "german")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+(?=\S)")


def _analyzer(stemmer: str | None, *, stop: bool) -> tantivy.TextAnalyzer:
    # The same pipeline as tantivy's `default` / `<lang>_stem` tokenizers the index uses
    # (simple tokenizer, long tokens dropped, lowercased, then stemmed), so a query term and
    # an indexed term compare equal exactly when the index would match them.
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
    )
    if stop:
        builder = builder.filter(tantivy.Filter.custom_stopword(sorted(FUNCTION_WORDS)))
        for language in _STOP_LANGUAGES:
            builder = builder.filter(tantivy.Filter.stopword(language))
    if stemmer is not None:
        builder = builder.filter(tantivy.Filter.stemmer(stemmer))
    return builder.build()


def _content(term: str) -> bool:
    return len(term) > 1 and not term.isdigit()


class QueryTerms:
    """A query's content terms in one language field, each with its idf."""

    __slots__ = ("_analyzer", "min_matched", "total", "weights")

    def __init__(
        self, weights: dict[str, float], analyzer: tantivy.TextAnalyzer, min_matched: int = 1
    ) -> None:
        self.weights = weights
        self.total = sum(weights.values())
        self.min_matched = min_matched
        """Fewer matching content terms than this is relevance 0 (2 for a foreign query)."""
        self._analyzer = analyzer

    def terms_in(self, text: str) -> set[str]:
        """The query's content terms that `text` contains."""
        weights = self.weights
        return {token for token in self._analyzer.analyze(text) if token in weights}

    def share(self, found: Iterable[str]) -> float:
        """The idf-weighted share of the query's content terms that `found` holds."""
        weights = self.weights
        matched = [weights[t] for t in set(found) if weights.get(t, 0.0) > 0]
        if self.total <= 0 or len(matched) < self.min_matched:
            return 0.0
        return round(sum(matched) / self.total, 4)

    def passage(self, text: str, max_chars: int) -> str:
        """The run of consecutive lines/sentences of `text`, at most `max_chars` long, that
        holds the most distinct query weight (the whole text when it fits)."""
        text = text.strip()
        if len(text) <= max_chars:
            return text
        pieces = _pieces(text)
        found = [self.terms_in(piece) for piece in pieces]
        best: tuple[float, int, int] = (-1.0, 0, 0)  # weight, start, end (exclusive)
        for start in range(len(pieces)):
            terms: set[str] = set()
            length = -1
            for end in range(start, len(pieces)):
                length += len(pieces[end]) + 1
                if length > max_chars and end > start:
                    break
                terms |= found[end]
                weight = sum(self.weights[t] for t in terms)
                if weight > best[0]:
                    best = (weight, start, end + 1)
        _, start, end = best
        passage = "\n".join(pieces[start:end])
        if len(passage) <= max_chars:
            return passage
        return self._around_match(passage, max_chars)

    def _around_match(self, text: str, max_chars: int) -> str:
        """A piece longer than `max_chars`: the words from just before its first matching
        word, as many as fit (ellipses where it was cut)."""
        words = text.split(" ")
        weights = self.weights
        first = next(
            (
                i
                for i, w in enumerate(words)
                if any(t in weights for t in self._analyzer.analyze(w))
            ),
            0,
        )
        start = max(first - 3, 0)
        lead = "\u2026" if start else ""
        return lead + clip_words(" ".join(words[start:]), max_chars - len(lead))


def together(found: Iterable[tuple[QueryTerms, frozenset[str]]]) -> float:
    """The relevance of several hits taken together: the share of the query their terms
    cover jointly (per field, the best field's), since the sources are read together."""
    by_field: dict[int, tuple[QueryTerms, set[str]]] = {}
    for terms, matched in found:
        by_field.setdefault(id(terms), (terms, set()))[1].update(matched)
    return max((terms.share(matched) for terms, matched in by_field.values()), default=0.0)


def _pieces(text: str) -> list[str]:
    """Lines, and long lines cut into sentences."""
    pieces: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.strip():
            pieces.extend(_SENTENCE_END.split(line) if len(line) > 160 else [line])
    return pieces


class Relevance:
    """Analysers for the index's fields, built once; `terms()` per query and field."""

    def __init__(self) -> None:
        self._query = {lang: _analyzer(s, stop=True) for lang, s in _STEMMERS.items()}
        self._text = {lang: _analyzer(s, stop=False) for lang, s in _STEMMERS.items()}
        self._query_any = _analyzer(None, stop=True)
        self._text_any = _analyzer(None, stop=False)

    def content_words(self, query: str) -> str:
        """The query without its function words, numbers and one-letter tokens: what BM25
        ranks by (with them, "how do I" outweighs the topic in a corpus of reference text
        that seldom asks questions). Empty when nothing is left."""
        return " ".join(t for t in self._query_any.analyze(query) if _content(t))

    def terms(
        self,
        query: str,
        language: str,
        field: str,
        searcher: tantivy.Searcher,
        *,
        foreign: bool = False,
    ) -> QueryTerms:
        """The content terms of `query` as the field of `language` indexes them, weighted
        by their idf in that field; `foreign`: the query is in another language."""
        analyzer = self._query.get(language, self._query_any)
        terms = [t for t in dict.fromkeys(analyzer.analyze(query)) if _content(t)]
        documents = max(int(searcher.num_docs), 1)
        weights = {}
        for term in terms:
            frequency = int(searcher.doc_freq(field, term))
            weights[term] = 0.0 if foreign and frequency == 0 else _idf(documents, frequency)
        text = self._text.get(language, self._text_any)
        return QueryTerms(weights, text, min_matched=2 if foreign else 1)


def _idf(documents: int, frequency: int) -> float:
    frequency = min(frequency, documents)
    return math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))
