"""Compare HTTP servers on one tiny ASGI app: requests/s and server CPU per request (issue 10).

Each server runs alone on CPU 1 (taskset), wrk on CPU 0; the servers take turns, round after
round, so drift on a shared machine hits them all alike; the report gives medians. Server CPU
is the utime + stime of the server's whole process group (granian and hypercorn run a worker
process) over the measured wrk run, from /proc.

    python3 bench/http_servers/run.py --rounds 5 --seconds 8 --connections 64
      [--main-python .venv/bin/python] [--alt-python /tmp/alt/bin/python]

The alternatives (granian, hypercorn) are not project dependencies: install them in a
separate venv (`python3 -m venv /tmp/alt && /tmp/alt/bin/pip install granian hypercorn
uvicorn==0.54.0 httptools uvloop`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def variants(main_python: str, alt_python: str) -> dict[str, list[str]]:
    alt_bin = Path(alt_python).parent
    granian = "--interface asgi --loop uvloop --http 1 --no-ws --workers 1 --runtime-threads 1"
    return {
        "uvicorn-httptools": [main_python, str(HERE / "plain.py"), "{port}"],
        "uvicorn-limited": [main_python, str(HERE / "ours.py"), "{port}"],
        "granian": [
            str(alt_bin / "granian"),
            *granian.split(),
            *["--log-level", "warning", "--host", "127.0.0.1", "--port", "{port}", "app:app"],
        ],
        "hypercorn": [
            str(alt_bin / "hypercorn"),
            *[
                "-k",
                "uvloop",
                "-w",
                "1",
                "--log-level",
                "warning",
                "-b",
                "127.0.0.1:{port}",
                "app:app",
            ],
        ],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


def group_cpu_s(pgid: int) -> float:
    """utime + stime of every live process in the group, seconds."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5 (pgrp), counted after the ")" of comm
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def wrk(port: int, seconds: int, connections: int, post: bool) -> float:
    command = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    if post:
        command += ["-s", str(HERE / "post.lua")]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match is not None, out
    return float(match.group(1))


def measure(command: list[str], seconds: int, connections: int, post: bool) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "1", *(part.replace("{port}", str(port)) for part in command)],
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(port, proc)
        wrk(port, 2, connections, post)  # warm-up
        before = group_cpu_s(proc.pid)
        rps = wrk(port, seconds, connections, post)
        cpu = group_cpu_s(proc.pid) - before
        return rps, cpu / (rps * seconds) * 1e6  # µs of server CPU per request
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--main-python", default=str(ROOT / ".venv/bin/python"))
    parser.add_argument("--alt-python", default="/tmp/alt/bin/python")
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--modes", default="get,post")
    args = parser.parse_args()
    table = variants(args.main_python, args.alt_python)
    if args.only:
        table = {k: v for k, v in table.items() if k in args.only.split(",")}
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for mode in args.modes.split(","):
        for round_ in range(args.rounds):
            for name, command in table.items():
                rps, cpu_us = measure(command, args.seconds, args.connections, mode == "post")
                results.setdefault(mode, {}).setdefault(name, []).append((rps, cpu_us))
                print(f"{mode} round {round_ + 1} {name}: {rps:.0f} req/s, {cpu_us:.1f} µs/req")
                sys.stdout.flush()
    print("\n| mode | server | req/s median (min-max) | server CPU µs/req median (min-max) |")
    print("|---|---|---|---|")
    for mode, by_name in results.items():
        for name, runs in by_name.items():
            rates = [r for r, _ in runs]
            cpus = [c for _, c in runs]
            rate = f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})"
            cpu = f"{statistics.median(cpus):.1f} ({min(cpus):.1f}-{max(cpus):.1f})"
            print(f"| {mode} | {name} | {rate} | {cpu} |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
