"""`python -m tiergate_rag`: serve search over the configured corpus until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from tiergate_rag.app import create_app
from tiergate_rag.settings import RagSettings, load
from tiergate_runtime.entry import run_service


def _describe(settings: RagSettings) -> dict[str, object]:
    return {"corpus": settings.corpus, "mcp": settings.mcp.enabled}


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    return run_service("rag", load, create_app, describe=_describe)


if __name__ == "__main__":
    sys.exit(main())
