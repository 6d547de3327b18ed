"""Which servers enforce issue 10's limits: probe each one on real sockets, print a table.

Each server runs the bench app with its own limit settings turned as low as it allows (a 2 s
head timeout, 16 KiB headers, a cap of 100 where it has one), then gets: a partial head, a
stalled body, a 1 MB header, 1,000 headers, `GARBAGE`, a GET timed while 80 slow connections
are held, and a GET on a connection opened past 120 idle ones.

    python3 bench/http_servers/probe.py [--main-python ...] [--alt-python /tmp/alt/bin/python]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import HERE, ROOT, free_port, wait_listening

PARTIAL = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: "
STALLED = b'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"a":'
OK = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def servers(main_python: str, alt_python: str, workdir: Path) -> dict[str, list[str]]:
    alt_bin = Path(alt_python).parent
    hypercorn_toml = workdir / "hypercorn.toml"
    hypercorn_toml.write_text("h11_max_incomplete_size = 16384\nread_timeout = 2\nbacklog = 2048\n")
    return {
        "uvicorn-httptools": [main_python, str(HERE / "plain.py"), "{port}"],
        "uvicorn-limited": [main_python, str(HERE / "probe_ours.py"), "{port}"],
        "granian": [
            str(alt_bin / "granian"),
            *["--interface", "asgi", "--loop", "uvloop", "--http", "1", "--no-ws"],
            *["--workers", "1", "--http1-header-read-timeout", "2000"],
            *["--http1-buffer-size", "16384", "--backpressure", "100"],
            *["--log-level", "warning", "--host", "127.0.0.1", "--port", "{port}", "app:app"],
        ],
        "hypercorn": [
            str(alt_bin / "hypercorn"),
            *["-k", "uvloop", "-w", "1", "-c", str(hypercorn_toml), "--log-level", "warning"],
            *["-b", "127.0.0.1:{port}", "app:app"],
        ],
    }


def exchange(port: int, data: bytes, wait_s: float = 15.0) -> tuple[str, float]:
    """What the server answered (status line and content-type) and when it closed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait_s)
    started = time.monotonic()
    got = b""
    try:
        try:
            sock.sendall(data)
        except OSError as exc:
            return f"send failed: {type(exc).__name__}", time.monotonic() - started
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
            if got.count(b"\r\n\r\n") and b"connection: close" not in got.lower():
                # keep-alive answer: stop at its end (close not expected)
                head = got.split(b"\r\n\r\n", 1)[0].lower()
                if b"content-length" in head:
                    break
    except TimeoutError:
        return f"no close in {wait_s:.0f} s, got {summary(got)}", wait_s
    except OSError as exc:
        return f"{type(exc).__name__}, got {summary(got)}", time.monotonic() - started
    finally:
        sock.close()
    return summary(got), time.monotonic() - started


def summary(data: bytes) -> str:
    if not data:
        return "nothing"
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    ctype = next(
        (h.split(":", 1)[1].strip() for h in head if h.lower().startswith("content-type")), "-"
    )
    return f"{' '.join(head[0].split()[1:3])} [{ctype}]"


def held_probe(port: int, held: int) -> str:
    clients = []
    try:
        for _ in range(held):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(PARTIAL)
            clients.append(sock)
        time.sleep(0.5)
        answer, seconds = exchange(port, OK, 10)
        return f"{answer} in {seconds * 1000:.1f} ms"
    finally:
        for sock in clients:
            sock.close()


def cap_probe(port: int, cap: int) -> str:
    clients = []
    try:
        for _ in range(cap + 20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            clients.append(sock)
        time.sleep(0.5)
        answer, seconds = exchange(port, OK, 5)
        return f"{answer} after {seconds * 1000:.0f} ms"
    finally:
        for sock in clients:
            sock.close()


def probe(name: str, command: list[str]) -> dict[str, str]:
    port = free_port()
    proc = subprocess.Popen(
        [part.replace("{port}", str(port)) for part in command],
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results: dict[str, str] = {}
    try:
        wait_listening(port, proc)
        for label, data in [
            ("partial head", PARTIAL),
            ("stalled body", STALLED),
            (
                "1 MB header",
                b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
            ),
            (
                "1,000 headers",
                b"GET / HTTP/1.1\r\nHost: t\r\n"
                + b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
                + b"\r\n",
            ),
            ("GARBAGE", b"GARBAGE\r\n\r\n"),
        ]:
            answer, seconds = exchange(port, data)
            results[label] = f"{answer}, closed after {seconds:.2f} s"
        results["80 slow held, then GET"] = held_probe(port, 80)
        results["120 idle open, then GET (cap 100)"] = cap_probe(port, 100)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for label, text in results.items():
        print(f"| {name} | {label} | {text} |")
        sys.stdout.flush()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main-python", default=str(ROOT / ".venv/bin/python"))
    parser.add_argument("--alt-python", default="/tmp/alt/bin/python")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        table = servers(args.main_python, args.alt_python, Path(workdir))
        print("| server | probe | result |\n|---|---|---|")
        for name, command in table.items():
            if not args.only or name in args.only.split(","):
                probe(name, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
