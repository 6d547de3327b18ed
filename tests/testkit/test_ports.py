"""`free_port`: below the kernel's ephemeral range (an outgoing connection cannot take it
between the check and the engine's bind), bindable, and never handed out twice."""

from __future__ import annotations

import socket
from pathlib import Path

from tiergate_testkit.ports import free_port


def test_ports_are_below_the_ephemeral_range_free_and_not_repeated() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free: a process can bind it now
