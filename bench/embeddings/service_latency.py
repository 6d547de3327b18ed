"""`/v1/embeddings` latency through cpu-llm itself, with the shipped config.

    .venv/bin/python bench/embeddings/service_latency.py [--rounds 3]

Starts `python -m tiergate_cpu_llm` with `config/cpu-llm.toml` on a free port, waits for
`/readyz/embeddings`, then per round times 100 one-sentence requests and 10 requests of a
~475-token text (one keep-alive client) and prints the medians; stops the service at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TEXT = "The gateway routes every request by who is asking and what is asked. " * 60
SENTENCE = "How do I reset my password?"


def median_ms(client: httpx.Client, payload: str, n: int) -> float:
    """Median milliseconds of `n` embeddings requests for `payload`."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.post("/v1/embeddings", json={"input": payload}).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def main() -> int:
    """Run the measurement; print one line per round."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    long = " ".join(TEXT.split()[:440])
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        env = {
            **os.environ,
            "TIERGATE_CPU_LLM_CONFIG": "config/cpu-llm.toml",
            "TIERGATE_CPU_LLM_SERVER__PORT": "0",
            "TIERGATE_CPU_LLM_SERVER__PORT_FILE": str(port_file),
            "TIERGATE_CPU_LLM_SERVER__LOG_LEVEL": "warning",
        }
        service = subprocess.Popen(
            [sys.executable, "-m", "tiergate_cpu_llm"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not port_file.exists():
                time.sleep(0.05)
            base_url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            with httpx.Client(base_url=base_url, timeout=60) as client:
                while client.get("/readyz/embeddings").status_code != 200:
                    time.sleep(0.1)
                usage = client.post("/v1/embeddings", json={"input": long}).json()["usage"]
                print(f"long input: {usage['prompt_tokens']} tokens")
                for _ in range(args.rounds):
                    sentence = median_ms(client, SENTENCE, 100)
                    print(f"sentence p50 {sentence} ms; long p50 {median_ms(client, long, 10)} ms")
        finally:
            service.terminate()
            service.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
