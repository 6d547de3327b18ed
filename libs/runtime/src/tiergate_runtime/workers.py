"""Several worker processes on one listening socket, supervised, with one set of metrics.

`serve_workers(target, settings)` binds the socket once and starts `settings.workers` copies of
`python -m tiergate_runtime.workers TARGET FD`; each imports `TARGET` ("module:function", a
function that loads its settings and returns the ASGI app) and serves on the inherited socket,
so the kernel spreads connections across them. A worker that dies is replaced (with backoff);
SIGTERM/SIGINT stop them all. Prometheus runs in multiprocess mode (a directory of shared
files made here and removed at exit), so `/metrics` on any worker reports every worker's sum.
With `metrics_port` set, the supervisor binds that socket too and hands it to the first worker
only (and to its replacement), which serves the sum there; the public port answers 404.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from tiergate_runtime.process import die_with_parent
from tiergate_runtime.server import (
    ServerSettings,
    bind_metrics_socket,
    bind_socket,
    run_on_socket,
    write_port_file,
)

__all__ = ["MULTIPROC_ENV", "serve_workers", "worker_main"]

# prometheus_client's own switch for multiprocess mode; read by it at import time.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


def _spawn(
    target: str, fd: int, env: dict[str, str], metrics_fd: int | None = None
) -> subprocess.Popen[bytes]:
    extra = [str(metrics_fd)] if metrics_fd is not None else []
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tiergate_runtime.workers", target, str(fd), *extra],
        pass_fds=(fd,) if metrics_fd is None else (fd, metrics_fd),
        env=env,
    )


def serve_workers(target: str, settings: ServerSettings) -> int:
    """Run `settings.workers` workers of `target` until SIGTERM/SIGINT; return an exit status."""
    sock = bind_socket(settings.host, settings.port, settings.backlog)
    try:
        metrics_sock = bind_metrics_socket(settings)
    except OSError:
        sock.close()
        raise
    metrics_fd = metrics_sock.fileno() if metrics_sock is not None else None
    if settings.port_file:
        write_port_file(settings.port_file, sock.getsockname()[1])
    metrics_dir = tempfile.mkdtemp(prefix="tiergate-metrics-")
    env = {**os.environ, MULTIPROC_ENV: metrics_dir}
    stopping = False

    def stop(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    fd = sock.fileno()
    # The first worker alone serves the internal metrics port (if any), for all of them.
    workers = [
        _spawn(target, fd, env, metrics_fd if index == 0 else None)
        for index in range(settings.workers)
    ]
    restarts = [0] * len(workers)
    try:
        while not stopping:
            for index, worker in enumerate(workers):
                if worker.poll() is not None and not stopping:
                    delay = _RESTART_BACKOFF_S[min(restarts[index], len(_RESTART_BACKOFF_S) - 1)]
                    print(
                        f"worker {worker.pid} exited with {worker.returncode}; "
                        f"restarting in {delay} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(delay)
                    restarts[index] += 1
                    workers[index] = _spawn(target, fd, env, metrics_fd if index == 0 else None)
            time.sleep(0.2)
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.graceful_shutdown_s + 5
        for worker in workers:
            try:
                worker.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        sock.close()
        if metrics_sock is not None:
            metrics_sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def worker_main(argv: list[str]) -> int:
    """Entry of one worker: build the app from `module:function`, serve the inherited socket(s).

    argv: `TARGET FD [METRICS_FD]`.
    """
    target, fd = argv[1], int(argv[2])
    metrics_fd = int(argv[3]) if len(argv) > 3 else None
    # Die with the supervisor: a worker must never outlive it (issue 2's no-orphans rule).
    die_with_parent()
    module_name, _, function = target.partition(":")
    factory = getattr(importlib.import_module(module_name), function)
    app, settings = factory()
    sock = socket.socket(fileno=fd)
    metrics_sock = socket.socket(fileno=metrics_fd) if metrics_fd is not None else None
    run_on_socket(app, sock, settings, metrics_sock)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv))
