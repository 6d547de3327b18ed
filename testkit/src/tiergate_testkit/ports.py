"""A free TCP port on 127.0.0.1 for a process a test is about to start (bound, then released:
the process binds it next; a test that may race another uses the service's port file)."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
