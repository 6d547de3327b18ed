"""`python -m tiergate_testkit.fake_engine` as a process: port file, banner, clean SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_S = 15.0


def _wait_for_port_file(path: Path, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + STARTUP_S
    while not path.exists():
        assert proc.poll() is None, f"fake engine exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "fake engine never wrote its port file"
        time.sleep(0.02)
    return int(path.read_text())


def test_cli_port_file_banner_and_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "run" / "port"
    port_file.parent.mkdir()
    argv = [sys.executable, "-m", "tiergate_testkit.fake_engine", "--host", "127.0.0.1"]
    argv += ["--port", "0", "--port-file", str(port_file), "--model", "a", "--model", "b"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            port = _wait_for_port_file(port_file, proc)
            assert port > 0
            assert proc.stdout is not None
            assert proc.stdout.readline() == f"listening http://127.0.0.1:{port}\n"
            # Only the final file is left behind: the temp file was renamed onto it.
            assert [p.name for p in port_file.parent.iterdir()] == ["port"]

            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:
                assert http.get("/health").json() == {"status": "ok"}
                models = http.get("/v1/models").json()["data"]
                assert [m["id"] for m in models] == ["a", "b"]
                answer = http.post("/v1/chat/completions", json={"messages": []}).json()
                assert answer["model"] == "a"  # no model in the request: the first one

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
