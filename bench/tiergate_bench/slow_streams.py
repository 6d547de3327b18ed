"""Many concurrent slow streams through one system, from an asyncio client; RSS at the peak."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

import httpx

from tiergate_bench.fixtures import SSE_CHUNKS, chat_request
from tiergate_bench.procstat import sample_tree
from tiergate_bench.systems import System

__all__ = ["SlowStreams", "hold_slow_streams"]


@dataclass
class SlowStreams:
    """How `streams` concurrent dripping streams through one system went."""

    system: str
    streams: int
    completed: int = 0  # 200, every chunk, then [DONE]
    errors: int = 0  # failed requests: status, error event, exception
    incomplete: int = 0  # 200 but ended without [DONE] or with chunks missing
    peak_open: int = 0  # streams open at once (answer head received, not finished)
    rss_idle_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_after_mib: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    stream_p50_s: float | None = None
    stream_max_s: float | None = None
    error_kinds: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class _Tally:
    def __init__(self) -> None:
        self.open = 0
        self.peak_open = 0
        self.kinds: Counter[str] = Counter()
        self.durations: list[float] = []
        self.completed = 0
        self.incomplete = 0


async def _one(client: httpx.AsyncClient, url: str, body: bytes, tally: _Tally) -> None:
    started = time.monotonic()
    opened = False
    try:
        async with client.stream(
            "POST", url, content=body, headers={"content-type": "application/json"}
        ) as response:
            if response.status_code != 200:
                tally.kinds[f"status {response.status_code}"] += 1
                return
            opened = True
            tally.open += 1
            tally.peak_open = max(tally.peak_open, tally.open)
            chunks, done = 0, False
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    if "error" in json.loads(line[6:]):
                        tally.kinds["error event"] += 1
                        return
                    chunks += 1
            if done and chunks >= SSE_CHUNKS:
                tally.completed += 1
                tally.durations.append(time.monotonic() - started)
            else:
                tally.incomplete += 1
    except (httpx.HTTPError, OSError, ValueError) as exc:
        tally.kinds[type(exc).__name__] += 1
    finally:
        if opened:
            tally.open -= 1


async def _hold(system: System, streams: int, deadline_s: float) -> SlowStreams:
    endpoint = system.endpoints["drip"]
    body = chat_request(endpoint.model, stream=True)
    result = SlowStreams(system=system.name, streams=streams)
    before = sample_tree(system.root.pid)
    result.rss_idle_mib = before.rss / 2**20
    peak_rss = before.rss
    tally = _Tally()
    limits = httpx.Limits(max_connections=streams + 16, max_keepalive_connections=0)
    timeout = httpx.Timeout(connect=30.0, read=60.0, write=30.0, pool=60.0)
    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks = [
            asyncio.create_task(_one(client, endpoint.url, body, tally)) for _ in range(streams)
        ]
        waiting = asyncio.gather(*tasks)
        while not waiting.done():
            peak_rss = max(peak_rss, sample_tree(system.root.pid).rss)
            if time.monotonic() - started > deadline_s:
                waiting.cancel()
                tally.kinds["harness deadline"] += sum(not task.done() for task in tasks)
                break
            await asyncio.sleep(0.25)
        await asyncio.gather(waiting, return_exceptions=True)
    result.wall_s = time.monotonic() - started
    after = sample_tree(system.root.pid)
    result.rss_peak_mib = max(peak_rss, after.rss) / 2**20
    result.rss_after_mib = after.rss / 2**20
    result.cpu_s = after.cpu_s - before.cpu_s
    result.completed = tally.completed
    result.incomplete = tally.incomplete
    result.errors = sum(tally.kinds.values())
    result.error_kinds = dict(tally.kinds)
    result.peak_open = tally.peak_open
    if tally.durations:
        result.stream_p50_s = median(tally.durations)
        result.stream_max_s = max(tally.durations)
    return result


def hold_slow_streams(system: System, streams: int, drip_seconds: float) -> SlowStreams:
    """Open `streams` slow streams at once through `system` and follow them to the end."""
    return asyncio.run(_hold(system, streams, deadline_s=drip_seconds * 4 + 60))
