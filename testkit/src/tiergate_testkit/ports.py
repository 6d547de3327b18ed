"""A free TCP port on 127.0.0.1 for a process a test is about to start.

The port is bound once to check that it is free, then released, and the process binds it
next. It is taken from below the kernel's ephemeral range (`ip_local_port_range`), never from
it. The kernel hands ports in that range to every outgoing connection as its source port. So a
port taken with `bind(0)` and released can be given to another process's connection before
the engine meant for it binds it ("address already in use"). That was seen under load, with a
fake engine started by gpu-llm. Below the range, only an explicit bind can take the port.
Within this process, a port is not handed out twice.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_LOWEST = 10_000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default: 32768)."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on right now, below the ephemeral range, not given out before."""
    high = _ephemeral_low() - 1
    if high <= _LOWEST:  # an unusual range: fall back to the kernel's choice
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(1000):
        port = random.randint(_LOWEST, high)  # noqa: S311 - not for security
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise RuntimeError(f"no free port between {_LOWEST} and {high}")
