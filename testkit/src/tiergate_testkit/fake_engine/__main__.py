"""CLI: run the fake engine as a process until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from tiergate_testkit.fake_engine.engine import FakeEngine

__all__ = ["main"]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tiergate_testkit.fake_engine",
        description="Fake OpenAI engine for fault-injection tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="ID",
        help="model id to serve; repeat for several (default fake-model)",
    )
    parser.add_argument(
        "--load-time",
        type=float,
        default=0.0,
        help="seconds /health answers 503 after start (a GPU engine loading weights)",
    )
    parser.add_argument(
        "--ready-file",
        help="/health answers 503 until this file exists (an engine that cannot load)",
    )
    parser.add_argument(
        "--scaled-to-zero",
        action="store_true",
        help="down (503) until POST /_fake/wake, like a platform's GPU service at zero",
    )
    parser.add_argument(
        "--slots",
        type=int,
        help="serve at most N requests (chat, completions, embeddings) at once, the rest wait"
        " (llama.cpp's --parallel);"
        " also answers /props and /slots",
    )
    parser.add_argument(
        "--embedding-dim",
        type=int,
        default=16,
        help="length of every /v1/embeddings vector (default %(default)s)",
    )
    parser.add_argument(
        "--default-fake",
        help="JSON `fake` options for requests that send none, e.g. '{\"header_delay_s\": 0.5}'",
    )
    parser.add_argument(
        "--port-file",
        type=Path,
        help="write the bound port here (atomically) once listening",
    )
    return parser.parse_args(argv)


def _write_port_file(path: Path, port: int) -> None:
    # Write-then-rename so a poller never reads a half-written number.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{port}\n")
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def _run(args: argparse.Namespace) -> None:
    engine = FakeEngine(
        models=args.models or ["fake-model"],
        host=args.host,
        port=args.port,
        load_time_s=args.load_time,
        ready_file=args.ready_file,
        scaled_to_zero=args.scaled_to_zero,
        slots=args.slots,
        embedding_dim=args.embedding_dim,
        default_fake=json.loads(args.default_fake) if args.default_fake else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with engine:
        if args.port_file is not None:
            _write_port_file(args.port_file, engine.port)
        print(f"listening {engine.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status (0 on a signal)."""
    asyncio.run(_run(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
