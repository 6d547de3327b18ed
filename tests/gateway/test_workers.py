"""`[server] workers = 2`: one socket, two supervised worker processes, one set of metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

PREFIX = "TIERGATE_GATEWAY_"


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(c) for c in task.read_text().split()]
    return found


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[str]:
    port_file = tmp_path / "engine.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tiergate_testkit.fake_engine",
            "--port",
            "0",
            "--model",
            "m",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_until(port_file.exists, 20)
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_workers_share_socket_metrics_and_fate(fake_engine: str) -> None:
    env = {
        f"{PREFIX}SERVER__WORKERS": "2",
        f"{PREFIX}BACKENDS": json.dumps({"cpu": {"base_url": f"{fake_engine}/v1"}}),
        f"{PREFIX}MODELS": json.dumps([{"id": "small", "backend": "cpu", "engine_model": "m"}]),
        # Unlimited: this test counts requests across workers, not limits.
        f"{PREFIX}TIERS": json.dumps({"anonymous": {}}),
    }
    service = ServiceProcess("tiergate_gateway", PREFIX, env)
    with service:
        assert service.proc is not None
        supervisor = service.proc.pid
        assert wait_until(lambda: len(children(supervisor)) == 2, 20)
        body = {"model": "small", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(40):  # a new connection each time, so both workers take some
            with httpx.Client(base_url=service.base_url, timeout=10) as client:
                assert client.post("/v1/chat/completions", json=body).status_code == 200
        pattern = re.compile(
            r'tiergate_gateway_upstream_calls_total\{api="chat",backend="cpu",mode="json",'
            r'model="small",outcome="ok"\} (\S+)'
        )
        for _ in range(6):  # whichever worker answers, it reports the sum
            with httpx.Client(base_url=service.base_url, timeout=10) as client:
                match = pattern.search(client.get("/metrics").text)
            assert match is not None
            assert float(match.group(1)) == 40.0

        # A dead worker is replaced; the service keeps answering.
        first = children(supervisor)[0]
        os.kill(first, signal.SIGKILL)
        assert wait_until(
            lambda: len(children(supervisor)) == 2 and first not in children(supervisor), 20
        )
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        workers = children(supervisor)
        service.signal(signal.SIGTERM)
        assert service.proc.wait(20) == 0
    assert wait_until(lambda: not any(alive(w) for w in workers), 10)
