"""`python -m tiergate_runtime.mesh config/mesh.toml`: run the whole mesh on one machine.

Starts each service of the mesh file in order as a child process, waits until it is ready
before starting the next, prints where to point a client, and on Ctrl-C (or when any service
dies) stops them all in reverse order. No Docker, no Redis: each service uses its embedded
defaults unless its own config says otherwise.

Secrets the services must share (the auth pepper, the internal and admin tokens) are named in
`secrets` and made fresh for each run; `${NAME}` in a service's environment or in the banner
is replaced by the value. `TIERGATE_MESH_SECRET_<NAME>` in the environment fixes one instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import msgspec

from tiergate_runtime.logging import configure_logging
from tiergate_runtime.process import ChildProcess
from tiergate_runtime.settings import SettingsError, load_settings

__all__ = ["MeshService", "MeshSettings", "main"]


class MeshService(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One service of the mesh: the module to run, its environment, how to know it is ready.

    Ready when `ready_url` answers 200, or (for a non-HTTP service) when `ready_tcp`
    (`host:port`) accepts a connection.
    """

    name: str
    module: str
    args: list[str] = []
    ready_url: str | None = None
    ready_tcp: str | None = None
    ready_timeout_s: float = 180.0
    env: dict[str, str] = msgspec.field(default_factory=dict)


class MeshSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The mesh file: services in start order, and what to tell the user."""

    services: list[MeshService]
    banner: str = ""
    log_level: str = "info"
    secrets: list[str] = []


_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def _secrets(names: list[str], environ: dict[str, str]) -> dict[str, str]:
    return {
        name: environ.get(f"TIERGATE_MESH_SECRET_{name}") or secrets.token_urlsafe(32)
        for name in names
    }


def _fill(text: str, values: dict[str, str]) -> str:
    """Replace `${NAME}` with its value; an unknown name is a configuration error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise RuntimeError(f"unknown placeholder ${{{name}}} (declare it in `secrets`)")
        return values[name]

    return _PLACEHOLDER.sub(value, text)


def _tcp_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


async def _wait_ready(child: ChildProcess, service: MeshService) -> None:
    deadline = time.monotonic() + service.ready_timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if child.returncode is not None:
                raise RuntimeError(f"{service.name} exited with status {child.returncode}")
            if service.ready_url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(service.ready_url)).status_code == 200:
                        return
            elif service.ready_tcp is None or await asyncio.to_thread(_tcp_open, service.ready_tcp):
                return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{service.name} not ready after {service.ready_timeout_s} s")


async def _run(settings: MeshSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[ChildProcess] = []
    values = _secrets(settings.secrets, dict(os.environ))
    try:
        for service in settings.services:
            env = {**os.environ, **{k: _fill(v, values) for k, v in service.env.items()}}
            argv = [sys.executable, "-m", service.module, *service.args]
            child = ChildProcess(service.name, argv, env, capture_output=False)
            await child.start()
            children.append(child)
            waiter = asyncio.ensure_future(_wait_ready(child, service))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                waiter.cancel()
                return 130
            waiter.result()
        print(_fill(settings.banner, values), file=sys.stderr, flush=True)
        exits = [asyncio.ensure_future(c.wait()) for c in children]
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*exits, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in [*exits, stopper]:
            task.cancel()
    except RuntimeError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        return 1
    else:
        if stopper in done:
            return 0
        dead = [c.name for c in children if c.returncode is not None]
        print(f"mesh: {', '.join(dead)} exited; stopping the mesh", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            await child.stop(15.0)


def main(argv: list[str]) -> int:
    """Run the mesh described by the TOML file in argv[1]."""
    if len(argv) != 2:
        print("usage: python -m tiergate_runtime.mesh MESH.toml", file=sys.stderr)
        return 2
    try:
        settings = load_settings(
            MeshSettings, env_prefix="TIERGATE_MESH_", config_path=Path(argv[1])
        )
    except SettingsError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, service="mesh")
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
