"""The load generator: wrk with bench/wrk/chat.lua, one thread, pinned next to the upstream."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from tiergate_bench.fixtures import chat_request
from tiergate_bench.options import BENCH_DIR, Scenario
from tiergate_bench.procs import pinned
from tiergate_bench.systems import Endpoint

__all__ = ["Wrk", "WrkResult", "run_wrk"]

LUA_SCRIPT = BENCH_DIR / "wrk" / "chat.lua"


@dataclass(frozen=True)
class WrkResult:
    """What wrk's done() printed for one run (latencies in µs)."""

    requests: int
    duration_s: float
    status_errors: int
    socket_errors: int
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float
    raw: dict[str, Any]

    @property
    def ok_requests(self) -> int:
        """Completed requests with a 2xx/3xx answer."""
        return self.requests - self.status_errors

    @property
    def errors(self) -> int:
        """Non-2xx answers plus socket errors (connect, read, write, timeout)."""
        return self.status_errors + self.socket_errors

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return self.ok_requests / self.duration_s if self.duration_s > 0 else 0.0


class Wrk:
    """One wrk process running against an endpoint; `result()` waits for its JSON line."""

    def __init__(
        self,
        endpoint: Endpoint,
        scenario: Scenario,
        duration_s: float,
        cpus: str,
        timeout_s: float,
    ) -> None:
        env = dict(os.environ)
        env["BENCH_BODY"] = chat_request(endpoint.model, stream=scenario.mode == "sse").decode()
        env["BENCH_AUTHORIZATION"] = endpoint.authorization
        self.duration_s = max(1, round(duration_s))
        self._limit_s = self.duration_s + timeout_s + 30
        argv = pinned(
            cpus,
            [
                "wrk",
                "-t1",
                f"-c{scenario.connections}",
                f"-d{self.duration_s}s",
                f"--timeout={max(1, round(timeout_s))}s",
                "-s",
                str(LUA_SCRIPT),
                endpoint.url,
            ],
        )
        self._proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def result(self) -> WrkResult:
        """Wait for wrk; RuntimeError if it failed or printed no result."""
        try:
            stdout, stderr = self._proc.communicate(timeout=self._limit_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise RuntimeError(f"wrk still running after {self._limit_s:.0f} s") from None
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if self._proc.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({self._proc.returncode}): {stderr.strip()[-500:]}")
        raw = json.loads(lines[-1])
        return WrkResult(
            requests=int(raw["requests"]),
            duration_s=raw["duration_us"] / 1e6,
            status_errors=int(raw["status_errors"]),
            socket_errors=int(raw["socket_errors"]),
            p50_us=float(raw["p50_us"]),
            p90_us=float(raw["p90_us"]),
            p99_us=float(raw["p99_us"]),
            max_us=float(raw["max_us"]),
            mean_us=float(raw["mean_us"]),
            raw=raw,
        )

    def stop(self) -> None:
        """Kill wrk if it is still running (on an error or Ctrl-C)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def run_wrk(
    endpoint: Endpoint,
    scenario: Scenario,
    duration_s: float,
    cpus: str,
    timeout_s: float,
) -> WrkResult:
    """Run wrk against `endpoint` for `duration_s` and wait for its result."""
    wrk = Wrk(endpoint, scenario, duration_s, cpus, timeout_s)
    try:
        return wrk.result()
    finally:
        wrk.stop()
