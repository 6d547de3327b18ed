"""tiergate's server for probe.py: its limits set like the others' (2 s head, 16 KiB, cap 100)."""

from __future__ import annotations

import sys

from app import app

from tiergate_runtime.server import ServerSettings, serve

if __name__ == "__main__":
    settings = ServerSettings(
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        head_timeout_s=2,
        body_timeout_s=2,
        max_header_bytes=16384,
        max_connections=100,
    )
    serve(app, settings)
