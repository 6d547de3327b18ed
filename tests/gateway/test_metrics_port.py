"""`[server] metrics_port` with two workers: one internal port with the sum, 404 on the public one.

The gateway process itself (supervisor and workers) on ephemeral ports; the internal port's
socket is bound by the supervisor and served by the first worker, then by its replacement.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

PREFIX = "TIERGATE_GATEWAY_"
MODELS_SERVED = re.compile(
    r'tiergate_gateway_http_requests_total\{method="GET",route="/v1/models",status="200"\} (\S+)'
)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(c) for c in task.read_text().split()]
    return found


def scrape(port: int) -> str | None:
    try:
        with httpx.Client(timeout=5) as client:
            response = client.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def test_internal_metrics_port_with_two_workers(tmp_path: Path) -> None:
    port_file = tmp_path / "metrics.port"
    env = {
        f"{PREFIX}SERVER__WORKERS": "2",
        f"{PREFIX}SERVER__METRICS_PORT": "0",
        f"{PREFIX}SERVER__METRICS_PORT_FILE": str(port_file),
        f"{PREFIX}TIERS": json.dumps({"anonymous": {}}),  # unlimited: this test counts
    }
    service = ServiceProcess("tiergate_gateway", PREFIX, env, ready_path="/healthz")
    with service:
        assert service.proc is not None
        supervisor = service.proc.pid
        assert wait_until(lambda: len(children(supervisor)) == 2, 20)
        assert wait_until(port_file.exists, 20)
        metrics_port = int(port_file.read_text())
        for _ in range(20):  # a new connection each time, so both workers take some
            with httpx.Client(base_url=service.base_url, timeout=10) as client:
                assert client.get("/v1/models").status_code == 200
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            public = client.get("/metrics")
        assert public.status_code == 404
        assert public.json()["error"]["code"] == "unknown_url"

        text = scrape(metrics_port)
        assert text is not None
        match = MODELS_SERVED.search(text)
        assert match is not None
        assert float(match.group(1)) == 20.0  # the sum, whichever worker took which

        # The worker holding the internal port dies: its replacement serves it again.
        holder = [pid for pid in children(supervisor) if _holds_metrics_fd(pid)]
        assert len(holder) == 1
        os.kill(holder[0], signal.SIGKILL)
        assert wait_until(
            lambda: len(children(supervisor)) == 2 and holder[0] not in children(supervisor), 20
        )
        assert wait_until(lambda: scrape(metrics_port) is not None, 30)
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            assert client.get("/metrics").status_code == 404


def _holds_metrics_fd(pid: int) -> bool:
    """Whether the worker was started with a metrics fd (argv: TARGET FD METRICS_FD)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return len([a for a in argv if a]) == 6  # python -m tiergate_runtime.workers T FD MFD
