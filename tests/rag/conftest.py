"""A small corpus (English Markdown, plain text, German) and the rag settings over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate_rag.settings import RagSettings

ADMIN = "rag-admin-token-0123456789abcdefghijkl"


@pytest.fixture
def rag_settings(tmp_path: Path) -> RagSettings:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "guide.md").write_text(
        "# Tiergate\n\n## Limits\n\nAnonymous users get twenty requests per fifteen minutes.\n"
    )
    (corpus / "notes.txt").write_text("Plain text notes about the gateway and its workers.")
    (corpus / "de.md").write_text(
        "# Gezeiten\n\nDie Gezeiten an der Nordsee entstehen durch die Anziehung des Mondes."
    )
    return RagSettings(index_dir=str(tmp_path / "index"), corpus=[str(corpus)], admin_token=ADMIN)
