"""`python -m tiergate_auth`: run the auth service until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from tiergate_auth.app import create_app
from tiergate_auth.settings import AuthSettings, load
from tiergate_runtime.entry import run_service
from tiergate_state.store import redact_url


def _describe(settings: AuthSettings) -> dict[str, object]:
    return {
        "store": redact_url(settings.store.url),
        "smtp": f"{settings.smtp.host}:{settings.smtp.port}",
        "admin_api": settings.admin_token is not None,
    }


def main() -> int:
    """Load settings, build the app, serve; a bad setting exits 2 with a message naming it."""
    return run_service("auth", load, create_app, describe=_describe)


if __name__ == "__main__":
    sys.exit(main())
