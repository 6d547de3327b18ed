"""One embedding engine in its own process, driven over stdin/stdout by `compare.py`.

    python bench/embeddings/worker.py ENGINE MODEL THREADS [TOKENIZER]

ENGINE is `llama` (MODEL: a .gguf, run in-process by xllamacpp, no HTTP), `ort` (MODEL: an
ONNX export of the same model, TOKENIZER: its tokenizer.json; ONNX Runtime + tokenizers, mean
pooling and L2 normalisation as sentence-transformers does) or `st` (MODEL: the
sentence-transformers directory; torch, the quality reference). Each runs in whichever Python
has its packages. After loading, the worker prints `{"ready": true, "load_s": ...}`; then it
answers one JSON request per line:

- `{"op": "embed", "texts": [...]}` → `{"vectors": [[...], ...], "tokens": [n, ...]}`
- `{"op": "time", "texts": [...], "reps": N}` → `{"ms": [...]}`: N timed calls, each
  embedding all of `texts` in one call
- `{"op": "rss"}` → `{"rss_kb": ..., "hwm_kb": ...}` from /proc/self/status
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Embed = Callable[[list[str]], tuple[list[list[float]], list[int]]]


def _llama(model: str, threads: int) -> Embed:
    import xllamacpp  # noqa: PLC0415

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.embedding = True
    params.n_ctx = 2048
    params.n_parallel = 4
    params.n_batch = 512
    params.n_ubatch = 512
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.ui = False
    server = xllamacpp.Server(params)

    def embed(texts: list[str]) -> tuple[list[list[float]], list[int]]:
        answer = server.handle_embeddings({"input": texts})
        if "error" in answer:
            raise RuntimeError(answer["error"])
        data = sorted(answer["data"], key=lambda d: d["index"])
        # usage counts the whole request; per-input counts come from /tokenize-like lengths,
        # which llama.cpp does not report here: report the total once.
        return [d["embedding"] for d in data], [answer["usage"]["prompt_tokens"]]

    return embed


def _ort(model: str, threads: int, tokenizer_file: str) -> Embed:
    import numpy as np  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    from tokenizers import Tokenizer  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(tokenizer_file)
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def embed(texts: list[str]) -> tuple[list[list[float]], list[int]]:
        encoded = tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encoded)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled.tolist(), [len(e.ids) for e in encoded]

    return embed


def _st(model: str, threads: int) -> Embed:
    import torch  # noqa: PLC0415
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    torch.set_num_threads(threads)
    st = SentenceTransformer(model, device="cpu")
    st.max_seq_length = 512  # the reference must see the same tokens as the engines

    def embed(texts: list[str]) -> tuple[list[list[float]], list[int]]:
        vectors = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        tokens = [len(st.tokenizer(t)["input_ids"]) for t in texts]
        return vectors.tolist(), tokens

    return embed


def _status() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            fields[key] = int(value.split()[0])
    return {"rss_kb": fields["VmRSS"], "hwm_kb": fields["VmHWM"]}


def main(argv: list[str]) -> int:
    """Load the engine, then answer requests until stdin closes."""
    engine, model, threads = argv[1], argv[2], int(argv[3])
    started = time.perf_counter()
    if engine == "llama":
        embed = _llama(model, threads)
    elif engine == "ort":
        embed = _ort(model, threads, argv[4])
    elif engine == "st":
        embed = _st(model, threads)
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    embed(["warm up"])
    out = sys.stdout
    out.write(json.dumps({"ready": True, "load_s": time.perf_counter() - started}) + "\n")
    out.flush()
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        if request["op"] == "embed":
            vectors, tokens = embed(request["texts"])
            answer: dict[str, Any] = {"vectors": vectors, "tokens": tokens}
        elif request["op"] == "time":
            times = []
            for _ in range(request["reps"]):
                t0 = time.perf_counter()
                embed(request["texts"])
                times.append((time.perf_counter() - t0) * 1000)
            answer = {"ms": times}
        else:
            answer = _status()
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
