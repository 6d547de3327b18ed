"""Chunking and the tantivy index: search, replace, delete, restart, atomic re-index, stemming."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import tantivy

from tiergate_rag.chunking import chunk_markdown, chunk_text
from tiergate_rag.index import IndexedDocument, SearchIndex

GUIDE = """# Tiergate guide

Intro paragraph about the gateway.

## Install

Run make run to start the mesh.

### From a clone

Clone the repository first.

```python
# not a heading inside code
print("hello")
```

## Limits

Anonymous users get twenty requests per fifteen minutes.
"""


def doc(doc_id: str, markdown: str, language: str = "en", title: str = "Guide") -> IndexedDocument:
    return IndexedDocument(
        doc_id=doc_id,
        title=title,
        source=f"docs/{doc_id}.md",
        language=language,
        chunks=chunk_markdown(markdown, size=400, overlap=40),
    )


def test_markdown_chunks_keep_their_heading_path() -> None:
    chunks = chunk_markdown(GUIDE)
    paths = [c.heading_path for c in chunks]
    assert paths == [
        ("Tiergate guide",),
        ("Tiergate guide", "Install"),
        ("Tiergate guide", "Install", "From a clone"),
        ("Tiergate guide", "Limits"),
    ]
    assert "# not a heading inside code" in chunks[2].text
    assert [c.index for c in chunks] == [0, 1, 2, 3]


def test_long_sections_are_cut_with_overlap() -> None:
    words = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_text(words, size=300, overlap=50)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 + 50 + 1 for c in chunks)
    for previous, current in itertools.pairwise(chunks):
        first_word = current.text.split()[0]
        assert first_word in previous.text  # the overlap repeats the end of the previous one
    assert chunk_text("   ") == []


def test_search_replace_delete_and_restart(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path)
    index.upsert([doc("guide", GUIDE), doc("other", "# Other\n\nNothing about limits here.")])
    hits = index.search("anonymous requests", 3)
    assert hits[0].doc_id == "guide"
    assert hits[0].heading_path == ["Tiergate guide", "Limits"]
    assert hits[0].title == "Guide"
    assert hits[0].source == "docs/guide.md"
    # Replace: the old text is gone, the new one found.
    index.upsert([doc("guide", "# Guide\n\nAgents use API keys.")])
    assert index.search("anonymous requests", 3) == [] or all(
        h.doc_id != "guide" for h in index.search("anonymous requests", 3)
    )
    assert index.search("API keys", 1)[0].doc_id == "guide"
    # Restart: a new process opens the same directory and finds the same chunks.
    reopened = SearchIndex(tmp_path)
    assert reopened.search("API keys", 1)[0].doc_id == "guide"
    reopened.delete("guide")
    assert reopened.search("API keys", 3) == []
    assert reopened.search("Nothing", 3)[0].doc_id == "other"


def test_an_index_with_another_schema_is_replaced_not_fatal(tmp_path: Path) -> None:
    # An index written by an older tiergate (another schema) under the `current` link.
    old = tmp_path / "gen-old"
    old.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=True)
    writer = tantivy.Index(builder.build(), path=str(old)).writer(15_000_000, 1)
    writer.add_document(tantivy.Document(text="old"))
    writer.commit()
    (tmp_path / "current").symlink_to("gen-old")
    index = SearchIndex(tmp_path)
    assert index.count() == 0  # a fresh generation, which the service fills from its corpus
    index.upsert([doc("guide", GUIDE)])
    assert SearchIndex(tmp_path).search("anonymous", 1)[0].doc_id == "guide"


def test_german_stemming_finds_the_german_document(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path)
    german = "# Gezeiten\n\nDie Gezeiten der Nordsee entstehen durch den Mond."
    english = "# Tides\n\nThe tides of the North Sea are caused by the moon."
    index.upsert([doc("de", german, "de", "Gezeiten"), doc("en", english, "en", "Tides")])
    assert index.search("Gezeit", 1)[0].doc_id == "de"  # stemmed: Gezeiten → gezeit
    assert index.search("tide", 1)[0].doc_id == "en"
    assert [h.doc_id for h in index.search("Mond", 5, language="de")] == ["de"]
    assert index.search("Mond", 5, language="en") == []


def test_hostile_query_syntax_does_not_raise(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path)
    index.upsert([doc("guide", GUIDE)])
    for query in ('"unbalanced', "title:", "+++", "a AND OR b", "(((", "*", "\\"):
        index.search(query, 3)


def test_rebuild_is_atomic_under_concurrent_searches(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path)
    index.upsert([doc(f"old{i}", f"# Old {i}\n\nalpha beta gamma {i}") for i in range(50)])
    errors: list[BaseException] = []
    counts: set[int] = set()
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                counts.add(len(index.search("alpha OR delta", 100)))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for round_ in range(5):
        index.rebuild([doc(f"new{round_}-{i}", f"# New\n\ndelta {i}") for i in range(70)])
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert counts <= {50, 70}  # a whole old corpus or a whole new one, never a mix
    assert len(index.search("delta", 100)) == 70
    generations = [p for p in tmp_path.iterdir() if p.name.startswith("gen-")]
    assert len(generations) == 2  # the live one and the one it replaced, no more


def test_a_document_with_many_chunks_comes_back_whole(tmp_path: Path) -> None:
    # More chunks than the first page the index collects (64): all of them, in order.
    sections = "\n\n".join(f"## Part {i}\n\n" + f"word{i} " * 60 for i in range(80))
    text = f"# Long\n\n{sections}"
    chunks = chunk_markdown(text, size=400, overlap=40)
    assert len(chunks) > 64
    index = SearchIndex(tmp_path)
    index.upsert(
        [
            IndexedDocument(
                doc_id="long",
                title="Long",
                source="long.md",
                language="en",
                chunks=chunks,
                text=text,
            )
        ]
    )
    stored = index.document("long")
    assert stored is not None
    assert stored.text == text
    ids = [chunk_id for chunk_id, _ in stored.chunks]
    assert ids == [f"long#{i}" for i in range(len(chunks))]
    assert stored.chunks[-1][1] == ["Long", "Part 79"]
