"""Documents from files and posted texts: ids, titles, declared and detected languages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiergate_rag.ingest import Ingestor


@pytest.fixture
def ingestor() -> Ingestor:
    return Ingestor(1200, 150, ["en", "de", "fr"])


def test_corpus_ids_never_collide(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two files named in the corpus with the same name (each service's design.md), and a
    # directory holding a file whose relative path is already taken.
    for part in ("gateway", "auth", "docs/sub"):
        (tmp_path / part).mkdir(parents=True)
    (tmp_path / "gateway" / "design.md").write_text("# Gateway\n\nRelays requests.")
    (tmp_path / "auth" / "design.md").write_text("# Auth\n\nIssues tokens.")
    (tmp_path / "docs" / "design.md").write_text("# Docs\n\nAnother design.")
    (tmp_path / "docs" / "sub" / "notes.txt").write_text("Plain notes.")
    monkeypatch.chdir(tmp_path)
    documents = list(ingestor.corpus(["gateway/design.md", "auth/design.md", "docs"]))
    ids = [d.doc_id for d in documents]
    assert ids == ["gateway/design.md", "auth/design.md", "design.md", "sub/notes.txt"]
    assert [d.title for d in documents] == ["Gateway", "Auth", "Docs", "notes"]
    # The same directory twice: the second copy is told apart by its full path.
    again = [d.doc_id for d in ingestor.corpus(["docs", f"{os.curdir}/docs"])]
    assert len(set(again)) == 4


def test_language_is_declared_or_detected(ingestor: Ingestor) -> None:
    declared = ingestor.document("a.md", "lang: fr\n# Titre\n\nUn texte.")
    assert declared.language == "fr"
    assert declared.text == "# Titre\n\nUn texte."  # the declaration is not content
    detected = ingestor.document("b.md", "# Gezeiten\n\nDie Gezeiten entstehen durch den Mond.")
    assert detected.language == "de"
    posted = ingestor.document("c.md", "Some English words here.", language="de")
    assert posted.language == "de"  # the API's declaration wins
