"""Micro-benchmark: CPU of `SseTransformer.feed` over one realistic llama.cpp stream.

`PYTHONPATH=bench .venv/bin/python -m tiergate_bench.sse_feed` prints µs per stream (best of
`--repeat` timeit runs) for the stream llama.cpp's server sends for a 20-token answer: a role
chunk, 20 content chunks, the finish chunk, the usage chunk (with llama.cpp's `timings`) and
`[DONE]`, one network read per event, as the relay sees it. Also the `make bench` fixture
stream (`fixtures.sse_stream`), whose chunks carry `"system_fingerprint": null`.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable

from tiergate_bench.fixtures import sse_stream
from tiergate_gateway.upstream.sse import SseTransformer

_ID = "chatcmpl-Y06XdujhUNaCtxvVQl6ezK59lBWuyZUp"
_WORDS = [
    *("Just", "ice", ".", "Just", "a", "helpful", "AI", ",", "with", "a", "compassionate"),
    *("heart", ".", "I", "'m", "glad", "you", "'re", "enjoying", "the"),
]


def _chunk(choices: list[dict[str, object]], **extra: object) -> bytes:
    # llama.cpp's key order and compact separators.
    body: dict[str, object] = {
        "choices": choices,
        "created": 1796115027,
        "id": _ID,
        "model": "smollm2-135m-instruct",
        "system_fingerprint": "b0-unknown",
        "object": "chat.completion.chunk",
        **extra,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def llama_cpp_reads() -> list[bytes]:
    """One read per event of a 20-token llama.cpp stream with `include_usage`."""
    reads = [
        _chunk(
            [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}]
        )
    ]
    reads += [
        _chunk([{"finish_reason": None, "index": 0, "delta": {"content": word}}]) for word in _WORDS
    ]
    reads.append(_chunk([{"finish_reason": "length", "index": 0, "delta": {}}]))
    usage = {"completion_tokens": 20, "prompt_tokens": 33, "total_tokens": 53}
    timings = {"prompt_n": 1, "prompt_ms": 10.9, "predicted_n": 20, "predicted_ms": 210.8}
    reads.append(_chunk([], usage=usage, timings=timings))
    reads.append(b"data: [DONE]\n\n")
    return reads


def _events(stream: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in stream.split(b"\n\n") if event]


def _runner(reads: list[bytes], *, wants_usage: bool) -> Callable[[], None]:
    def run() -> None:
        sse = SseTransformer("tiergate-small", client_wants_usage=wants_usage)
        for read in reads:
            sse.feed(read)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=2000, help="streams per timeit run")
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs (best is reported)")
    args = parser.parse_args()
    streams = {"llama.cpp 20 tokens": llama_cpp_reads(), "bench fixture": _events(sse_stream())}
    for name, reads in streams.items():
        for wants_usage in (False, True):
            timer = timeit.Timer(_runner(reads, wants_usage=wants_usage))
            best = min(timer.repeat(repeat=args.repeat, number=args.number)) / args.number
            print(f"{name:20} include_usage={wants_usage!s:5}  {best * 1e6:7.1f} µs/stream")


if __name__ == "__main__":
    main()
