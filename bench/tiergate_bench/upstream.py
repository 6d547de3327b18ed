"""nginx from the templates in bench/nginx/: the fixed OpenAI upstream, and the floor proxy."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tiergate_bench.fixtures import chat_completion, sse_stream
from tiergate_bench.procs import Child, free_port, pinned, wait_until

__all__ = ["Floor", "Upstream", "render", "start_floor", "start_upstream"]

_PLACEHOLDER = re.compile(r"@[A-Z][A-Z_]*@")
NGINX_DIR = Path(__file__).resolve().parent.parent / "nginx"


def render(template: str, values: dict[str, str | int]) -> str:
    """Fill the @NAME@ placeholders of `template`; fail on any left unfilled."""
    text = (NGINX_DIR / template).read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    leftover = _PLACEHOLDER.search(code)
    if leftover is not None:
        raise ValueError(f"{template}: placeholder {leftover.group()} was not filled")
    return text


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _start_nginx(name: str, conf: str, workdir: Path, cpus: str | None) -> Child:
    conf_path = workdir / f"{name}.conf"
    conf_path.write_text(conf)
    args = ["-c", str(conf_path), "-p", str(workdir), "-e", str(workdir / f"{name}-error.log")]
    check = subprocess.run(
        ["nginx", "-t", "-q", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx rejected {conf_path}:\n{check.stderr}")
    return Child(name, pinned(cpus, ["nginx", *args]), workdir / f"{name}.log")


@dataclass
class Upstream:
    """The fixed upstream: one nginx, one port per answer kind."""

    json_port: int
    sse_port: int
    drip_port: int
    status_port: int
    drip_rate: int
    child: Child

    def base_url(self, port: int) -> str:
        """The OpenAI base URL (with /v1) of one of the upstream's ports."""
        return f"http://127.0.0.1:{port}/v1"

    def requests(self) -> int:
        """Requests the upstream has received so far (this query included), from stub_status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        try:
            conn.request("GET", "/status")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        # "Active connections: 1\nserver accepts handled requests\n 5 5 12\n..."
        return int(text.splitlines()[2].split()[2])


@dataclass
class Floor:
    """The plain nginx reverse proxy in front of the upstream."""

    json_port: int
    sse_port: int
    child: Child


def start_upstream(workdir: Path, cpus: str | None, drip_seconds: float) -> Upstream:
    """Start the fixed upstream; the drip port paces the stream to last about `drip_seconds`."""
    stream = sse_stream()
    # limit_rate lets about one second's worth out at once, then paces the rest.
    drip_rate = max(16, int(len(stream) / max(drip_seconds - 1.0, 1.0)))
    ports = {
        "JSON_PORT": free_port(),
        "SSE_PORT": free_port(),
        "DRIP_PORT": free_port(),
        "STATUS_PORT": free_port(),
    }
    conf = render(
        "upstream.conf.in",
        {
            **ports,
            "DIR": str(workdir),
            "DRIP_RATE": drip_rate,
        },
    )
    (workdir / "chat-completion.json").write_bytes(chat_completion())
    (workdir / "chat-stream.sse").write_bytes(stream)
    child = _start_nginx("upstream", conf, workdir, cpus)
    upstream = Upstream(
        json_port=ports["JSON_PORT"],
        sse_port=ports["SSE_PORT"],
        drip_port=ports["DRIP_PORT"],
        status_port=ports["STATUS_PORT"],
        drip_rate=drip_rate,
        child=child,
    )
    for port in ports.values():
        wait_until(partial(_listening, port), 15, "listening", child)
    return upstream


def start_floor(workdir: Path, cpus: str | None, upstream: Upstream) -> Floor:
    """Start the floor proxy, pinned to `cpus`."""
    ports = {"FLOOR_JSON_PORT": free_port(), "FLOOR_SSE_PORT": free_port()}
    conf = render(
        "floor.conf.in",
        {
            **ports,
            "DIR": str(workdir),
            "JSON_PORT": upstream.json_port,
            "SSE_PORT": upstream.sse_port,
        },
    )
    child = _start_nginx("floor", conf, workdir, cpus)
    for port in ports.values():
        wait_until(partial(_listening, port), 15, "listening", child)
    return Floor(json_port=ports["FLOOR_JSON_PORT"], sse_port=ports["FLOOR_SSE_PORT"], child=child)
