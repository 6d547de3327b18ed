"""The rag service in process: search, document admin, re-index, hostile queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tiergate_rag.app import create_app
from tiergate_rag.settings import RagSettings
from tiergate_testkit.asgi import serve_in_loop

from .conftest import ADMIN


@pytest.fixture
async def rag(rag_settings: RagSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_in_loop(create_app(rag_settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        yield client


async def test_search_the_corpus_built_at_start(rag: httpx.AsyncClient) -> None:
    response = await rag.post("/v1/search", json={"query": "anonymous requests", "k": 2})
    assert response.status_code == 200
    best = response.json()["data"][0]
    assert best["doc_id"] == "guide.md"
    assert best["title"] == "Tiergate"
    assert best["heading_path"] == ["Tiergate", "Limits"]
    assert best["id"] == "guide.md#0"
    assert best["language"] == "en"
    german = (await rag.post("/v1/search", json={"query": "Gezeit Mond"})).json()["data"]
    assert german[0]["doc_id"] == "de.md"
    assert german[0]["language"] == "de"  # detected
    only = await rag.post(
        "/v1/search", json={"query": "gateway", "filters": {"doc_id": "notes.txt"}}
    )
    assert [h["doc_id"] for h in only.json()["data"]] == ["notes.txt"]


async def test_search_says_how_relevant_the_hits_are(rag: httpx.AsyncClient) -> None:
    asked = {"query": "How many requests do anonymous users get?", "passage_chars": 40}
    found = (await rag.post("/v1/search", json=asked)).json()
    assert found["relevance"] == 1.0
    assert found["data"][0]["relevance"] == 1.0
    assert len(found["data"][0]["passage"]) <= 40
    off = (await rag.post("/v1/search", json={"query": "What is the capital of France?"})).json()
    assert off["relevance"] == 0.0
    # A German question is judged as German: the corpus' German chunk answers it.
    german = {"query": "Wie entstehen die Gezeiten an der Nordsee?"}
    assert (await rag.post("/v1/search", json=german)).json()["relevance"] == 1.0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 5000}, "query"),
        ({"query": 5}, "query"),
        ({"query": ["a"]}, "query"),
        ({"query": "ok", "k": 0}, "k"),
        ({"query": "ok", "k": 51}, "k"),
        ({"query": "ok", "filters": {"nope": 1}}, "filters"),
        ({"query": "ok", "passage_chars": 39}, "passage_chars"),
        ({"query": "ok", "passage_chars": 20_001}, "passage_chars"),
        ({"query": "ok", "passage_chars": "100"}, "passage_chars"),
        ({"query": "ok", "passage_chars": 1.5}, "passage_chars"),
        ({}, "query"),
    ],
)
async def test_bad_queries_are_400(rag: httpx.AsyncClient, body: object, param: str) -> None:
    response = await rag.post("/v1/search", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_documents_admin_and_reindex(rag: httpx.AsyncClient) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    put = await rag.put(
        "/v1/documents/faq/keys",
        json={"text": "# Keys\n\nAPI keys start with tg_ and are shown once.", "language": "en"},
        headers=admin,
    )
    assert put.status_code == 200
    assert put.json()["chunks"] == 1
    found = (await rag.post("/v1/search", json={"query": "API keys shown once"})).json()["data"]
    assert found[0]["doc_id"] == "faq/keys"
    document = (await rag.get("/v1/documents/faq/keys")).json()
    assert document == {
        "id": "faq/keys",
        "title": "Keys",
        "source": "faq/keys",
        "language": "en",
        "text": "# Keys\n\nAPI keys start with tg_ and are shown once.",
        "chunks": [{"id": "faq/keys#0", "heading_path": ["Keys"]}],
        "object": "document",
    }
    assert (await rag.delete("/v1/documents/faq/keys", headers=admin)).status_code == 200
    missing = await rag.get("/v1/documents/faq/keys")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "document_not_found"
    gone = (await rag.post("/v1/search", json={"query": "shown once"})).json()["data"]
    assert all(h["doc_id"] != "faq/keys" for h in gone)
    assert (await rag.put("/v1/documents/x", json={"text": "x"})).status_code == 401
    reindexed = await rag.post("/v1/reindex", headers=admin)
    assert reindexed.json()["documents"] == 3


async def test_reindex_keeps_api_documents_and_start_follows_corpus_changes(
    rag_settings: RagSettings,
) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    runbook = "lang: en\n# Runbook\n\nRestart the engine when the pager rings."
    live = Path(rag_settings.index_dir) / "current"

    async def search(client: httpx.AsyncClient, query: str) -> list[str]:
        response = await client.post("/v1/search", json={"query": query})
        return [hit["doc_id"] for hit in response.json()["data"]]

    async with (
        serve_in_loop(create_app(rag_settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        put = await client.put(
            "/v1/documents/ops/runbook", json={"text": runbook, "format": "text"}, headers=admin
        )
        assert put.status_code == 200
        reindexed = (await client.post("/v1/reindex", headers=admin)).json()
        assert (reindexed["corpus"], reindexed["api"]) == (3, 1)
        assert await search(client, "pager rings") == ["ops/runbook"]  # kept, as text
        kept = (await client.get("/v1/documents/ops/runbook")).json()
        assert kept["text"] == runbook.removeprefix("lang: en\n")
        assert kept["chunks"][0]["heading_path"] == []  # still plain text, not Markdown
    generation = live.resolve()

    # A restart with the same corpus keeps the index as it is.
    async with serve_in_loop(create_app(rag_settings)):
        assert live.resolve() == generation

    # A corpus file changed: the next start rebuilds, keeping the API document.
    guide = Path(rag_settings.corpus[0]) / "guide.md"
    guide.write_text("# Tiergate\n\n## Limits\n\nAgents get six hundred requests a minute.\n")
    async with (
        serve_in_loop(create_app(rag_settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert live.resolve() != generation
        assert await search(client, "six hundred") == ["guide.md"]
        assert await search(client, "twenty fifteen") == []  # the old text is gone
        assert await search(client, "pager rings") == ["ops/runbook"]
