"""`make bench ARGS="answer"`: the anonymous answer — time to first token, grounding, quality.

Starts rag (the shipped corpus, `config/rag.toml`, its index in a temporary directory), then
per model and per round cpu-llm (`config/cpu-llm.toml`, one engine thread, no embedding
engine, the model chosen by `--model`) and a gateway in front of both (`config/gateway.toml`
with every request anonymous and the anonymous tier's request, token and concurrency limits
lifted), each on an ephemeral port. cpu-llm and the gateway are started afresh each round, so
llama.cpp's prompt cache starts empty: first-sight latency is what a visitor meets. After one
warm-up request outside the set, each question of `evals/answer.toml` is sent once, as the
official client would: streamed, `tiergate-small`, temperature 0, seed 0, `max_tokens` 120,
`stream_options.include_usage`. After the last round, a warm-cache pass sends each question
twice in a row (the first with `max_tokens` 1) and times the second.

Per answer: time to the first content token (client side), `x-tiergate-grounding`,
`x-tiergate-sources`, the text, `finish_reason`, `tiergate_guard`, usage and tokens/s; scores
in `answer_score.py`. Report: stdout and `bench/results/answer-<UTC>.{md,json}` (raw rows in
the JSON) and `answer-latest.md`; with several `--models`, a comparison table. Exit 1 only
when a service did not start or a request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tiergate_bench.answer_report import markdown
from tiergate_bench.answer_score import Question, Row, score, summarize
from tiergate_cpu_llm.model_catalog import CATALOG, PackagedModel
from tiergate_gateway.routing.language import LanguageDetection
from tiergate_testkit.services import ServiceProcess, ServiceStartError

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
QUESTIONS = ROOT / "evals" / "answer.toml"
ALIAS = "tiergate-small"
WARM_UP = "Hi!"
# The gateway's own detector and languages (settings.languages' default).
LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model to measure: a catalogue name (`engine.model`), or `label=path.gguf`."""

    label: str
    entry: PackagedModel | None
    path: str | None
    shipped: bool = False
    """Served as the package ships it (`engine.requantize` off), not re-encoded as Q8_0."""

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """`smollm2-135m`, `gemma3-270m`, `label=/path/x.gguf` or `/path/x.gguf`; a suffix
        `:shipped` serves the file as it is (no Q8_0 re-encoding)."""
        if text.endswith(":shipped"):
            found = cls.parse(text.removesuffix(":shipped"))
            return cls(f"{found.label} (as shipped)", found.entry, found.path, shipped=True)
        for name, entry in CATALOG.items():
            if text == name:
                return cls(name, entry, None)
        label, _, path = text.rpartition("=")
        path = str(Path(path).expanduser())
        if not path.endswith(".gguf"):
            raise SystemExit(
                f"--models: {text!r} is not a model name ({', '.join(CATALOG)}) "
                "nor [label=]path.gguf"
            )
        return cls(label or Path(path).stem, None, path)

    @property
    def licence(self) -> str:
        """The catalogue's licence; "(file)" for a GGUF given by path."""
        return self.entry.licence if self.entry is not None else "(file)"


def load_questions(path: Path, ids: list[str] | None) -> list[Question]:
    """The question set, or the subset `ids` (unknown ids are an error)."""
    data = tomllib.loads(path.read_text())
    questions = [
        Question(
            id=q["id"],
            lang=q["lang"],
            question=q["question"],
            ground=q["ground"],
            facts=tuple(q.get("facts", ())),
            source=q.get("source"),
            note=q.get("note"),
        )
        for q in data["question"]
    ]
    if ids:
        unknown = sorted(set(ids) - {q.id for q in questions})
        if unknown:
            raise SystemExit(f"unknown question ids: {', '.join(unknown)}")
        questions = [q for q in questions if q.id in ids]
    return questions


def _corpus() -> list[str]:
    """config/rag.toml's corpus as absolute paths (the services may run from anywhere)."""
    corpus: list[str] = tomllib.loads((ROOT / "config" / "rag.toml").read_text())["corpus"]
    return [str(ROOT / entry) for entry in corpus]


def _cpu_env(candidate: Candidate, sites: list[str]) -> dict[str, str]:
    env = {
        "TIERGATE_CPU_LLM_CONFIG": str(ROOT / "config" / "cpu-llm.toml"),
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_EMBEDDING__ENABLED": "false",
        "TIERGATE_CPU_LLM_SERVER__LOG_LEVEL": "warning",
    }
    if candidate.path is not None:
        env["TIERGATE_CPU_LLM_ENGINE__MODEL_PATH"] = candidate.path
        env["TIERGATE_CPU_LLM_ENGINE__MODEL_ID"] = candidate.label
    else:
        assert candidate.entry is not None
        env["TIERGATE_CPU_LLM_ENGINE__MODEL"] = candidate.entry.name
    if candidate.shipped:
        env["TIERGATE_CPU_LLM_ENGINE__REQUANTIZE"] = ""  # unset: the file as it is
    if sites:  # model packages installed with `pip install --target DIR`
        existing = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([*sites, *([existing] if existing else [])])
    return env


def _gateway_env(cpu_url: str, engine_model: str, rag_url: str) -> dict[str, str]:
    model = {"id": ALIAS, "backend": "cpu", "engine_model": engine_model, "tools": False}
    return {
        "TIERGATE_GATEWAY_CONFIG": str(ROOT / "config" / "gateway.toml"),
        "TIERGATE_GATEWAY_SERVER__LOG_LEVEL": "warning",
        "TIERGATE_GATEWAY_AUTH__URL": "",  # nothing to sign in with: every request anonymous
        "TIERGATE_GATEWAY_TIERS__ANONYMOUS__REQUESTS": "",
        "TIERGATE_GATEWAY_TIERS__ANONYMOUS__TOKENS": "",
        "TIERGATE_GATEWAY_TIERS__ANONYMOUS__MAX_CONCURRENT": "",
        "TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL": f"{cpu_url}/v1",
        "TIERGATE_GATEWAY_BACKENDS__CPU__HEALTH_URL": f"{cpu_url}/readyz",
        "TIERGATE_GATEWAY_MODELS": json.dumps([model]),
        "TIERGATE_GATEWAY_RAG__URL": rag_url,
        "TIERGATE_GATEWAY_HEALTH_PROBE_INTERVAL_S": "1",
    }


def ask(
    client: httpx.Client, row: Row, question: str, max_tokens: int, prompt_cache: bool = True
) -> Row:
    """One streamed question through the gateway; fills the row's measurements.
    `prompt_cache` False sends llama.cpp `cache_prompt: false` (the saving measured)."""
    body: dict[str, Any] = {
        "model": ALIAS,
        "messages": [{"role": "user", "content": question}],
        "stream": True,
        "temperature": 0,
        "seed": 0,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    if not prompt_cache:
        body["cache_prompt"] = False
    parts: list[str] = []
    started = time.perf_counter()
    first: float | None = None
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            row.status = response.status_code
            row.grounding = response.headers.get("x-tiergate-grounding")
            sources = response.headers.get("x-tiergate-sources")
            row.sources = [s.strip() for s in sources.split(",")] if sources else []
            row.guard = response.headers.get("x-tiergate-guard")
            if response.status_code != 200:
                row.error = response.read().decode(errors="replace")[:300]
                return row
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    row.error = json.dumps(chunk["error"])[:300]
                row.guard = chunk.get("tiergate_guard") or row.guard
                if chunk.get("usage"):
                    row.prompt_tokens = chunk["usage"].get("prompt_tokens")
                    row.completion_tokens = chunk["usage"].get("completion_tokens")
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        first = first or time.perf_counter()
                        parts.append(text)
                    row.finish_reason = choice.get("finish_reason") or row.finish_reason
    except httpx.HTTPError as exc:
        row.error = f"{type(exc).__name__}: {exc}"
    end = time.perf_counter()
    row.total_s = end - started
    row.answer = "".join(parts)
    if first is not None:
        row.ttft_s = first - started
        if row.completion_tokens and end > first:
            row.tokens_per_s = row.completion_tokens / (end - first)
    return row


@contextmanager
def _stack(
    candidate: Candidate, sites: list[str], rag_url: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """cpu-llm and a gateway in front of it: (the gateway's URL, the engine's /props)."""
    with ExitStack() as stack:
        cpu = stack.enter_context(
            ServiceProcess(
                "tiergate_cpu_llm",
                "TIERGATE_CPU_LLM_",
                _cpu_env(candidate, sites),
                ready_timeout_s=300,
            )
        )
        props: dict[str, Any] = httpx.get(f"{cpu.base_url}/props", timeout=10).json()
        listed = httpx.get(f"{cpu.base_url}/v1/models", timeout=10).json()
        engine_model = str(listed["data"][0]["id"])
        gateway = stack.enter_context(
            ServiceProcess(
                "tiergate_gateway",
                "TIERGATE_GATEWAY_",
                _gateway_env(cpu.base_url, engine_model, rag_url),
            )
        )
        yield gateway.base_url, props


def _first_search_ms(rag_url: str) -> float:
    """rag's first search of a real question after its start, timed: it is slower than the
    rest (measured ~0.7 s against ~4 ms), longer than the gateway's rag timeout, so it is
    done here once, outside the set, and reported."""
    started = time.perf_counter()
    query = {"query": "How does the gateway decide which model answers a visitor?", "k": 4}
    httpx.post(f"{rag_url}/v1/search", json=query, timeout=30).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _measure_model(
    candidate: Candidate,
    questions: list[Question],
    args: argparse.Namespace,
    rag_url: str,
    detect: Callable[[str], str | None],
) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    info: dict[str, Any] = {"model": candidate.label, "licence": candidate.licence}
    by_id = {q.id: q for q in questions}

    def new_row(number: int, question: Question) -> Row:
        return Row(candidate.label, number, question.id, question.lang, question.ground)

    for number in range(args.rounds):
        with _stack(candidate, args.site, rag_url) as (url, props):
            path = Path(str(props.get("model_path", "")))
            info["model_path"] = str(path)
            info["size_mib"] = path.stat().st_size / 2**20 if path.is_file() else None
            with httpx.Client(base_url=url, timeout=600) as client:
                ask(client, new_row(number, questions[0]), WARM_UP, 1)
                for question in questions:
                    row = ask(
                        client,
                        new_row(number, question),
                        question.question,
                        args.max_tokens,
                        args.prompt_cache,
                    )
                    rows.append(score(row, by_id[row.id], detect))
                    _progress(row)
                if args.warm_pass and number == args.rounds - 1:
                    for question in questions:
                        ask(client, new_row(-1, question), question.question, 1)
                        row = ask(client, new_row(-1, question), question.question, args.max_tokens)
                        rows.append(score(row, by_id[row.id], detect))
                        _progress(row)
    return rows, info


def _progress(row: Row) -> None:
    ttft = f"{row.ttft_s * 1000:7.0f} ms" if row.ttft_s is not None else "      - ms"
    flags = "".join(
        mark if value else "."
        for mark, value in (
            ("G", row.grounding_correct),
            ("F", row.fact_correct),
            ("C", row.citation_valid),
            ("L", row.looped),
        )
    )
    where = "warm" if row.round < 0 else f"r{row.round}"
    print(
        f"  {row.model} {where} {row.id:22} {ttft} {row.prompt_tokens or 0:5} tok "
        f"{(row.grounding or row.error or '-')[:34]:34} {flags} {row.answer[:60]!r}",
        flush=True,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make bench ARGS='answer ...'")
    parser.add_argument("--model", default="smollm2-135m", help="one model (smollm2-135m)")
    parser.add_argument(
        "--models",
        help=f"comma-separated, each run in full: names ({', '.join(CATALOG)}) or label=path.gguf",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the whole set (3)")
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="the question set")
    parser.add_argument("--ids", help="comma-separated question ids (default: all)")
    parser.add_argument("--max-tokens", type=int, default=120, help="per answer (120)")
    parser.add_argument(
        "--site",
        action="append",
        default=[],
        help="a directory a model package was installed into (pip --target); repeatable",
    )
    parser.add_argument("--no-warm-pass", dest="warm_pass", action="store_false")
    parser.add_argument(
        "--no-prompt-cache",
        dest="prompt_cache",
        action="store_false",
        help="send cache_prompt: false (llama.cpp recomputes every prompt: what the cache saves)",
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep the rag index")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the answer scenario for each model; print and write the results."""
    args = _parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else []
    args.site = [str(Path(s).expanduser().resolve()) for s in args.site]
    candidates = [Candidate.parse(m) for m in (args.models or args.model).split(",") if m]
    questions = load_questions(args.questions, args.ids.split(",") if args.ids else None)
    detector = LanguageDetection(LANGUAGES)
    work = Path(tempfile.mkdtemp(prefix="tg-bench-answer-"))
    models: list[tuple[dict[str, Any], dict[str, Any]]] = []
    all_rows: list[Row] = []
    failed = False
    rag_env = {
        "TIERGATE_RAG_CONFIG": str(ROOT / "config" / "rag.toml"),
        "TIERGATE_RAG_INDEX_DIR": str(work / "index"),
        "TIERGATE_RAG_CORPUS": json.dumps(_corpus()),
        "TIERGATE_RAG_SERVER__LOG_LEVEL": "warning",
    }
    try:
        with ServiceProcess("tiergate_rag", "TIERGATE_RAG_", rag_env) as rag:
            args.rag_first_search_ms = _first_search_ms(rag.base_url)
            for candidate in candidates:
                print(f"== {candidate.label}", flush=True)
                try:
                    rows, info = _measure_model(
                        candidate, questions, args, rag.base_url, detector.detect
                    )
                except (ServiceStartError, httpx.HTTPError) as exc:
                    print(f"{candidate.label} did not run: {exc}", flush=True)
                    failed = True
                    continue
                summary = summarize(rows)
                failed = failed or summary["failed"] > 0 or summary["failed_warm"] > 0
                models.append((info, summary))
                all_rows += rows
    finally:
        if args.keep_workdir or failed:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    document = {
        "utc": stamp,
        "argv": args.argv,
        "rag_first_search_ms": args.rag_first_search_ms,
        "questions": [asdict(q) for q in questions],
        "models": [{"info": info, "summary": summary} for info, summary in models],
        "rows": [asdict(r) for r in all_rows],
    }
    (RESULTS / f"answer-{stamp}.json").write_text(json.dumps(document, indent=2) + "\n")
    text = markdown(stamp, args, models, questions)
    (RESULTS / f"answer-{stamp}.md").write_text(text)
    (RESULTS / "answer-latest.md").write_text(text)
    print(text)
    return 1 if failed or not models else 0
