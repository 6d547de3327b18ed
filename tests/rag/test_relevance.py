"""Relevance (the idf-weighted share of a query's content terms a hit holds) and passages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate_rag.chunking import chunk_markdown
from tiergate_rag.index import IndexedDocument, SearchIndex
from tiergate_rag.relevance import together

LIMITS = """# Limits

## Anonymous tier

Anonymous visitors may send twenty requests per fifteen minutes. Each answer is capped at
three hundred tokens. The counters live in Redis, keyed by the client address.

## Keys

API keys are stored as an HMAC under the pepper; the key itself is never written down.
"""

ENGINES = """# Engines

The small model runs on llama.cpp with one thread. The large GPU model is woken on demand and
sleeps when idle; while it wakes, the small model answers.
"""

FILLER = "\n".join(f"Line {n} says something about tables and chairs." for n in range(40))


def _doc(doc_id: str, markdown: str) -> IndexedDocument:
    return IndexedDocument(
        doc_id=doc_id,
        title=doc_id.title(),
        source=f"{doc_id}.md",
        language="en",
        chunks=chunk_markdown(markdown, size=1200, overlap=100),
    )


@pytest.fixture
def index(tmp_path: Path) -> SearchIndex:
    index = SearchIndex(tmp_path)
    index.upsert([_doc("limits", LIMITS), _doc("engines", ENGINES), _doc("furniture", FILLER)])
    return index


def _jointly(index: SearchIndex, query: str) -> float:
    hits = index.search(query, 4)
    return together((h.query, h.matched) for h in hits if h.query is not None)


@pytest.mark.parametrize(
    ("query", "low", "high"),
    [
        ("How many requests may an anonymous visitor send?", 0.99, 1.0),
        ("Where are API keys stored?", 0.99, 1.0),
        ("What does the small model run on?", 0.99, 1.0),
        # Half of what it asks is in the corpus, the rarest half missing: in between.
        ("How are anonymous requests billed in euros?", 0.2, 0.8),
        ("What is the capital of France?", 0.0, 0.0),
        ("Who wrote Hamlet?", 0.0, 0.0),
        # No content term at all: function words, a greeting, a number.
        ("Hello! How are you?", 0.0, 0.0),
        ("What is 2+2?", 0.0, 0.0),
    ],
)
def test_relevance_is_the_share_of_the_query_the_hits_hold(
    index: SearchIndex, query: str, low: float, high: float
) -> None:
    assert low <= _jointly(index, query) <= high


def test_function_words_do_not_rank(index: SearchIndex) -> None:
    # "what is the … of …" would outweigh the topic in BM25 if it ranked: the filler, which
    # has none of the topic, must not come first for a question full of function words.
    hits = index.search("What is the thing that the small model of the mesh runs on?", 3)
    assert hits[0].doc_id == "engines"
    assert hits[0].matched >= {"small", "model"}


def test_a_query_of_function_words_still_searches(index: SearchIndex) -> None:
    # Search stays a search (MCP users get hits), only its relevance says it matched nothing.
    hits = index.search("what is it", 3)
    assert all(h.relevance == 0.0 for h in hits)


def test_relevance_per_hit_and_jointly(index: SearchIndex) -> None:
    # Neither chunk alone holds both halves of the question; together they do.
    query = "Which engine answers while the GPU wakes, and where do counters live?"
    hits = index.search(query, 4)
    assert max(h.relevance for h in hits) < 1.0
    assert _jointly(index, query) > max(h.relevance for h in hits)


def test_passage_keeps_the_lines_that_matched(index: SearchIndex) -> None:
    (hit,) = index.search("Where are API keys stored?", 1, passage_chars=120)
    assert hit.passage is not None
    assert len(hit.passage) <= 120
    assert "stored as an HMAC" in hit.passage
    assert "twenty requests" not in hit.passage
    whole = index.search("Where are API keys stored?", 1, passage_chars=5000)[0]
    assert whole.passage == whole.text.strip()  # it fits: the whole chunk
    assert index.search("Where are API keys stored?", 1)[0].passage is None


def test_passage_clips_a_long_line_at_a_word(tmp_path: Path) -> None:
    line = "alpha " * 60 + "the key is stored under the pepper " + "omega " * 60
    index = SearchIndex(tmp_path)
    index.upsert([_doc("long", f"# Long\n\n{line}\n")])
    (hit,) = index.search("stored pepper", 1, passage_chars=100)
    assert hit.passage is not None
    assert len(hit.passage) <= 100
    assert hit.passage.startswith("\u2026the key is stored under the pepper omega")
    assert hit.passage.endswith("\u2026")
    assert not hit.passage[:-1].endswith(" ")


def _foreign(index: SearchIndex, query: str, language: str) -> float:
    hits = index.search(query, 4, query_language=language)
    return together((h.query, h.matched) for h in hits if h.query is not None)


def test_a_foreign_question_is_judged_by_the_words_the_corpus_knows(index: SearchIndex) -> None:
    # Asked in the corpus' language, the French words would count as unknown topic and sink
    # the question; asked as French, they are only foreign words.
    question = "Combien de requests un visiteur anonymous peut-il envoyer ?"
    assert _foreign(index, question, "en") < 0.5
    assert _foreign(index, question, "fr") == 1.0


def test_one_shared_word_does_not_make_a_foreign_question_relevant(index: SearchIndex) -> None:
    # "model" alone is chance: a foreign question needs two content terms to match.
    assert _foreign(index, "Quel est le meilleur model de voiture ?", "fr") == 0.0
    assert _foreign(index, "Quel model utilise le llama.cpp ?", "fr") == 1.0
