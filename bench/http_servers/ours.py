"""uvicorn exactly as tiergate runs it (`make_server`: LimitedHttpProtocol, default limits)."""

from __future__ import annotations

import sys

from app import app

from tiergate_runtime.server import ServerSettings, serve

if __name__ == "__main__":
    serve(app, ServerSettings(host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"))
