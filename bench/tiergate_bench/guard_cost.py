"""`make bench ARGS="guard"`: what the runaway guard adds to the SSE relay, in process.

The relay's per-event work (`SseTransformer.feed`) over the bench upstream's 20-chunk stream
(the same bytes `make bench` relays), without and with the anonymous tier's guard, in
alternating batches; medians of the batches. The whole-gateway comparison is the
`tiergate-guard` system of the main bench (`--systems direct,tiergate,tiergate-guard`), whose
rounds on this machine spread far wider than the guard costs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tiergate_bench.fixtures import sse_stream
from tiergate_gateway.guard import GuardSettings
from tiergate_gateway.upstream.sse import SseTransformer

__all__ = ["main"]


def _batch(events: list[bytes], guard: GuardSettings | None, streams: int) -> float:
    """Microseconds per stream, relaying `streams` streams."""
    started = time.perf_counter()
    for _ in range(streams):
        relay = SseTransformer("tiergate-small", client_wants_usage=False, guard=guard)
        for event in events:
            relay.feed(event)
    return (time.perf_counter() - started) / streams * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the relay's CPU per stream without and with the guard."""
    parser = argparse.ArgumentParser(prog="make bench ARGS='guard ...'")
    parser.add_argument("--batches", type=int, default=7, help="alternating batches (7)")
    parser.add_argument("--streams", type=int, default=4000, help="streams per batch (4000)")
    args = parser.parse_args(argv)
    events = [event + b"\n\n" for event in sse_stream().split(b"\n\n") if event.strip()]
    off: list[float] = []
    on: list[float] = []
    for _ in range(args.batches):
        off.append(_batch(events, None, args.streams))
        on.append(_batch(events, GuardSettings(), args.streams))
    without, with_guard = statistics.median(off), statistics.median(on)
    added = with_guard - without
    print(f"relay of a {len(events)}-event stream, median of {args.batches} batches:")
    print(f"  without the guard  {without:7.1f} µs  (batches {min(off):.1f}-{max(off):.1f})")
    print(f"  with the guard     {with_guard:7.1f} µs  (batches {min(on):.1f}-{max(on):.1f})")
    print(f"  added              {added:7.1f} µs a stream, {added / len(events):.2f} µs an event")
    return 0
