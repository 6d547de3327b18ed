"""`make bench ARGS="filter"`: what the content filter costs, per request and per chunk.

In process, no network: the numbers are the filter's own CPU.

- **Input**: `check_input` on chat bodies holding ~200 B, 2 KB and 20 KB of prose (a system
  prompt and a user turn), cold (a text never seen) and warm (the same texts again: a
  conversation resends its history every turn, and verdicts are remembered by digest).
- **Output**: `SseTransformer.feed` over a 200-chunk answer (one word a chunk, as engines
  stream), without the filter, with it (`stream_batch_chars` 32, the default) and checking
  every word (0), in alternating runs; the ratio is on ÷ off.

Medians of `--runs` runs (each the mean of its repetitions).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable

from tiergate_gateway.content_filter import (
    ContentFilterSettings,
    VerdictCache,
    WordFilter,
    tier_filter,
)
from tiergate_gateway.content_filter.check import check_input
from tiergate_gateway.upstream.sse import SseTransformer

__all__ = ["main"]

_PROSE = (
    "The gateway routes each request to the model its tier allows, holds a stream while a "
    "GPU wakes, and answers from the small model meanwhile. Limits are counted per subject "
    "in a sliding window, and the runaway guard ends answers that loop. "
)


def _text(size: int, salt: int) -> str:
    text = (_PROSE * (size // len(_PROSE) + 1))[:size]
    return f"{salt} {text}"


def _body(size: int, salt: int) -> dict[str, object]:
    system = _text(size // 4, salt)
    return {
        "model": "tiergate-small",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": _text(size - len(system), salt + 1)},
        ],
    }


def _answer_events(chunks: int) -> list[bytes]:
    words = list(itertools.islice(itertools.cycle(_PROSE.split()), chunks))
    head = {"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "e"}

    def event(delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        payload = json.dumps({**head, "choices": [choice]}, separators=(",", ":"))
        return b"data: " + payload.encode() + b"\n\n"

    events = [event({"role": "assistant", "content": ""}, None)]
    events += [event({"content": " " + word}, None) for word in words]
    events.append(event({}, "stop"))
    events.append(b"data: [DONE]\n\n")
    return events


def _checker(
    words: WordFilter, cache: VerdictCache, bodies: list[dict[str, object]]
) -> Callable[[int], None]:
    def check(index: int) -> None:
        # The check awaits only between slices of a long text: run it to its end here.
        coroutine = check_input(words, cache, bodies[index], "chat")
        try:
            while True:
                coroutine.send(None)
        except StopIteration:
            pass

    return check


def _timed(run: Callable[[int], None], repeats: int) -> float:
    """Microseconds per call of `run(i)`, over `repeats` calls."""
    started = time.perf_counter()
    for index in range(repeats):
        run(index)
    return (time.perf_counter() - started) / repeats * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the input check's cost per request and the relay's per stream and chunk."""
    parser = argparse.ArgumentParser(prog="make bench ARGS='filter ...'")
    parser.add_argument("--runs", type=int, default=5, help="runs, medians reported (5)")
    parser.add_argument("--chunks", type=int, default=200, help="chunks of the answer (200)")
    parser.add_argument("--streams", type=int, default=20, help="streams per run (20)")
    args = parser.parse_args(argv)
    streams: int = args.streams
    content_filter = tier_filter(ContentFilterSettings())
    assert content_filter is not None
    words = content_filter.words

    print("input check (check_input), a chat body of system + user text, µs a request:")
    print(f"  {'text':>8}  {'cold':>10}  {'warm (cached)':>14}")
    salt = itertools.count(1000, 2)
    for size in (200, 2_000, 20_000):
        repeats = max(2, 4_000 // size)
        cold, warm = [], []
        for _ in range(args.runs):
            bodies = [_body(size, next(salt)) for _ in range(repeats)]
            check = _checker(words, VerdictCache(), bodies)
            cold.append(_timed(check, repeats))
            warm.append(_timed(check, repeats))
        print(f"  {size:>7}B  {statistics.median(cold):>10.0f}  {statistics.median(warm):>14.1f}")

    events = _answer_events(args.chunks)

    per_word = tier_filter(ContentFilterSettings(stream_batch_chars=0))
    variants = {False: None, True: content_filter, None: per_word}

    def relay(with_filter: bool | None) -> float:
        started = time.perf_counter()
        for _ in range(streams):
            sse = SseTransformer(
                "tiergate-small", client_wants_usage=False, content_filter=variants[with_filter]
            )
            for event in events:
                sse.feed(event)
            assert not sse.filtered
        return (time.perf_counter() - started) / streams * 1e6

    off, on, words_on = [], [], []
    for _ in range(args.runs):
        off.append(relay(False))
        on.append(relay(True))
        words_on.append(relay(None))
    without, with_filter = statistics.median(off), statistics.median(on)
    every_word = statistics.median(words_on)
    count = len(events)
    print(f"relay of a {args.chunks}-chunk answer ({count} events), median of {args.runs} runs:")
    print(f"  {'':18}{'µs a stream':>12}{'µs a chunk':>12}")
    print(f"  {'filter off':18}{without:>12.0f}{without / count:>12.1f}")
    print(f"  {'filter on (32)':18}{with_filter:>12.0f}{with_filter / count:>12.1f}")
    print(f"  {'every word (0)':18}{every_word:>12.0f}{every_word / count:>12.1f}")
    added = with_filter - without
    print(f"  added (32): {added:.0f} µs a stream, {added / count:.1f} µs a chunk")
    print(f"  on ÷ off: {with_filter / without:.1f} (batch 32), {every_word / without:.1f} (0)")
    return 0
