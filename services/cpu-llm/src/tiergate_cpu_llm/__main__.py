"""`python -m tiergate_cpu_llm`: run the cpu-llm service until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from tiergate_cpu_llm.app import create_app
from tiergate_cpu_llm.model import ModelFileError
from tiergate_cpu_llm.settings import load
from tiergate_runtime.entry import run_service


def main() -> int:
    """Load settings, build the app, serve; a bad setting or model file exits 2 with a message."""
    return run_service("cpu-llm", load, create_app, startup_errors=(ModelFileError,))


if __name__ == "__main__":
    sys.exit(main())
