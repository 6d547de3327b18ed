"""`make bench ARGS="rag"`: search latency of the retrieval service, in process and over HTTP.

A corpus of ≥ 10,000 chunks (Markdown documents whose words come from tiergate's README,
sections of ~120 words) is indexed in process (throughput), then searched with 4-word
queries in process and through the running service (`POST /v1/search`, one keep-alive
client). Targets (issue 6): p50 ≤ 2 ms in process, ≤ 5 ms over HTTP.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tiergate_rag.index import SearchIndex
from tiergate_rag.ingest import Ingestor
from tiergate_testkit.services import ServiceProcess

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent.parent / "results"
README = Path(__file__).resolve().parent.parent.parent / "README.md"


def _corpus(directory: Path, chunks: int, seed: int = 7) -> None:
    words = [w.strip(".,()`*:;|").lower() for w in README.read_text().split()]
    vocabulary = [w for w in words if w.isalpha() and len(w) > 2]
    rng = random.Random(seed)
    per_document = 10
    for number in range(chunks // per_document):
        sections = [
            f"## Section {s}\n\n" + " ".join(rng.choices(vocabulary, k=120))
            for s in range(per_document)
        ]
        (directory / f"doc{number:05d}.md").write_text(
            f"# Document {number}\n\n" + "\n\n".join(sections)
        )
    (directory / "lang").write_text("")  # not a document: skipped


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def _row(where: str, ms: dict[str, float]) -> str:
    return f"| {where} | {ms['p50']:.3f} | {ms['p99']:.3f} |"


def main(argv: list[str] | None = None) -> int:
    """Build, search in process, search over HTTP; print and write the results."""
    parser = argparse.ArgumentParser(prog="make bench ARGS='rag ...'")
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tg-bench-rag-"))
    corpus = work / "corpus"
    corpus.mkdir()
    _corpus(corpus, args.chunks)
    ingestor = Ingestor(1200, 150, ["en", "de", "fr"])
    started = time.perf_counter()
    documents = list(ingestor.corpus([str(corpus)]))
    prepared = time.perf_counter()
    index = SearchIndex(work / "index")
    index.rebuild(documents)
    built = time.perf_counter()
    chunks = index.count()
    rng = random.Random(11)
    vocabulary = [w for d in documents[:50] for c in d.chunks for w in c.text.split()]
    queries = [" ".join(rng.choices(vocabulary, k=4)) for _ in range(args.queries)]
    for query in queries[:50]:
        index.search(query, 5)
    in_process = []
    for query in queries:
        t = time.perf_counter()
        index.search(query, 5)
        in_process.append((time.perf_counter() - t) * 1000)
    env = {
        "TIERGATE_RAG_INDEX_DIR": str(work / "index"),
        "TIERGATE_RAG_SERVER__LOG_LEVEL": "warning",
    }
    over_http = []
    with (
        ServiceProcess("tiergate_rag", "TIERGATE_RAG_", env) as service,
        httpx.Client(base_url=service.base_url, timeout=10) as client,
    ):
        for query in queries[:50]:
            client.post("/v1/search", json={"query": query, "k": 5})
        for query in queries:
            t = time.perf_counter()
            response = client.post("/v1/search", json={"query": query, "k": 5})
            over_http.append((time.perf_counter() - t) * 1000)
            response.raise_for_status()
    result: dict[str, Any] = {
        "utc": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "chunks": chunks,
        "documents": len(documents),
        "chunking_s": prepared - started,
        "indexing_s": built - prepared,
        "index_chunks_per_s": chunks / (built - prepared),
        "in_process_ms": _percentiles(in_process),
        "http_ms": _percentiles(over_http),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"rag-{result['utc']}.json").write_text(json.dumps(result, indent=2) + "\n")
    ok_process = result["in_process_ms"]["p50"] <= 2.0
    ok_http = result["http_ms"]["p50"] <= 5.0
    text = "\n".join(
        [
            f"# rag search — {result['utc']}",
            "",
            f"{chunks} chunks in {len(documents)} documents; indexed in "
            f"{result['indexing_s']:.2f} s ({result['index_chunks_per_s']:.0f} chunks/s; "
            f"chunking took {result['chunking_s']:.2f} s). {args.queries} 4-word queries, k = 5.",
            "",
            "| where | p50 ms | p99 ms |",
            "|---|--:|--:|",
            _row("in process", result["in_process_ms"]),
            _row("over HTTP", result["http_ms"]),
            "",
            f"{'PASS' if ok_process else 'MISS'} in-process p50 <= 2 ms",
            f"{'PASS' if ok_http else 'MISS'} HTTP p50 <= 5 ms",
        ]
    )
    (RESULTS / "rag-latest.md").write_text(text + "\n")
    print(text)
    return 0 if ok_process and ok_http else 1
