"""`make bench ARGS="overload"`: the real small model saturated through the gateway (issue 10).

Starts cpu-llm (llama.cpp, SmolLM2, 1 thread, `--parallel 2`) and a gateway in front of it
whose `cpu` backend learns its slots from the engine, then opens N streams at once (or spread
over `--spread` seconds) with a short `max_tokens` and records, per request: the status, the
time to the response head (first byte) and to the first token, the end, `Retry-After` and
`x-tiergate-queue-wait-ms`. With `--compare-unbounded` the same load runs a second time with
shedding effectively off (`slots` = 100000: everything queues in the engine, as before the
fix), bounded by the client's own timeout.

Report: how many were answered, how many shed (503) and how fast, and the accepted requests'
time to first byte against the configured wait, in `bench/results/overload-<UTC>.{md,json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tiergate_runtime.server import ServerSettings
from tiergate_testkit.services import ServiceProcess

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent.parent / "results"
ALIAS = "tiergate-small"
QUESTION = [{"role": "user", "content": "Name three colours and say why you like them."}]
UNBOUNDED_SLOTS = 100_000


@dataclass
class Outcome:
    """One streamed request as the client saw it."""

    status: int | None = None
    head_s: float | None = None
    first_token_s: float | None = None
    done_s: float | None = None
    retry_after: int | None = None
    queue_wait_ms: int | None = None
    complete: bool = False
    error: str | None = None
    attempts: int = 1
    first_token_since_first_attempt_s: float | None = None
    """With retries: from the first attempt's start to the first token of the last."""


async def _one(
    client: httpx.AsyncClient, url: str, max_tokens: int, delay_s: float, retries: int
) -> Outcome:
    """One client: a stream, retried after `Retry-After` on a 503 up to `retries` times (as
    the openai SDK does: it waits out a Retry-After of up to 60 s, 2 retries by default)."""
    await asyncio.sleep(delay_s)
    body = {
        "model": ALIAS,
        "messages": QUESTION,
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0,
    }
    origin = time.perf_counter()
    for attempt in range(retries + 1):
        outcome = await _attempt(client, url, body, origin)
        outcome.attempts = attempt + 1
        if outcome.status != 503 or attempt == retries:
            break
        await asyncio.sleep(outcome.retry_after or 1)
    return outcome


async def _attempt(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], origin: float
) -> Outcome:
    outcome = Outcome()
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as response:
            outcome.status = response.status_code
            outcome.head_s = time.perf_counter() - started
            if "retry-after" in response.headers:
                outcome.retry_after = int(response.headers["retry-after"])
            if "x-tiergate-queue-wait-ms" in response.headers:
                outcome.queue_wait_ms = int(response.headers["x-tiergate-queue-wait-ms"])
            async for line in response.aiter_lines():
                first = outcome.first_token_s is None and line.startswith("data: {")
                if first and '"content":"' in line:
                    now = time.perf_counter()
                    outcome.first_token_s = now - started
                    outcome.first_token_since_first_attempt_s = now - origin
                if line == "data: [DONE]":
                    outcome.complete = True
    except httpx.HTTPError as exc:
        outcome.error = type(exc).__name__
    outcome.done_s = time.perf_counter() - started
    return outcome


async def _load(base_url: str, args: argparse.Namespace) -> tuple[list[Outcome], float]:
    streams = args.streams
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    url = f"{base_url}/v1/chat/completions"
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        delays = [args.spread * i / streams for i in range(streams)]
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(_one(client, url, args.max_tokens, d, args.retries) for d in delays)
        )
        return list(outcomes), time.perf_counter() - started


def _no_body_stall_limit(prefix: str) -> dict[str, str]:
    """The servers' request-body stall limit at its maximum, where it exists.

    As first written (issue 10, defect 4) it also fires while a request whose body is complete
    waits for its answer (the app's disconnect watch sits in `receive()`): every request
    waiting over `body_timeout_s` (30 s) got a 408, in the unbounded run here too. Raised so
    that this measures queueing alone.
    """
    if "body_timeout_s" not in ServerSettings.__struct_fields__:
        return {}
    return {f"{prefix}SERVER__BODY_TIMEOUT_S": "3600"}


def _metric(text: str, sample: str) -> float | None:
    """The value of `sample` (name and labels as exposed) in a Prometheus text page."""
    for line in text.splitlines():
        if line.startswith(f"{sample} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _run(args: argparse.Namespace, cpu_url: str, *, unbounded: bool) -> dict[str, Any]:
    backend: dict[str, Any] = {
        "base_url": f"{cpu_url}/v1",
        "kind": "llamacpp",
        "health_url": f"{cpu_url}/readyz",
        "read_timeout_s": 300,
        "max_queue_wait_s": args.wait,
    }
    if args.max_queue is not None:
        backend["max_queue"] = args.max_queue
    if unbounded:
        backend["slots"] = UNBOUNDED_SLOTS
    env = {
        "TIERGATE_GATEWAY_BACKENDS": json.dumps({"cpu": backend}),
        "TIERGATE_GATEWAY_MODELS": json.dumps(
            [{"id": ALIAS, "backend": "cpu", "engine_model": "smollm2-135m-instruct"}]
        ),
        "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}}),  # no limits: the engine alone
        "TIERGATE_GATEWAY_AUTH__URL": "",
        "TIERGATE_GATEWAY_HEALTH_PROBE_INTERVAL_S": "1",
        "TIERGATE_GATEWAY_SERVER__LOG_LEVEL": "info",  # access lines: server-side durations
        **_no_body_stall_limit("TIERGATE_GATEWAY_"),
    }
    with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as gateway:
        slots = None
        for _ in range(100):  # the learned slot count, before the load starts
            slots = _metric(httpx.get(f"{gateway.base_url}/metrics").text, _SLOTS)
            if unbounded or slots == args.parallel:
                break
            time.sleep(0.1)
        # One request first so that nothing measured is the first one through the engine.
        httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            json={"model": ALIAS, "messages": QUESTION, "max_tokens": 4},
            timeout=120,
        )
        outcomes, wall_s = asyncio.run(_load(gateway.base_url, args))
        metrics = httpx.get(f"{gateway.base_url}/metrics").text
        server_503_ms = _server_durations(gateway.output(), 503)
    return {
        "mode": "unbounded (slots=100000)" if unbounded else "shedding",
        "gateway_slots": slots,
        "wall_s": wall_s,
        "summary": _summary(outcomes, args.wait),
        "server_503_ms": _stats_ms([ms / 1000 for ms in server_503_ms]),
        "shed_total_metric": {
            reason: _metric(metrics, f'{_SHED}{{backend="cpu",reason="{reason}"}}')
            for reason in ("queue_full", "wait_timeout")
        },
        "outcomes": [asdict(o) for o in outcomes],
    }


def _server_durations(log: str, status: int) -> list[float]:
    """`duration_ms` of the gateway's access lines for chat completions with `status`."""
    found = []
    for line in log.splitlines():
        if '"event": "request"' not in line or "/v1/chat/completions" not in line:
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("status") == status:
                found.append(float(record["duration_ms"]))
    return found


_SLOTS = 'tiergate_gateway_backend_slots{backend="cpu"}'
_SHED = "tiergate_gateway_shed_total"


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _stats_ms(values: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": statistics.median(ms) if ms else None,
        "p95": _pct(ms, 0.95),
        "max": max(ms) if ms else None,
    }


def _summary(outcomes: list[Outcome], wait_s: float) -> dict[str, Any]:
    answered = [o for o in outcomes if o.status == 200 and o.complete]
    shed = [o for o in outcomes if o.status == 503]
    other = [o for o in outcomes if o not in answered and o not in shed]
    retry_after = sorted({o.retry_after for o in shed if o.retry_after is not None})
    return {
        "requests": len(outcomes),
        "answered": len(answered),
        "shed_503": len(shed),
        "other": len(other),
        "other_kinds": sorted({f"{o.status} {o.error}" for o in other}),
        "shed_latency_ms": _stats_ms([o.head_s for o in shed if o.head_s is not None]),
        "accepted_ttfb_ms": _stats_ms([o.head_s for o in answered if o.head_s is not None]),
        "accepted_ttft_ms": _stats_ms(
            [o.first_token_s for o in answered if o.first_token_s is not None]
        ),
        "accepted_total_ms": _stats_ms([o.done_s for o in answered if o.done_s is not None]),
        "attempts_max": max(o.attempts for o in outcomes),
        "answered_first_token_incl_retries_ms": _stats_ms(
            [
                o.first_token_since_first_attempt_s
                for o in answered
                if o.first_token_since_first_attempt_s is not None
            ]
        ),
        "queue_wait_ms": _stats_ms(
            [o.queue_wait_ms / 1000 for o in answered if o.queue_wait_ms is not None]
        ),
        "retry_after_values": retry_after,
        "configured_wait_ms": wait_s * 1000,
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _markdown(stamp: str, args: argparse.Namespace, runs: list[dict[str, Any]]) -> str:
    lines = [
        f"# Overload through the gateway — {stamp}",
        "",
        f'`make bench ARGS="overload {" ".join(args.argv)}"`: {args.streams} streams '
        f"{'at once' if args.spread == 0 else f'spread over {args.spread:g} s'} to the real "
        f"SmolLM2 (cpu-llm, llama.cpp, 1 thread, parallel {args.parallel}), "
        f"`max_tokens` {args.max_tokens}, client timeout {args.timeout:g} s, "
        f"{args.retries} retries after Retry-After; gateway "
        f"`max_queue_wait_s` {args.wait:g}, `max_queue` "
        f"{args.max_queue if args.max_queue is not None else 'default (4 per slot)'}.",
        "",
        "| mode | slots | answered | shed 503 | other | 503 latency p50 / p95 / max ms "
        "| accepted TTFB p50 / p95 / max ms | accepted TTFT p50 / p95 ms | Retry-After s "
        "| wall s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--|--:|",
    ]
    for run in runs:
        s = run["summary"]
        shed, ttfb, ttft = s["shed_latency_ms"], s["accepted_ttfb_ms"], s["accepted_ttft_ms"]
        slots = run["gateway_slots"]
        lines.append(
            f"| {run['mode']} | {_fmt(slots)} | {s['answered']} | {s['shed_503']} | "
            f"{s['other']} {' '.join(s['other_kinds'])} | "
            f"{_fmt(shed['p50'])} / {_fmt(shed['p95'])} / {_fmt(shed['max'])} | "
            f"{_fmt(ttfb['p50'])} / {_fmt(ttfb['p95'])} / {_fmt(ttfb['max'])} | "
            f"{_fmt(ttft['p50'])} / {_fmt(ttft['p95'])} | "
            f"{', '.join(map(str, s['retry_after_values'])) or '-'} | {run['wall_s']:.1f} |"
        )
    lines.append("")
    for run in runs:
        s, server = run["summary"], run["server_503_ms"]
        e2e = s["answered_first_token_incl_retries_ms"]
        lines.append(
            f"- {run['mode']}: 503s in the gateway's own access log (server side) p50 / p95 / max "
            f"{_fmt(server['p50'], 2)} / {_fmt(server['p95'], 2)} / {_fmt(server['max'], 2)} ms; "
            f"shed counter {run['shed_total_metric']}; answered requests' first token from "
            f"their first attempt p50 / p95 / max {_fmt(e2e['p50'])} / {_fmt(e2e['p95'])} / "
            f"{_fmt(e2e['max'])} ms; attempts per client max {s['attempts_max']}."
        )
    lines += [
        "",
        "TTFB: from sending the request to the response head (for a stream the gateway sends "
        "the head once the engine answered, so it includes the wait for a slot). TTFT: to the "
        "first content chunk. 503 latency: to the 503's head. Raw outcomes in the JSON file.",
    ]
    if _no_body_stall_limit(""):
        lines += [
            "",
            "Both servers ran with `server.body_timeout_s = 3600`: as first written, that limit "
            "also cut requests waiting for their answer after 30 s (408), which would measure "
            "it instead of queueing.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the overload scenario(s); print and write the results."""
    parser = argparse.ArgumentParser(prog="make bench ARGS='overload ...'")
    parser.add_argument("--streams", type=int, default=200, help="concurrent streams (200)")
    parser.add_argument("--max-tokens", type=int, default=32, help="per request (32)")
    parser.add_argument("--parallel", type=int, default=2, help="llama.cpp slots (2)")
    parser.add_argument("--wait", type=float, default=10.0, help="max_queue_wait_s (10)")
    parser.add_argument("--max-queue", type=int, help="gateway max_queue (default 4 per slot)")
    parser.add_argument("--spread", type=float, default=0.0, help="start over N seconds (0)")
    parser.add_argument("--timeout", type=float, default=300.0, help="client timeout s (300)")
    parser.add_argument(
        "--retries",
        type=int,
        default=0,
        help="retry a 503 after its Retry-After, up to N times (the openai SDK: 2); default 0",
    )
    parser.add_argument(
        "--compare-unbounded", action="store_true", help="also run with shedding off"
    )
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else []
    cpu_env = {
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__PARALLEL": str(args.parallel),
        "TIERGATE_CPU_LLM_ENGINE__CTX_SIZE": "4096",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
        "TIERGATE_CPU_LLM_SERVER__LOG_LEVEL": "warning",
        **_no_body_stall_limit("TIERGATE_CPU_LLM_"),
    }
    runs = []
    with ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", cpu_env) as cpu:
        runs.append(_run(args, cpu.base_url, unbounded=False))
        if args.compare_unbounded:
            runs.append(_run(args, cpu.base_url, unbounded=True))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    document = {"utc": stamp, "argv": args.argv, "runs": runs}
    (RESULTS / f"overload-{stamp}.json").write_text(json.dumps(document, indent=2) + "\n")
    text = _markdown(stamp, args, runs)
    (RESULTS / f"overload-{stamp}.md").write_text(text)
    print(text)
    shedding = runs[0]["summary"]
    return 0 if shedding["other"] == 0 and shedding["answered"] > 0 else 1
